package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerhq/tasker/storage"
)

// sequencerLockKey is the PostgreSQL advisory lock whose holder is the
// database's one sequencer ("taskseqs" in ASCII; storage's migration lock
// is "taskmigr").
const sequencerLockKey int64 = 0x7461736b73657173

// SequencerOptions are the optional settings of a Sequencer; the zero value
// is a sensible default.
type SequencerOptions struct {
	// BatchSize bounds the events numbered by one transaction; default 1000.
	// A backlog takes several transactions, each short.
	BatchSize int
	// Fallback is how long the leader waits for a wake-up before it looks
	// for unnumbered events anyway: the safety net for a notification that
	// never came, and the pace of a sequencer without a listener. Default
	// 1s.
	Fallback time.Duration
	// Retry is how often a process that is not the leader tries to become
	// it, and how long it waits before reconnecting after a failure.
	// Default 1s.
	Retry time.Duration
	// Stamped, when set, is called after each committed transaction that
	// numbered events, with the new head: pass (*Log).Notify so readers in
	// the leader's own process wake without a round trip through
	// PostgreSQL. It must not block.
	Stamped func(head int64)
}

// Sequencer numbers the events of a PostgreSQL database. Writers append
// events unnumbered (a bigserial is neither dense nor in commit order);
// the sequencer gives committed, unnumbered events the next numbers, so
// readers, which read numbered events only, see a dense, strictly
// increasing sequence in which nothing ever appears below a number they
// have read.
//
// Every process runs one; one per database leads, elected by a session
// advisory lock on a dedicated connection, and the others try again every
// Retry and take over when the leader's session ends. The leader is woken
// by Append's notifications through the process's storage.Listener
// (Listen), numbers in batches, one short transaction each, and announces
// each new head on the tasker_sequenced channel, which every process's Log
// follows through its own listener.
//
// The numbers are right even if two sequencers ever ran at once: each
// transaction numbers from the committed maximum, so a number is only
// given when every lower one is committed, and the unique index on
// sequence refuses one of two transactions that pick the same numbers. The
// lock only keeps them from tripping over each other.
type Sequencer struct {
	db      *storage.DB
	logger  *slog.Logger
	opts    SequencerOptions
	leading atomic.Bool
	// looks counts the leader's looks for unnumbered events.
	looks atomic.Int64
	// wake holds one pending wake-up from the listener (Listen).
	wake chan struct{}
}

// NewSequencer returns the sequencer of db; Run starts it.
func NewSequencer(db *storage.DB, logger *slog.Logger, opts SequencerOptions) *Sequencer {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.Fallback <= 0 {
		opts.Fallback = time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	return &Sequencer{db: db, logger: logger, opts: opts, wake: make(chan struct{}, 1)}
}

// Leading reports whether this sequencer is the database's leader right
// now.
func (s *Sequencer) Leading() bool { return s.leading.Load() }

// Looks returns how many times this sequencer, as leader, has looked for
// unnumbered events: a measure of how often it wakes, for diagnostics and
// tests.
func (s *Sequencer) Looks() int64 { return s.looks.Load() }

// Run sequences until ctx ends, then returns nil, having released
// leadership. Failures (a lost connection, a failed transaction) are
// logged and retried after Retry; they never end Run. On SQLite, where
// Append numbers events itself, Run just waits for ctx.
func (s *Sequencer) Run(ctx context.Context) error {
	if !s.db.SQL().Replicated() {
		<-ctx.Done()
		return nil
	}
	for ctx.Err() == nil {
		// Once ctx has ended, the error is the shutdown itself.
		if err := s.session(ctx); ctx.Err() == nil {
			s.logger.WarnContext(ctx, "event sequencer failed; retrying",
				slog.Any("error", err), slog.Duration("retry", s.opts.Retry))
			sleep(ctx, s.opts.Retry)
		}
	}
	return nil
}

// session runs one dedicated connection: wait to lead, then number events
// until the connection fails or ctx ends. Closing the connection ends the
// session, which releases the lock for the next leader.
func (s *Sequencer) session(ctx context.Context) error {
	conn, err := s.db.DedicatedConn(ctx, "tasker-sequencer")
	if err != nil {
		return err
	}
	defer storage.CloseDedicated(conn)
	for {
		var leader bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", sequencerLockKey).Scan(&leader); err != nil {
			return fmt.Errorf("events: sequencer lock: %w", err)
		}
		if leader {
			break
		}
		if !sleep(ctx, s.opts.Retry) {
			return ctx.Err()
		}
	}
	s.leading.Store(true)
	defer s.leading.Store(false)
	s.logger.InfoContext(ctx, "leading the event sequencer")
	defer s.logger.InfoContext(ctx, "no longer leading the event sequencer")

	// The first pass is the catch-up: events committed while nobody led
	// are numbered now.
	for {
		if err := s.drain(ctx, conn); err != nil {
			return err
		}
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
}

// drain numbers batches until there is nothing left to number.
func (s *Sequencer) drain(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, head, err := s.stamp(ctx, conn)
		if err != nil {
			return err
		}
		if n > 0 && s.opts.Stamped != nil {
			s.opts.Stamped(head)
		}
		if n < int64(s.opts.BatchSize) {
			return nil
		}
	}
}

// stampSQL numbers up to $1 committed, unnumbered events, oldest insert
// first, after the committed maximum, and notifies the new head, all in
// the one transaction of the statement: the numbers and the notification
// commit together. The CASE evaluates pg_notify only when something was
// numbered (its void result is cast to text to be scannable).
//
// Insert order among unnumbered events is a convenience, not a promise:
// an event whose transaction commits late is numbered late, above events
// inserted after it, which is what keeps every number ever read final.
const stampSQL = `
WITH batch AS (
	SELECT id FROM events WHERE sequence IS NULL ORDER BY id LIMIT $1
), numbered AS (
	SELECT id, (SELECT COALESCE(max(sequence), 0) FROM events) + row_number() OVER (ORDER BY id) AS sequence
	FROM batch
), stamped AS (
	UPDATE events SET sequence = numbered.sequence
	FROM numbered WHERE events.id = numbered.id
	RETURNING events.sequence
), summary AS (
	SELECT count(*) AS n, COALESCE(max(sequence), 0) AS head FROM stamped
)
SELECT n, head, CASE WHEN n > 0 THEN pg_notify('` + sequencedChannel + `', head::text)::text END
FROM summary`

// stamp runs stampSQL once and returns how many events it numbered and
// the head after them.
func (s *Sequencer) stamp(ctx context.Context, conn *pgx.Conn) (n, head int64, err error) {
	s.looks.Add(1)
	var notified *string
	if err := conn.QueryRow(ctx, stampSQL, s.opts.BatchSize).Scan(&n, &head, &notified); err != nil {
		return 0, 0, fmt.Errorf("events: number events: %w", err)
	}
	return n, head, nil
}

// wait sleeps until Append's notification reaches the listener, the
// listener asks for a catch-up, or the Fallback passes, whichever comes
// first. Wake-ups that arrived while the last pass ran are kept in the
// channel's one slot: the next pass numbers the events of all of them.
func (s *Sequencer) wait(ctx context.Context) error {
	t := time.NewTimer(s.opts.Fallback)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.wake:
	case <-t.C:
	}
	return nil
}

// pokeIfLeading wakes the sequencer when it leads right now, and reports
// whether it did.
func (s *Sequencer) pokeIfLeading() bool {
	if !s.leading.Load() {
		return false
	}
	s.poke()
	return true
}

// poke leaves a wake-up in the sequencer's one slot.
func (s *Sequencer) poke() {
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is pending already: it covers this one
	}
}

// Listen has the process's listener wake the sequencer when a writer
// anywhere has appended events, and when the listener reconnects. Without
// it the sequencer looks every Fallback. Call it before the listener
// runs.
func (s *Sequencer) Listen(ln *storage.Listener) error {
	return ln.Handle(appendedChannel, storage.ListenFuncs{OnNotify: func(string) { s.poke() }, OnCatchUp: s.poke})
}
