// Package engine is the orchestration core: it creates tasks from
// templates, moves tasks and steps through the state machines of DESIGN §4,
// and reports why a task is where it is.
//
// Every state change is one guarded update, one transition row and exactly
// one event (package events), committed in one transaction through
// storage.DB.Tx. The engine knows nothing about gRPC: it takes plain
// parameters, returns ent entities and reports failures as *fault.Error.
//
// Claims read the partial index of claimable steps (steps.claimable_at,
// kept by every move) in claim order, so a claim costs the same whatever the
// queue's length, and a batch of claims is a fixed number of statements.
// Long-polling claimers are woken per handler, as many as steps became
// ready; other replicas are told by a NOTIFY after the commit.
package engine
