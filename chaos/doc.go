// Package chaos holds Tasker's fault-injection suite, as tests only. Each
// scenario runs real `tasker serve` processes (SQLite or PostgreSQL), Go
// SDK workers, a task creator that retries with idempotency keys, and an
// event subscriber that resumes after every fault, then injects one kind of
// fault: kill -9 of the server at random points, kill -9 of one of two
// PostgreSQL replicas, PostgreSQL connections cut through a TCP proxy, and
// a worker that vanishes holding leases. Every scenario then checks the same
// promises: every acknowledged CreateTask is stored, exactly once; every task
// completes; no step is completed twice; the event log is dense; and the
// resumed stream saw events 1..N exactly once, in order.
//
// `go test ./chaos` (part of `make test`) runs a short version;
// `make chaos` (TASKER_CHAOS=full) runs the full sizes. RELIABILITY.md
// describes the suite and the figures of a full run.
package chaos
