-- Written by hand: table storage parameters are not part of ent/schema.
-- steps, tasks and events are queues: every claim, completion and stamp
-- updates rows that index scans then walk past (a claimed step leaves a
-- dead entry at the head of the claim index, a numbered event one in the
-- sequencer's partial index) until VACUUM removes them. PostgreSQL's
-- default waits for 20 % of a table to change, which at a million steps is
-- 200,000 dead entries for every claim to step over; these tables are
-- vacuumed after 1 % (and at least 1,000 rows), and analyzed after 2 %.
ALTER TABLE "steps" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE "tasks" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE "events" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02);
