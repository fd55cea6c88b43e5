// Package storage opens Tasker's database, migrates it, reports readiness and
// turns driver errors into the sentinels the engine branches on.
//
// One ent schema serves two dialects. SQLite is the embedded default: a single
// file in WAL mode. SQLite allows one writer at a time and answers a second
// concurrent writer with SQLITE_BUSY, so every transaction and write goes
// through a pool of exactly one connection that begins transactions with
// BEGIN IMMEDIATE: writers queue in Go instead of failing, and reads, which WAL
// lets run beside the writer, use a separate pool of query_only connections.
// PostgreSQL is the scale-out store shared by several replicas; it has one
// pool that serves both roles, and migrations there are serialised across
// replicas by an advisory lock.
package storage
