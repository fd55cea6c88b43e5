package events

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5"

	"github.com/taskerhq/tasker/storage"
)

// PostgreSQL notification channels. They are per database, like the
// sequencer's lock, so databases on one server never wake each other.
const (
	// appendedChannel is notified by Log.Appended, after the writer's
	// commit, to wake the sequencer.
	appendedChannel = "tasker_events"
	// sequencedChannel is notified by the sequencer, in its stamping
	// transaction, with the new head as payload, to wake every replica's
	// Log.
	sequencedChannel = "tasker_sequenced"
)

// Reconnection backoff of the listener in Run: quick at first, because a
// dropped connection usually comes straight back, and capped, so a long
// outage costs one attempt every few seconds.
const (
	minListenBackoff = 50 * time.Millisecond
	maxListenBackoff = 5 * time.Second
)

// Notify records that events up to head are numbered and committed, and
// wakes the waiters when that moves the head forward. The PostgreSQL
// listener of Run calls it, and so may the Sequencer of this process
// (SequencerOptions.Stamped), which saves its readers the round trip
// through the database. Heads lower than one already known are ignored.
func (l *Log) Notify(head int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if head <= l.head {
		return
	}
	l.head = head
	close(l.changed)
	l.changed = make(chan struct{})
}

// Appended is called after a transaction that appended events has
// committed. On SQLite events are numbered as they are appended, so it wakes
// the waiters, which read the new head themselves. On PostgreSQL the events
// are not numbered yet: it wakes the sequencer (NOTIFY, coalesced with
// concurrent commits; the sequencer's fallback look covers a notification
// lost to a crash), whose own notification wakes the waiters once they are.
// Calling it when nothing was appended costs a read or a notification.
func (l *Log) Appended() {
	if l.db.Dialect == dialect.Postgres {
		l.sequencer.Notify()
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
}

// Wait returns nil once the log's head is above after, at once if it
// already is, or ctx's error when ctx ends first. It does not poll: it
// sleeps until Notify or Appended signal a change. No wake-up is lost,
// because it takes the signal channel before it reads the head, so a
// change after the read closes the channel it sleeps on.
func (l *Log) Wait(ctx context.Context, after int64) error {
	for {
		l.mu.Lock()
		changed, known := l.changed, l.head
		l.mu.Unlock()
		if known > after {
			return nil
		}
		// The known head may lag the database: before the listener has
		// caught up, or on SQLite, where Appended carries no head.
		head, err := l.Head(ctx)
		if err != nil {
			return err
		}
		if head > after {
			l.Notify(head)
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run keeps the log informed of the sequencer's progress until ctx ends,
// then returns nil. On PostgreSQL it listens for the sequencer's
// notifications on a dedicated connection, reconnecting with backoff and
// reading the head after every (re)connection, so a notification missed
// while disconnected costs nothing. On SQLite there is nothing to listen
// to, and it just waits for ctx. Run one per Log.
func (l *Log) Run(ctx context.Context) error {
	if l.db.Dialect != dialect.Postgres {
		<-ctx.Done()
		return nil
	}
	backoff := minListenBackoff
	for ctx.Err() == nil {
		// Once ctx has ended, the error is the shutdown itself.
		if err := l.listen(ctx, func() { backoff = minListenBackoff }); ctx.Err() == nil {
			l.logger.WarnContext(ctx, "event log listener disconnected; reconnecting",
				slog.Any("error", err), slog.Duration("backoff", backoff))
			sleep(ctx, backoff)
			backoff = min(2*backoff, maxListenBackoff)
		}
	}
	return nil
}

// listen runs one connection of Run: LISTEN, catch up, then follow the
// notifications until the connection fails or ctx ends. caughtUp is called
// once the catch-up read has succeeded.
func (l *Log) listen(ctx context.Context, caughtUp func()) error {
	conn, err := l.db.DedicatedConn(ctx, "tasker-event-listener")
	if err != nil {
		return err
	}
	defer storage.CloseDedicated(conn)
	// LISTEN before reading the head, so nothing stamped in between is
	// missed.
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{sequencedChannel}.Sanitize()); err != nil {
		return fmt.Errorf("events: listen: %w", err)
	}
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	l.Notify(head)
	caughtUp()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("events: wait for notification: %w", err)
		}
		head, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			// Not the sequencer's payload; read the head rather than
			// guess.
			if head, err = l.Head(ctx); err != nil {
				return err
			}
		}
		l.Notify(head)
	}
}

// sleep waits for d or ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
