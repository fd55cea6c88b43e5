-- Create "api_tokens" table
CREATE TABLE `api_tokens` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `name` text NOT NULL, `hash` text NOT NULL, `scopes` json NOT NULL, `namespaces` json NOT NULL, `created_at` datetime NOT NULL, `expires_at` datetime NULL, `revoked_at` datetime NULL, `last_used_at` datetime NULL);
-- Create index "api_tokens_name_key" to table: "api_tokens"
CREATE UNIQUE INDEX `api_tokens_name_key` ON `api_tokens` (`name`);
-- Create index "api_tokens_hash_key" to table: "api_tokens"
CREATE UNIQUE INDEX `api_tokens_hash_key` ON `api_tokens` (`hash`);
