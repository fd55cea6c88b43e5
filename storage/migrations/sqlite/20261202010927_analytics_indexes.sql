-- Create index "step_namespace_created_at" to table: "steps"
CREATE INDEX `step_namespace_created_at` ON `steps` (`namespace`, `created_at`);
-- Create index "steptransition_from_state_created_at" to table: "step_transitions"
CREATE INDEX `steptransition_from_state_created_at` ON `step_transitions` (`from_state`, `created_at`);
-- Create index "tasktransition_to_state_created_at" to table: "task_transitions"
CREATE INDEX `tasktransition_to_state_created_at` ON `task_transitions` (`to_state`, `created_at`);
