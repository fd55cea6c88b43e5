package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"entgo.io/ent/dialect"

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

// RunWakeups listens for work committed by other replicas and wakes this
// process's long-polling claimers, until ctx ends. After every (re)connect
// it wakes them once, so work committed while the listener was away is
// claimed (the catch-up). It returns at once on SQLite.
func (e *Engine) RunWakeups(ctx context.Context) error {
	if e.db.Dialect != dialect.Postgres {
		<-ctx.Done()
		return nil
	}
	backoff := 100 * time.Millisecond
	for {
		err := e.listenWork(ctx, func() { backoff = 100 * time.Millisecond })
		select {
		case <-ctx.Done():
			return nil
		default:
		}
		e.log.WarnContext(ctx, "work listener disconnected; reconnecting", slog.Any("error", err), slog.Duration("backoff", backoff))
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (e *Engine) listenWork(ctx context.Context, connected func()) error {
	conn, err := e.db.DedicatedConn(ctx, "tasker-work-listener")
	if err != nil {
		return err
	}
	defer storage.CloseDedicated(conn)
	if _, err := conn.Exec(ctx, "LISTEN "+workChannel); err != nil {
		return fmt.Errorf("listen %s: %w", workChannel, err)
	}
	connected()
	e.claimers.notifyAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		// This process's own commits woke its claimers in memory already.
		if !e.workNotifier.FromSelf(n.Payload) {
			e.claimers.notifyAll()
		}
	}
}
