// Package storage opens Tasker's database, migrates it, reports readiness and
// turns driver errors into the sentinels the engine branches on.
//
// Everything that differs between the dialects lives here, one file each
// (sqlite.go, postgres.go), behind the Dialect interface the engine, the
// event log and the registry call (DB.SQL): how writers lock, how claims
// skip rows other claimers hold, how events are numbered, snapshot reads,
// collation, opening the pools and reading the driver's errors.
//
// One ent schema serves two dialects. SQLite is the embedded default: a single
// file in WAL mode. SQLite allows one writer at a time and answers a second
// concurrent writer with SQLITE_BUSY, so every transaction and write goes
// through a pool of exactly one connection that begins transactions with
// BEGIN IMMEDIATE: writers queue in Go instead of failing, and reads, which WAL
// lets run beside the writer, use a separate pool of query_only connections.
// Every SQLite connection keeps an LRU cache of up to 256 prepared
// statements keyed by their SQL text, so that SQLite parses and plans each of
// ent's queries once per connection rather than on every run (stmtcache.go).
// Concurrent transactions on SQLite commit in groups: what queued while the
// writer was busy runs as one transaction, each caller in a savepoint of
// its own, with one commit; each caller still returns after its own work
// has committed (groupcommit.go).
// A DB.Tx call made with a recording span in its context is a span of its
// own under it, "tx <operation>" (TxName), counting the statements its
// function ran, its attempts and, on SQLite, the size of its group; ent's
// driver counts the statements of transactions begun with such a context
// (txspan.go). Calls without a recording span make no span.
// PostgreSQL is the scale-out store shared by several replicas; it has one
// pool that serves both roles.
// The schema is versioned: migrations/<dialect> holds SQL files generated
// from ent/schema by migrations/diff, hashed in atlas.sum and embedded;
// Migrate applies those the database lacks in order, each in a transaction
// with its record in tasker_schema_migrations, under an advisory lock on
// PostgreSQL, and refuses a database that a newer binary migrated. Notifier sends PostgreSQL NOTIFYs after
// commits, coalesced, and InsertRows appends rows without reading their ids
// back, for the append-only tables written on every change.
package storage
