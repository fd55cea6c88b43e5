package events_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection openers live as long as a pool; pools of
		// finished tests are closed, but the opener exits asynchronously.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// bundle is a log with its sequencer and listener running, as a serving
// process has them.
type bundle struct {
	db     *storage.DB
	log    *events.Log
	logger *slog.Logger
}

// setup starts the sequencer, the process's listener (both wait idly on
// SQLite) and the log's reader on db, and stops them when the test ends.
func setup(t *testing.T, db *storage.DB) *bundle {
	t.Helper()
	logger := testLogger(t)
	l := events.NewLog(db, logger)
	seq := events.NewSequencer(db, logger, events.SequencerOptions{Retry: 20 * time.Millisecond, Stamped: l.Notify})
	ln := storage.NewListener(db, logger, storage.ListenerOptions{})
	require.NoError(t, l.Listen(ln))
	require.NoError(t, seq.Listen(ln))
	run(t, ln.Run, l.Run, seq.Run)
	return &bundle{db: db, log: l, logger: logger}
}

// run runs each fn until the test ends, and requires that they return nil
// once their context is done.
func run(t *testing.T, fns ...func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Go(func() { errs[i] = fn(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
	})
}

// appendTx appends evs in one committed transaction and wakes the log, as
// the engine does.
func (b *bundle) appendTx(t *testing.T, evs ...events.Event) {
	t.Helper()
	require.NoError(t, b.append(testContext(t), evs...))
}

// append is appendTx for goroutines other than the test's.
func (b *bundle) append(ctx context.Context, evs ...events.Event) error {
	err := b.db.Tx(ctx, func(tx *ent.Tx) error {
		return events.Append(ctx, tx, b.db.SQL(), evs...)
	})
	if err == nil {
		b.log.Appended()
	}
	return err
}

// waitHead waits until the log's head reaches head.
func (b *bundle) waitHead(t *testing.T, head int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), 10*time.Second)
	defer cancel()
	require.NoError(t, b.log.Wait(ctx, head-1), "waiting for head %d", head)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testWriter sends logs to the test's output, shown when a test fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
