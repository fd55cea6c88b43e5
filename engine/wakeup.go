package engine

import (
	"github.com/taskerhq/tasker/storage"
)

// workChannel is the PostgreSQL NOTIFY channel that tells every replica
// that steps became claimable, so a worker long-polling replica B wakes for
// a step enqueued through replica A.
const workChannel = "tasker_work"

// workCommitted wakes, after a commit that made steps claimable (ready:
// how many of each handler), as many claimers of this process and, on
// PostgreSQL, every replica's claimers (NOTIFY after the commit, coalesced).
// A notification lost to a crash right after the commit delays the other
// replicas' claimers until their poll ends or a later commit wakes them.
func (e *Engine) workCommitted(ready map[HandlerRef]int) {
	e.claimers.notify(ready)
	e.workNotifier.Notify()
}

// Listen has the process's listener wake this engine's long-polling
// claimers for work other replicas committed (PostgreSQL). Every catch-up
// of the listener (after a reconnection, and every poll interval while it
// is disconnected) wakes them all to look once, so work committed while
// the listener was away is claimed. Call it before the listener runs.
func (e *Engine) Listen(ln *storage.Listener) error {
	return ln.Handle(workChannel, storage.ListenFuncs{
		OnNotify: func(payload string) {
			// This process's own commits woke its claimers in memory
			// already.
			if !e.workNotifier.FromSelf(payload) {
				e.claimers.notifyAll()
			}
		},
		OnCatchUp: e.claimers.notifyAll,
	})
}

// Waiting returns how many long-polling claimers of this process are
// waiting for work right now.
func (e *Engine) Waiting() int {
	e.claimers.mu.Lock()
	defer e.claimers.mu.Unlock()
	return len(e.claimers.waiting)
}
