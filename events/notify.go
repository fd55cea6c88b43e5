package events

import (
	"context"
	"strconv"
	"time"

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

// unlistenedPoll bounds Wait on PostgreSQL when the log has no listener
// (Listen was not called): it looks at the head this often, since nothing
// would tell it of other processes' events.
const unlistenedPoll = time.Second

// Notify records that events up to head are numbered and committed, and
// wakes the waiters when that moves the head forward. The PostgreSQL
// listener (Listen) calls it, and so may the Sequencer of this process
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
// concurrent commits, or in memory when this process's sequencer leads: see
// UseSequencer; the sequencer's fallback look covers a notification lost to
// a crash), whose own notification wakes the waiters once they are.
// Calling it when nothing was appended costs a read or a notification.
func (l *Log) Appended() {
	if l.db.SQL().Replicated() {
		if s := l.local.Load(); s != nil && s.pokeIfLeading() {
			return
		}
		l.sequencer.Notify()
		return
	}
	l.wake()
}

// UseSequencer tells the log of its own process's sequencer: while that
// one leads, Appended wakes it in memory, which spares every commit that
// appended events a NOTIFY round trip (and every replica's listener its
// delivery). Appends of other processes still reach it by NOTIFY.
// Leadership that moves between the check and the wake-up loses nothing:
// a new leader numbers whatever is unnumbered first, and the old one's
// Fallback look covers the rest.
func (l *Log) UseSequencer(s *Sequencer) { l.local.Store(s) }

// Wait returns nil once the log's head is above after, at once if it
// already is, or ctx's error when ctx ends first. It does not poll: it
// sleeps until Notify, Appended or the listener (Listen) signal a change;
// only a PostgreSQL log without a listener looks every second. No wake-up is lost,
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
		if err := l.sleep(ctx, changed); err != nil {
			return err
		}
	}
}

// sleep waits for changed or ctx, or for unlistenedPoll on a PostgreSQL
// log that nothing would tell of other processes' events.
func (l *Log) sleep(ctx context.Context, changed <-chan struct{}) error {
	var poll <-chan time.Time
	if l.db.SQL().Replicated() && !l.listened.Load() {
		t := time.NewTimer(unlistenedPoll)
		defer t.Stop()
		poll = t.C
	}
	select {
	case <-changed:
	case <-poll:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// Listen has the process's listener keep the log informed of the
// sequencer's progress on PostgreSQL: every notification carries the new
// head, and every catch-up of the listener (after a reconnection, and every
// poll interval while it is disconnected) wakes the waiters to read the
// head themselves, so a notification missed while disconnected costs
// nothing. Call it before the listener runs.
func (l *Log) Listen(ln *storage.Listener) error {
	l.listened.Store(true)
	return ln.Handle(sequencedChannel, storage.ListenFuncs{
		OnNotify: func(payload string) {
			head, err := strconv.ParseInt(payload, 10, 64)
			if err != nil {
				// Not the sequencer's payload: let the waiters read the
				// head rather than guess.
				l.wake()
				return
			}
			l.Notify(head)
		},
		OnCatchUp: l.wake,
	})
}

// wake has every waiter look at the head again.
func (l *Log) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
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
