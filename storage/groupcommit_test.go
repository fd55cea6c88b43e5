package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/namespace"
)

// openGroupDB opens a migrated SQLite database for the group-commit tests.
func openGroupDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "group.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	require.NoError(t, db.Migrate(t.Context()))
	require.NotNil(t, db.group, "SQLite writes go through the group committer")
	return db
}

func namespaces(t *testing.T, db *DB) []string {
	t.Helper()
	names, err := db.Reader.Namespace.Query().Order(ent.Asc(namespace.FieldName)).Select(namespace.FieldName).Strings(t.Context())
	require.NoError(t, err)
	return names
}

// holdWriter runs a transaction that waits until release is closed, and
// returns once it holds the writer, so that transactions submitted
// meanwhile queue up and run as one group after it.
func holdWriter(t *testing.T, db *DB, release <-chan struct{}) <-chan error {
	t.Helper()
	holding := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Tx(context.Background(), func(tx *ent.Tx) error {
			close(holding)
			<-release
			return tx.Namespace.Create().SetName("holder").Exec(context.Background())
		})
	}()
	<-holding
	return done
}

// queue submits n transactions running body, each from a goroutine of
// its own, and returns their outcomes, complete once the WaitGroup is done.
func queue(t *testing.T, db *DB, n int, body func(i int, tx *ent.Tx) error) ([]error, *sync.WaitGroup) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Tx(context.Background(), func(tx *ent.Tx) error { return body(i, tx) })
		}()
	}
	return errs, &wg
}

func TestGroupCommitCommitsConcurrentTransactionsTogether(t *testing.T) {
	t.Parallel()
	db := openGroupDB(t)
	const n = 20
	errs := afterHolder(t, db, n, func(i int, tx *ent.Tx) error {
		return tx.Namespace.Create().SetName(fmt.Sprintf("ns-%02d", i)).Exec(context.Background())
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, namespaces(t, db), n+1)
	require.Positive(t, db.group.grouped.Load(), "the queued transactions committed in groups")
	require.Zero(t, db.group.fallbacks.Load())
}

func TestGroupCommitIsolatesAFailingTransaction(t *testing.T) {
	t.Parallel()
	db := openGroupDB(t)
	refused := errors.New("refused after writing")
	const n = 9
	errs := afterHolder(t, db, n, func(i int, tx *ent.Tx) error {
		ctx := context.Background()
		if err := tx.Namespace.Create().SetName(fmt.Sprintf("ns-%d", i)).Exec(ctx); err != nil {
			return err
		}
		switch i % 3 {
		case 1:
			return refused
		case 2:
			// A statement error the function handles does not disturb
			// the group: a duplicate of its own row.
			err := tx.Namespace.Create().SetName(fmt.Sprintf("ns-%d", i)).Exec(ctx)
			require.ErrorIs(t, db.InterpretError(err), ErrUniqueViolation)
		}
		return nil
	})
	var want []string
	for i, err := range errs {
		if i%3 == 1 {
			require.ErrorIs(t, err, refused)
			continue
		}
		require.NoError(t, err)
		want = append(want, fmt.Sprintf("ns-%d", i))
	}
	require.Equal(t, append([]string{"holder"}, want...), namespaces(t, db), "the failed ones wrote nothing, the others all")
	require.Positive(t, db.group.grouped.Load())
}

func TestGroupCommitReraisesPanics(t *testing.T) {
	t.Parallel()
	db := openGroupDB(t)
	release := make(chan struct{})
	held := holdWriter(t, db, release)
	var panicked any
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { panicked = recover() }()
		_ = db.Tx(context.Background(), func(tx *ent.Tx) error {
			_ = tx.Namespace.Create().SetName("doomed").Exec(context.Background())
			panic("boom")
		})
	}()
	errs, others := queue(t, db, 3, func(i int, tx *ent.Tx) error {
		return tx.Namespace.Create().SetName(fmt.Sprintf("ns-%d", i)).Exec(context.Background())
	})
	waitQueued(t, db, 4)
	close(release)
	wg.Wait()
	others.Wait()
	require.NoError(t, <-held)
	require.Equal(t, "boom", panicked, "the panic reaches its caller")
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, []string{"holder", "ns-0", "ns-1", "ns-2"}, namespaces(t, db))
}

// TestGroupCommitFallsBackWhenTheGroupIsLost: a function that ends the
// shared transaction (as SQLite does itself when a statement is
// interrupted) must not let the others be reported committed while their
// work was rolled back: the group is detected as lost and each function
// runs again alone.
func TestGroupCommitFallsBackWhenTheGroupIsLost(t *testing.T) {
	t.Parallel()
	db := openGroupDB(t)
	const n = 6
	var mu sync.Mutex
	runs := map[int]int{}
	errs := afterHolder(t, db, n, func(i int, tx *ent.Tx) error {
		mu.Lock()
		runs[i]++
		mu.Unlock()
		ctx := context.Background()
		if err := tx.Namespace.Create().SetName(fmt.Sprintf("ns-%d", i)).Exec(ctx); err != nil {
			return err
		}
		if i == 3 {
			// Roll back whatever transaction the connection is in,
			// behind the group's back, and report success.
			_, _ = tx.ExecContext(ctx, "ROLLBACK")
		}
		return nil
	})
	got := namespaces(t, db)
	for i, err := range errs {
		if i == 3 {
			continue // its own transaction is gone too; whatever it reports
		}
		require.NoError(t, err)
		require.Contains(t, got, fmt.Sprintf("ns-%d", i), "reported committed, so it must be there")
	}
	if db.group.fallbacks.Load() == 0 {
		t.Fatalf("the lost group was not detected (runs %v)", runs)
	}
}

// afterHolder queues n transactions running body behind a transaction
// that holds the writer, so that they run as groups once it commits, and
// returns their outcomes.
func afterHolder(t *testing.T, db *DB, n int, body func(i int, tx *ent.Tx) error) []error {
	t.Helper()
	release := make(chan struct{})
	held := holdWriter(t, db, release)
	errs, wg := queue(t, db, n, body)
	waitQueued(t, db, n)
	close(release)
	wg.Wait()
	require.NoError(t, <-held)
	return errs
}

// waitQueued waits until n callers wait for the committer, which is busy
// with the holder's transaction, so that they run as one group after it.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for db.group.waiting.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d transactions queued", db.group.waiting.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommitSplitsLongGroups: a group stops taking functions once its
// time is up and commits; the rest run in the next group, and every
// function commits exactly once.
func TestGroupCommitSplitsLongGroups(t *testing.T) {
	t.Parallel()
	db := openGroupDB(t)
	const n = 12
	errs := afterHolder(t, db, n, func(i int, tx *ent.Tx) error {
		time.Sleep(groupBudget / 2)
		return tx.Namespace.Create().SetName(fmt.Sprintf("ns-%02d", i)).Exec(context.Background())
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, namespaces(t, db), n+1)
	require.GreaterOrEqual(t, db.group.grouped.Load(), int64(2), "the queue was split into several groups")
	require.Zero(t, db.group.fallbacks.Load())
}

// TestGroupCommitTxSpans: transactions committed in one group each have
// a span of their own, counting the statements of their own function
// only (not the others', nor the savepoints), with the group's size.
func TestGroupCommitTxSpans(t *testing.T) {
	t.Parallel()
	db := openGroupDB(t)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })

	const n = 8
	release := make(chan struct{})
	held := holdWriter(t, db, release)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, span := tp.Tracer("test").Start(context.Background(), fmt.Sprintf("call %d", i))
			defer span.End()
			errs[i] = db.Tx(TxName(ctx, fmt.Sprint(i)), func(tx *ent.Tx) error {
				for range i + 1 {
					if _, err := tx.Namespace.Query().Count(ctx); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	waitQueued(t, db, n)
	close(release)
	wg.Wait()
	require.NoError(t, <-held)
	for _, err := range errs {
		require.NoError(t, err)
	}

	seen, grouped := 0, false
	for _, s := range spans.GetSpans() {
		var i int
		if _, err := fmt.Sscanf(s.Name, "tx %d", &i); err != nil {
			continue
		}
		seen++
		attrs := map[string]int64{}
		for _, a := range s.Attributes {
			attrs[string(a.Key)] = a.Value.AsInt64()
		}
		require.Equal(t, int64(i+1), attrs["tasker.tx.statements"], "%s counts its own statements", s.Name)
		require.Equal(t, int64(1), attrs["tasker.tx.attempts"])
		require.GreaterOrEqual(t, attrs["tasker.tx.group_size"], int64(1))
		grouped = grouped || attrs["tasker.tx.group_size"] > 1
	}
	require.Equal(t, n, seen)
	require.True(t, grouped, "the queued transactions committed in groups")
	require.Zero(t, db.group.fallbacks.Load())
}
