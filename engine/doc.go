// Package engine is the orchestration core: it creates tasks from
// templates, moves tasks and steps through the state machines of DESIGN §4,
// and reports why a task is where it is.
//
// Every state change is one guarded update, one transition row and exactly
// one event (package events), committed in one transaction through
// storage.DB.Tx. The engine knows nothing about gRPC: it takes plain
// parameters, returns its own types (Task, Step, TaskView, Claim; model.go)
// and reports failures as *fault.Error. Ent rows stay inside: callers never
// see the schema's columns, so it can change without them.
//
// Claims read the partial index of claimable steps (steps.claimable_at,
// kept by every move) in claim order, so a claim costs the same whatever the
// queue's length, and a batch of claims is a fixed number of statements.
// Long-polling claimers are woken per handler, as many as steps became
// ready; other replicas are told by a NOTIFY after the commit.
//
// # Lock order
//
// Every writing transaction takes its row locks in one order: a task's row
// first, then that task's step rows. No transaction waits for a task's lock
// while it holds a step lock or the lock of another task, so no two writers
// can wait for each other in a cycle (no deadlock, and the storage layer's
// retry of 40P01 is a safety net that is not needed), and a row read after
// the task's lock stays as read until the commit: every transition row's
// from_state is the state its row really left, and an operator's guarded
// update always matches the state it checked. The locks are PostgreSQL's;
// SQLite has one writer, which excludes every other writer outright, and
// the same code runs without locking clauses there.
//
//   - ReleaseStep, the reaper and the operator calls lock the task FOR NO
//     KEY UPDATE (lockTask, heldStep), waiting for it if needed, then read
//     and update its steps. NO KEY UPDATE is the lock an UPDATE of the task
//     takes anyway; unlike FOR UPDATE it lets rows that reference the task
//     (transitions, child tasks) be inserted meanwhile.
//   - Completions and failures (CompleteSteps, FailSteps; CompleteStep and
//     FailStep are batches of one) lock all their tasks the same way with
//     one statement, in id order, waiting where needed, then read and
//     update their steps. Two batches sharing tasks take them in the same
//     order, and every other writer that waits holds no task lock, so no
//     cycle.
//   - A claim finds due steps joined to their tasks and locks only the
//     tasks, FOR NO KEY UPDATE OF tasks SKIP LOCKED: it never waits, so
//     the order among the tasks it locks does not matter, and a task held
//     by an operator, a report or another claim is skipped, not queued
//     behind. Under those locks it reads the candidate steps again and
//     updates them. Claims are thereby serialised per task, not per step:
//     two claims take steps of different tasks.
//   - ExtendLease takes no task lock: it updates one in_progress step's
//     lease and nothing else, and changes no state, so it holds a single
//     lock and waits for nothing while holding it.
//   - CreateTask and CreateTasks write new rows only (a parent task, when
//     named, is only referenced); deduplication reads, and clears expired
//     idempotency keys with single-row updates outside the creating
//     transaction and any other lock. A batch inserts its tasks sorted by
//     idempotency key and strict identity: on PostgreSQL an insert meeting
//     a key that another transaction holds uncommitted waits for it, and
//     two batches sharing keys meet them in the same order.
package engine
