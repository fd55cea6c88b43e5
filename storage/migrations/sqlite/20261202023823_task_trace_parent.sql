-- Disable the enforcement of foreign-keys constraints
PRAGMA foreign_keys = off;
-- Create "new_tasks" table
CREATE TABLE `new_tasks` (`id` uuid NOT NULL, `namespace` text NOT NULL, `template_name` text NOT NULL, `template_version` text NOT NULL, `state` text NOT NULL DEFAULT ('pending'), `context` json NOT NULL, `identity_hash` text NULL, `idempotency_key` text NULL, `request_hash` text NULL, `correlation_id` text NOT NULL, `trace_parent` text NOT NULL DEFAULT (''), `priority` integer NOT NULL DEFAULT (0), `run_at` datetime NULL, `initiator` text NOT NULL DEFAULT (''), `source_system` text NOT NULL DEFAULT (''), `reason` text NOT NULL DEFAULT (''), `tags` json NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `started_at` datetime NULL, `finished_at` datetime NULL, `parent_task_id` uuid NULL, `template_id` integer NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `tasks_tasks_children` FOREIGN KEY (`parent_task_id`) REFERENCES `tasks` (`id`) ON DELETE SET NULL, CONSTRAINT `tasks_task_templates_tasks` FOREIGN KEY (`template_id`) REFERENCES `task_templates` (`id`) ON DELETE NO ACTION);
-- Copy rows from old table "tasks" to new temporary table "new_tasks"
INSERT INTO `new_tasks` (`id`, `namespace`, `template_name`, `template_version`, `state`, `context`, `identity_hash`, `idempotency_key`, `request_hash`, `correlation_id`, `priority`, `run_at`, `initiator`, `source_system`, `reason`, `tags`, `created_at`, `updated_at`, `started_at`, `finished_at`, `parent_task_id`, `template_id`) SELECT `id`, `namespace`, `template_name`, `template_version`, `state`, `context`, `identity_hash`, `idempotency_key`, `request_hash`, `correlation_id`, `priority`, `run_at`, `initiator`, `source_system`, `reason`, `tags`, `created_at`, `updated_at`, `started_at`, `finished_at`, `parent_task_id`, `template_id` FROM `tasks`;
-- Drop "tasks" table after copying rows
DROP TABLE `tasks`;
-- Rename temporary table "new_tasks" to "tasks"
ALTER TABLE `new_tasks` RENAME TO `tasks`;
-- Create index "task_namespace_state_created_at" to table: "tasks"
CREATE INDEX `task_namespace_state_created_at` ON `tasks` (`namespace`, `state`, `created_at`);
-- Create index "task_state_created_at" to table: "tasks"
CREATE INDEX `task_state_created_at` ON `tasks` (`state`, `created_at`);
-- Create index "task_correlation_id" to table: "tasks"
CREATE INDEX `task_correlation_id` ON `tasks` (`correlation_id`);
-- Create index "task_parent_task_id" to table: "tasks"
CREATE INDEX `task_parent_task_id` ON `tasks` (`parent_task_id`);
-- Create index "task_identity_hash" to table: "tasks"
CREATE UNIQUE INDEX `task_identity_hash` ON `tasks` (`identity_hash`) WHERE (identity_hash IS NOT NULL) AND (finished_at IS NULL);
-- Create index "task_namespace_idempotency_key" to table: "tasks"
CREATE UNIQUE INDEX `task_namespace_idempotency_key` ON `tasks` (`namespace`, `idempotency_key`) WHERE idempotency_key IS NOT NULL;
-- Enable back the enforcement of foreign-keys constraints
PRAGMA foreign_keys = on;
