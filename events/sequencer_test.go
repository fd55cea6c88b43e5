package events_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestConcurrentAppends: writers that never wait for each other still get
// exactly the numbers 1..n.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		const writers, appends = 8, 50
		ctx := testContext(t)
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() {
				for i := range appends {
					if errs[w] = b.append(ctx, events.Event{Type: events.TaskCreated, CorrelationID: fmt.Sprintf("w%d-%d", w, i)}); errs[w] != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		b.waitHead(t, writers*appends)

		all, err := db.Reader.Event.Query().Order(ent.Asc(event.FieldSequence)).All(ctx)
		require.NoError(t, err)
		seqs := make([]int64, len(all))
		for i, ev := range all {
			require.NotNil(t, ev.Sequence, "none left unnumbered")
			seqs[i] = *ev.Sequence
		}
		want := make([]int64, writers*appends)
		for i := range want {
			want[i] = int64(i + 1)
		}
		require.Equal(t, want, seqs, "dense, no gaps, no duplicates, none left unnumbered")
	})
}

// TestSequenceContract is DESIGN §6's proof on PostgreSQL: transaction 1
// appends and sleeps before committing while transaction 2 appends and
// commits. Transaction 2's event is numbered first, and transaction 1's
// after it, so no reader ever sees transaction 2 below a number that
// transaction 1 later fills in. Then many such writers and readers at
// once: every reader's view is a gapless prefix of the final log.
func TestSequenceContract(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	b := setup(t, db)
	ctx := testContext(t)

	// Readers poll as fast as they can from the start, recording what they
	// see: (sequence, row id) in the order they saw it.
	type seen struct{ seq, id int64 }
	readCtx, stopReaders := context.WithCancel(ctx)
	var readers sync.WaitGroup
	views := make([][]seen, 3)
	readErrs := make([]error, len(views))
	// passes and last tell the test how far each reader got: how many
	// reads it made, and the last sequence it saw.
	passes, last := make([]atomic.Int64, len(views)), make([]atomic.Int64, len(views))
	for r := range views {
		readers.Go(func() {
			var after int64
			for readCtx.Err() == nil {
				passes[r].Add(1)
				p, err := b.log.List(readCtx, events.Query{After: after, Limit: 1000})
				if err != nil {
					if readCtx.Err() == nil {
						readErrs[r] = err
					}
					return
				}
				for _, ev := range p.Events {
					views[r] = append(views[r], seen{ev.Sequence, ev.ID})
					last[r].Store(ev.Sequence)
				}
				after = p.Scanned
			}
		})
	}

	// The scenario, step by step.
	appended, commit := make(chan struct{}), make(chan struct{})
	tx1 := make(chan error, 1)
	go func() {
		tx1 <- db.Tx(ctx, func(tx *ent.Tx) error {
			if err := events.Append(ctx, tx, db.SQL(), events.Event{Type: events.TaskCreated, CorrelationID: "tx1"}); err != nil {
				return err
			}
			close(appended)
			<-commit
			return nil
		})
	}()
	<-appended
	b.appendTx(t, events.Event{Type: events.TaskCreated, CorrelationID: "tx2"})
	b.waitHead(t, 1)
	// Every reader reads twice more while tx1 is open: one full read that
	// started after tx2's event was numbered.
	var before []int64
	for r := range passes {
		before = append(before, passes[r].Load())
	}
	require.Eventually(t, func() bool {
		for r := range passes {
			if passes[r].Load() < before[r]+2 {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond, "the readers look while tx1 is open")
	p, err := b.log.List(ctx, events.Query{})
	require.NoError(t, err)
	require.Len(t, p.Events, 1, "tx1's uncommitted event is neither visible nor numbered")
	require.Equal(t, "tx2", p.Events[0].CorrelationID)
	require.Equal(t, int64(1), p.Events[0].Sequence)
	close(commit)
	require.NoError(t, <-tx1)
	b.waitHead(t, 2)
	p, err = b.log.List(ctx, events.Query{})
	require.NoError(t, err)
	require.Equal(t, []string{"tx2", "tx1"}, []string{p.Events[0].CorrelationID, p.Events[1].CorrelationID})
	require.Less(t, p.Events[1].ID, p.Events[0].ID, "tx1 inserted first, yet is numbered after tx2, which committed first")

	// The same race, many times over: writers hold their transactions open
	// for random times, so commit order differs from insert order.
	const writers, txs = 6, 15
	var wg sync.WaitGroup
	writeErrs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range txs {
				err := db.Tx(ctx, func(tx *ent.Tx) error {
					n := 1 + rand.IntN(3)
					evs := make([]events.Event, n)
					for j := range evs {
						evs[j] = events.Event{Type: events.StepEnqueued, CorrelationID: fmt.Sprintf("w%d-%d-%d", w, i, j)}
					}
					if err := events.Append(ctx, tx, db.SQL(), evs...); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
					return nil
				})
				if err != nil {
					writeErrs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range writeErrs {
		require.NoError(t, err)
	}
	total, err := db.Reader.Event.Query().Count(ctx)
	require.NoError(t, err)
	b.waitHead(t, int64(total))
	require.Eventually(t, func() bool {
		for r := range last {
			if last[r].Load() < int64(total) {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond, "every reader reaches the head")
	stopReaders()
	readers.Wait()
	for _, err := range readErrs {
		require.NoError(t, err)
	}

	final, err := db.Reader.Event.Query().Order(ent.Asc(event.FieldSequence)).All(ctx)
	require.NoError(t, err)
	require.Len(t, final, total)
	idOf := map[int64]int64{}
	for i, ev := range final {
		require.NotNil(t, ev.Sequence, "every event is numbered")
		require.Equal(t, int64(i+1), *ev.Sequence)
		idOf[*ev.Sequence] = ev.ID
	}
	insertOrder := slices.Clone(final)
	slices.SortFunc(insertOrder, func(a, b *ent.Event) int { return int(a.ID - b.ID) })
	t.Logf("%d events; numbered out of insert order: %v", total, !slices.Equal(final, insertOrder))
	for r, view := range views {
		require.NotEmpty(t, view)
		for i, s := range view {
			require.Equal(t, int64(i+1), s.seq, "reader %d saw a gap or a number twice", r)
			require.Equal(t, idOf[s.seq], s.id, "reader %d saw sequence %d on another event than it ended up on", r, s.seq)
		}
	}
}

// TestSequencerFailover: one sequencer leads; when its session ends,
// another takes over, and events keep being numbered.
func TestSequencerFailover(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := testContext(t)
	logger := testLogger(t)
	l := events.NewLog(db, logger)
	run(t, l.Run)
	b := &bundle{db: db, log: l, logger: logger}

	opts := events.SequencerOptions{Retry: 20 * time.Millisecond}
	first, second := events.NewSequencer(db, logger, opts), events.NewSequencer(db, logger, opts)
	firstCtx, stopFirst := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(firstCtx) }()
	require.Eventually(t, first.Leading, 10*time.Second, 5*time.Millisecond)
	run(t, second.Run)

	b.appendTx(t, events.Event{Type: events.TaskCreated})
	b.waitHead(t, 1)
	require.True(t, first.Leading())
	require.False(t, second.Leading(), "one leader per database")

	stopFirst()
	require.NoError(t, <-firstDone)
	require.False(t, first.Leading())
	require.Eventually(t, second.Leading, 10*time.Second, 5*time.Millisecond)
	b.appendTx(t, events.Event{Type: events.TaskCreated})
	b.waitHead(t, 2)

	// A leader whose connection is killed comes back and catches up with
	// what was appended meanwhile; so does the log's listener.
	_, err := db.Writer.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name IN ('tasker-sequencer', 'tasker-event-listener')`)
	require.NoError(t, err)
	b.appendTx(t, events.Event{Type: events.TaskCreated})
	b.appendTx(t, events.Event{Type: events.TaskCreated})
	b.waitHead(t, 4)
	require.Eventually(t, second.Leading, 10*time.Second, 5*time.Millisecond)

	var locks int
	require.NoError(t, db.ReadDB.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks))
	require.Equal(t, 1, locks, "the leader's lock, and only it")
}

// TestSequencerBacklog: events appended while no sequencer ran are
// numbered by the first one to lead, in batches.
func TestSequencerBacklog(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := testContext(t)
	evs := make([]events.Event, 250)
	for i := range evs {
		evs[i] = events.Event{Type: events.TaskCreated}
	}
	require.NoError(t, db.Tx(ctx, func(tx *ent.Tx) error { return events.Append(ctx, tx, db.SQL(), evs...) }))
	logger := testLogger(t)
	l := events.NewLog(db, logger)
	head, err := l.Head(ctx)
	require.NoError(t, err)
	require.Zero(t, head, "unnumbered events are invisible")

	var mu sync.Mutex
	var stamped []int64
	seq := events.NewSequencer(db, logger, events.SequencerOptions{BatchSize: 100, Stamped: func(h int64) {
		mu.Lock()
		defer mu.Unlock()
		stamped = append(stamped, h)
		l.Notify(h)
	}})
	run(t, seq.Run)
	require.NoError(t, l.Wait(ctx, 249))
	// Wait may learn of the head from the database before the sequencer
	// has called Stamped for the last batch.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(stamped) == 3
	}, 10*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int64{100, 200, 250}, stamped)
}

// TestSequencerFallback: an event whose notification never came (here:
// inserted without Append) is numbered by the fallback look, and waiting
// out the fallback again and again leaves the connection usable.
func TestSequencerFallback(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := testContext(t)
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), nil))
	l := events.NewLog(db, logger)
	seq := events.NewSequencer(db, logger, events.SequencerOptions{Fallback: 10 * time.Millisecond, Stamped: l.Notify})
	run(t, seq.Run)
	require.Eventually(t, seq.Leading, 10*time.Second, 5*time.Millisecond)
	// Several fallback looks with nothing to do.
	looked := seq.Looks()
	require.Eventually(t, func() bool { return seq.Looks() >= looked+5 }, 10*time.Second, time.Millisecond)

	require.NoError(t, db.Client.Event.Create().SetType(events.TaskCreated).SetPayload([]byte(`{}`)).SetCreatedAt(time.Now()).Exec(ctx))
	require.NoError(t, l.Wait(ctx, 0))
	require.NotContains(t, logs.String(), "failed", "no reconnection")
}

// lockedBuffer is a bytes.Buffer for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSequencerWokenInProcess: with no listener and a fallback longer than
// the test, only Appended's in-memory wake-up of the process's own leading
// sequencer can number an event, and it does, at once, each time.
func TestSequencerWokenInProcess(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := testContext(t)
	logger := testLogger(t)
	l := events.NewLog(db, logger)
	seq := events.NewSequencer(db, logger, events.SequencerOptions{Fallback: time.Hour, Stamped: l.Notify})
	l.UseSequencer(seq)
	run(t, seq.Run)
	require.Eventually(t, seq.Leading, 10*time.Second, 5*time.Millisecond)
	for i := range 3 {
		require.NoError(t, db.Tx(ctx, func(tx *ent.Tx) error {
			return events.Append(ctx, tx, db.SQL(), events.Event{Type: events.TaskCreated, CorrelationID: fmt.Sprint(i)})
		}))
		l.Appended()
		require.NoError(t, l.Wait(ctx, int64(i)), "event %d numbered without a notification", i+1)
	}
}
