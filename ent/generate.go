package ent

//go:generate go tool ent generate --feature sql/lock,sql/upsert,sql/execquery,sql/modifier ./schema
