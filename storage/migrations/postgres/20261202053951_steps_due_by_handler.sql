-- Drop index "step_claimable_at" from table: "steps"
DROP INDEX "step_claimable_at";
-- Create index "step_namespace_handler_claimable_at" to table: "steps"
CREATE INDEX "step_namespace_handler_claimable_at" ON "steps" ("namespace", "handler", "claimable_at") WHERE (claimable_at IS NOT NULL);
