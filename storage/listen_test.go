package storage_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// recorder is a ListenHandler that records payloads and counts catch-ups.
type recorder struct {
	mu       sync.Mutex
	payloads []string
	catchUps int
}

func (r *recorder) Notified(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.payloads = append(r.payloads, p)
}

func (r *recorder) CatchUp() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.catchUps++
}

func (r *recorder) state() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.payloads...), r.catchUps
}

// runListener runs l until the test ends and requires a clean stop.
func runListener(t *testing.T, l *storage.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// TestListenerMultiplexes: one connection serves every channel; each
// handler gets its own channel's payloads and a catch-up on connecting.
func TestListenerMultiplexes(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := context.Background()
	l := storage.NewListener(db, slog.New(slog.DiscardHandler), storage.ListenerOptions{})
	a, b := &recorder{}, &recorder{}
	require.NoError(t, l.Handle("tasker_a", a))
	require.NoError(t, l.Handle("tasker_b", b))
	runListener(t, l)
	require.Eventually(t, l.Connected, 10*time.Second, 5*time.Millisecond)
	require.Error(t, l.Handle("tasker_c", &recorder{}), "channels are fixed once running")

	_, err := db.Writer.ExecContext(ctx, "SELECT pg_notify('tasker_a', 'one'), pg_notify('tasker_b', 'two')")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		pa, _ := a.state()
		pb, _ := b.state()
		return len(pa) == 1 && len(pb) == 1
	}, 10*time.Second, 5*time.Millisecond)
	pa, ca := a.state()
	pb, cb := b.state()
	require.Equal(t, []string{"one"}, pa)
	require.Equal(t, []string{"two"}, pb)
	require.Equal(t, 1, ca, "one catch-up on connecting")
	require.Equal(t, 1, cb)

	var conns int
	require.NoError(t, db.ReadDB.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'tasker-listener'`).Scan(&conns))
	require.Equal(t, 1, conns, "one LISTEN connection for every channel")
}

// TestListenerReconnects: when the listener's backend is terminated, the
// handlers are told to catch up while it is away and again once it is
// back, and notifications flow again on the new connection.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := context.Background()
	l := storage.NewListener(db, slog.New(slog.DiscardHandler), storage.ListenerOptions{
		Ping: 200 * time.Millisecond, Poll: 10 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	r := &recorder{}
	require.NoError(t, l.Handle("tasker_a", r))
	runListener(t, l)
	require.Eventually(t, l.Connected, 10*time.Second, 5*time.Millisecond)
	_, before := r.state()

	var pid int
	require.NoError(t, db.ReadDB.QueryRowContext(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'tasker-listener'`).Scan(&pid))
	_, err := db.Writer.ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)

	// Reconnected: a new backend, and at least two more catch-ups (one
	// while away, one on reconnecting).
	require.Eventually(t, func() bool {
		var other int
		err := db.ReadDB.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'tasker-listener' AND pid <> $1`, pid).Scan(&other)
		_, n := r.state()
		return err == nil && other == 1 && l.Connected() && n >= before+2
	}, 10*time.Second, 5*time.Millisecond)

	_, err = db.Writer.ExecContext(ctx, "SELECT pg_notify('tasker_a', 'after')")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, _ := r.state()
		return len(p) == 1 && p[0] == "after"
	}, 10*time.Second, 5*time.Millisecond)
}

// TestListenerSQLite: nothing to listen to; Run waits for its context and
// the listener counts as connected.
func TestListenerSQLite(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	l := storage.NewListener(db, slog.New(slog.DiscardHandler), storage.ListenerOptions{})
	require.NoError(t, l.Handle("tasker_a", &recorder{}))
	runListener(t, l)
	require.True(t, l.Connected())
}
