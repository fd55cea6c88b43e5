// Package schema declares Tasker's data model as ent schemas: namespaces,
// task and step templates, tasks, steps and the DAG edges between steps,
// the transition audit trail, the event log and the workers seen. It is the
// single source from which package ent and its migrations are generated, and
// it must work unchanged on SQLite and PostgreSQL.
//
// Conventions, so that the engine can rely on them:
//   - Task and Step ids are UUIDv7, so ordering by id is ordering by creation.
//     Every other entity has an auto-increment integer id, except Worker,
//     whose id is the one the worker chose.
//   - Times are UTC and truncated to microseconds (PostgreSQL's precision), so
//     a value read back equals the value written on both dialects.
//   - JSON documents (contexts, configs, results, payloads, metadata) are
//     json.RawMessage; JSON with a fixed shape (tags, depends_on, a worker's
//     handlers) is typed. PostgreSQL stores both as jsonb, which does not keep
//     key order or whitespace: compare documents by value or by the hash of
//     their canonical form, never byte for byte.
//   - Durations are int64 milliseconds in fields ending in _ms.
package schema
