-- Create "events" table
CREATE TABLE `events` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `sequence` integer NULL, `type` text NOT NULL, `correlation_id` text NOT NULL DEFAULT (''), `namespace` text NOT NULL DEFAULT (''), `template_name` text NOT NULL DEFAULT (''), `template_version` text NOT NULL DEFAULT (''), `task_id` uuid NULL, `step_id` uuid NULL, `payload` json NOT NULL, `created_at` datetime NOT NULL);
-- Create index "events_sequence_key" to table: "events"
CREATE UNIQUE INDEX `events_sequence_key` ON `events` (`sequence`);
-- Create index "event_id" to table: "events"
CREATE INDEX `event_id` ON `events` (`id`) WHERE sequence IS NULL;
-- Create index "event_task_id_sequence" to table: "events"
CREATE INDEX `event_task_id_sequence` ON `events` (`task_id`, `sequence`);
-- Create index "event_correlation_id_sequence" to table: "events"
CREATE INDEX `event_correlation_id_sequence` ON `events` (`correlation_id`, `sequence`);
-- Create index "event_namespace_sequence" to table: "events"
CREATE INDEX `event_namespace_sequence` ON `events` (`namespace`, `sequence`);
-- Create "namespaces" table
CREATE TABLE `namespaces` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `name` text NOT NULL, `description` text NOT NULL DEFAULT (''), `created_at` datetime NOT NULL);
-- Create index "namespaces_name_key" to table: "namespaces"
CREATE UNIQUE INDEX `namespaces_name_key` ON `namespaces` (`name`);
-- Create "steps" table
CREATE TABLE `steps` (`id` uuid NOT NULL, `namespace` text NOT NULL, `name` text NOT NULL, `handler` text NOT NULL, `config` json NOT NULL, `state` text NOT NULL DEFAULT ('pending'), `priority` integer NOT NULL DEFAULT (0), `attempts` integer NOT NULL DEFAULT (0), `attempt_budget` integer NOT NULL DEFAULT (0), `max_attempts` integer NOT NULL, `backoff_initial_ms` integer NOT NULL, `backoff_multiplier` real NOT NULL, `backoff_max_ms` integer NOT NULL, `backoff_jitter` real NOT NULL, `lease_duration_ms` integer NOT NULL, `execution_timeout_ms` integer NOT NULL, `lease_token` text NULL, `lease_expires_at` datetime NULL, `execution_deadline` datetime NULL, `available_at` datetime NULL, `claimable_at` datetime NULL, `claimed_by` text NULL, `result` json NULL, `last_error_message` text NOT NULL DEFAULT (''), `last_error_type` text NOT NULL DEFAULT (''), `pending_parents` integer NOT NULL DEFAULT (0), `position` integer NOT NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `finished_at` datetime NULL, `task_id` uuid NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `steps_tasks_steps` FOREIGN KEY (`task_id`) REFERENCES `tasks` (`id`) ON DELETE CASCADE);
-- Create index "step_namespace_handler_priority_claimable_at_id" to table: "steps"
CREATE INDEX `step_namespace_handler_priority_claimable_at_id` ON `steps` (`namespace`, `handler`, `priority` DESC, `claimable_at`, `id`) WHERE claimable_at IS NOT NULL;
-- Create index "step_claimable_at" to table: "steps"
CREATE INDEX `step_claimable_at` ON `steps` (`claimable_at`) WHERE claimable_at IS NOT NULL;
-- Create index "step_task_id_position" to table: "steps"
CREATE INDEX `step_task_id_position` ON `steps` (`task_id`, `position`);
-- Create index "step_lease_expires_at" to table: "steps"
CREATE INDEX `step_lease_expires_at` ON `steps` (`lease_expires_at`) WHERE lease_expires_at IS NOT NULL;
-- Create index "step_execution_deadline" to table: "steps"
CREATE INDEX `step_execution_deadline` ON `steps` (`execution_deadline`) WHERE execution_deadline IS NOT NULL;
-- Create "step_edges" table
CREATE TABLE `step_edges` (`parent_id` uuid NOT NULL, `child_id` uuid NOT NULL, PRIMARY KEY (`parent_id`, `child_id`), CONSTRAINT `step_edges_steps_parent` FOREIGN KEY (`parent_id`) REFERENCES `steps` (`id`) ON DELETE CASCADE, CONSTRAINT `step_edges_steps_child` FOREIGN KEY (`child_id`) REFERENCES `steps` (`id`) ON DELETE CASCADE);
-- Create index "stepdependency_child_id" to table: "step_edges"
CREATE INDEX `stepdependency_child_id` ON `step_edges` (`child_id`);
-- Create "step_templates" table
CREATE TABLE `step_templates` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `name` text NOT NULL, `handler` text NOT NULL, `description` text NOT NULL DEFAULT (''), `depends_on` json NULL, `config` json NOT NULL, `position` integer NOT NULL, `max_attempts` integer NULL, `backoff_initial_ms` integer NULL, `backoff_multiplier` real NULL, `backoff_max_ms` integer NULL, `backoff_jitter` real NULL, `lease_duration_ms` integer NULL, `execution_timeout_ms` integer NULL, `template_id` integer NOT NULL, CONSTRAINT `step_templates_task_templates_steps` FOREIGN KEY (`template_id`) REFERENCES `task_templates` (`id`) ON DELETE CASCADE);
-- Create index "steptemplate_template_id_name" to table: "step_templates"
CREATE UNIQUE INDEX `steptemplate_template_id_name` ON `step_templates` (`template_id`, `name`);
-- Create "step_transitions" table
CREATE TABLE `step_transitions` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `task_id` uuid NOT NULL, `from_state` text NOT NULL DEFAULT (''), `to_state` text NOT NULL, `reason` text NOT NULL DEFAULT (''), `attempt` integer NOT NULL DEFAULT (0), `metadata` json NULL, `created_at` datetime NOT NULL, `step_id` uuid NOT NULL, CONSTRAINT `step_transitions_steps_transitions` FOREIGN KEY (`step_id`) REFERENCES `steps` (`id`) ON DELETE CASCADE);
-- Create index "steptransition_step_id_id" to table: "step_transitions"
CREATE INDEX `steptransition_step_id_id` ON `step_transitions` (`step_id`, `id`);
-- Create index "steptransition_task_id_id" to table: "step_transitions"
CREATE INDEX `steptransition_task_id_id` ON `step_transitions` (`task_id`, `id`);
-- Create "tasks" table
CREATE TABLE `tasks` (`id` uuid NOT NULL, `namespace` text NOT NULL, `template_name` text NOT NULL, `template_version` text NOT NULL, `state` text NOT NULL DEFAULT ('pending'), `context` json NOT NULL, `identity_hash` text NULL, `idempotency_key` text NULL, `request_hash` text NULL, `correlation_id` text NOT NULL, `priority` integer NOT NULL DEFAULT (0), `run_at` datetime NULL, `initiator` text NOT NULL DEFAULT (''), `source_system` text NOT NULL DEFAULT (''), `reason` text NOT NULL DEFAULT (''), `tags` json NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `started_at` datetime NULL, `finished_at` datetime NULL, `parent_task_id` uuid NULL, `template_id` integer NOT NULL, PRIMARY KEY (`id`), CONSTRAINT `tasks_tasks_children` FOREIGN KEY (`parent_task_id`) REFERENCES `tasks` (`id`) ON DELETE SET NULL, CONSTRAINT `tasks_task_templates_tasks` FOREIGN KEY (`template_id`) REFERENCES `task_templates` (`id`) ON DELETE NO ACTION);
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
-- Create "task_templates" table
CREATE TABLE `task_templates` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `name` text NOT NULL, `version` text NOT NULL, `description` text NOT NULL DEFAULT (''), `identity_strategy` text NOT NULL DEFAULT ('always_unique'), `context_schema` json NULL, `max_attempts` integer NOT NULL, `backoff_initial_ms` integer NOT NULL, `backoff_multiplier` real NOT NULL, `backoff_max_ms` integer NOT NULL, `backoff_jitter` real NOT NULL, `lease_duration_ms` integer NOT NULL, `execution_timeout_ms` integer NOT NULL, `content_hash` text NOT NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `namespace_id` integer NOT NULL, CONSTRAINT `task_templates_namespaces_templates` FOREIGN KEY (`namespace_id`) REFERENCES `namespaces` (`id`) ON DELETE NO ACTION);
-- Create index "tasktemplate_namespace_id_name_version" to table: "task_templates"
CREATE UNIQUE INDEX `tasktemplate_namespace_id_name_version` ON `task_templates` (`namespace_id`, `name`, `version`);
-- Create "task_transitions" table
CREATE TABLE `task_transitions` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `from_state` text NOT NULL DEFAULT (''), `to_state` text NOT NULL, `reason` text NOT NULL DEFAULT (''), `metadata` json NULL, `created_at` datetime NOT NULL, `task_id` uuid NOT NULL, CONSTRAINT `task_transitions_tasks_transitions` FOREIGN KEY (`task_id`) REFERENCES `tasks` (`id`) ON DELETE CASCADE);
-- Create index "tasktransition_task_id_id" to table: "task_transitions"
CREATE INDEX `tasktransition_task_id_id` ON `task_transitions` (`task_id`, `id`);
-- Create "workers" table
CREATE TABLE `workers` (`id` text NOT NULL, `handlers` json NOT NULL, `first_seen_at` datetime NOT NULL, `last_seen_at` datetime NOT NULL, PRIMARY KEY (`id`));
