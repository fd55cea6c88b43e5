-- Modify "tasks" table
ALTER TABLE "tasks" ADD COLUMN "trace_parent" character varying NOT NULL DEFAULT '';
