package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/tasktransition"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestOperatorsRaceWorkers runs operator calls (CancelTask, RetryTask,
// RetryStep, ResolveStep, CancelStep) against workers claiming, completing,
// failing and releasing the steps of 200 tasks at the same time. Every
// writer takes its locks in one order (doc.go), so on PostgreSQL no
// transaction deadlocks (pg_stat_database.deadlocks does not move: the
// storage layer's 40P01 retry is never needed), every transition row leaves
// the state the previous one entered, no operator call answers LEASE_LOST,
// and a worker only ever loses a lease to a cancellation.
func TestOperatorsRaceWorkers(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "race", 3, []string{"a", "b", "c", "d"}, map[string][]string{"d": {"a", "b", "c"}})
		const n = 200
		taskIDs := make([]uuid.UUID, n)
		for i := range taskIDs {
			taskIDs[i] = b.create(t, "race").ID
		}
		all, err := db.Reader.Step.Query().All(b.ctx)
		require.NoError(t, err)
		stepsOf := map[uuid.UUID][]uuid.UUID{}
		for _, s := range all {
			stepsOf[s.TaskID] = append(stepsOf[s.TaskID], s.ID)
		}
		before := deadlocks(t, b)

		var (
			mu       sync.Mutex
			failures []string
		)
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		stop := make(chan struct{})
		var claimed, opsDone atomic.Int64
		var workers sync.WaitGroup
		for w := range 4 {
			workers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					claims, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
						WorkerID: fmt.Sprintf("w%d", w), Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}},
						Max: 5, Wait: 50 * time.Millisecond,
					}, stop)
					if err != nil {
						fail("claim: %v", err)
						return
					}
					claimed.Add(int64(len(claims)))
					for _, c := range claims {
						l := engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}
						var err error
						switch r := rand.Float64(); {
						case r < 0.6:
							err = b.eng.CompleteStep(b.ctx, l, map[string]any{"by": w})
						case r < 0.75:
							_, err = b.eng.FailStep(b.ctx, engine.FailParams{Lease: l, Message: "flaky"})
						case r < 0.9:
							_, err = b.eng.FailStep(b.ctx, engine.FailParams{Lease: l, Message: "broken", NonRetryable: true})
						default:
							err = b.eng.ReleaseStep(b.ctx, l, "")
						}
						// Only an operator takes a held step away from its
						// worker, and only by cancelling it.
						if fe, ok := fault.As(err); err != nil && (!ok || fe.Code != fault.Aborted || fe.Reason != fault.ReasonCancelled) {
							fail("worker call on step %s: %v", c.Step.ID, err)
						}
					}
				}
			})
		}

		// The operators walk the tasks in creation order first, which is
		// the order claims take them in, so they meet claims on pending
		// tasks; then they pick tasks at random.
		var next atomic.Int64
		var operators sync.WaitGroup
		for range 4 {
			operators.Go(func() {
				for {
					k := int(next.Add(1)) - 1
					if k >= 3*n {
						return
					}
					tid := taskIDs[rand.IntN(n)]
					if k < n {
						tid = taskIDs[k]
					}
					steps := stepsOf[tid]
					sid := steps[rand.IntN(len(steps))].String()
					var (
						err  error
						call string
					)
					switch r := rand.Float64(); {
					case r < 0.15:
						call = "CancelTask"
						_, err = b.eng.CancelTask(b.ctx, engine.TaskOp{TaskID: tid.String()})
					case r < 0.3:
						call = "RetryTask"
						_, err = b.eng.RetryTask(b.ctx, engine.TaskOp{TaskID: tid.String()})
					case r < 0.55:
						call = "RetryStep"
						_, err = b.eng.RetryStep(b.ctx, engine.StepOp{StepID: sid})
					case r < 0.8:
						call = "ResolveStep"
						_, err = b.eng.ResolveStep(b.ctx, engine.StepOp{StepID: sid}, map[string]any{"by": "operator"})
					default:
						call = "CancelStep"
						_, err = b.eng.CancelStep(b.ctx, engine.StepOp{StepID: sid})
					}
					opsDone.Add(1)
					// Refusing a move the current state does not allow is
					// the only expected answer besides success.
					if fe, ok := fault.As(err); err != nil && (!ok || fe.Code != fault.FailedPrecondition) {
						fail("%s on task %s: %v", call, tid, err)
					}
				}
			})
		}
		operators.Wait()
		close(stop)
		workers.Wait()
		require.Empty(t, failures)
		require.EqualValues(t, 3*n, opsDone.Load())
		require.Positive(t, claimed.Load())

		requireChains(t, b)
		if db.Dialect == dialect.Postgres {
			require.Equal(t, before, settledDeadlocks(t, b), "deadlocks detected in the test database")
		}
	})
}

// TestClaimSkipsHeldTask: a claim does not queue behind a transaction that
// holds a task's lock (an operator's, a report's): it takes the due steps
// of other tasks at once, and the held task's once the lock is gone.
// PostgreSQL only: SQLite's single writer has no row locks to hold.
func TestClaimSkipsHeldTask(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	b := setup(t, db)
	b.register(t, "single", 1, []string{"a"}, nil)
	held := b.create(t, "single")
	free := b.create(t, "single")

	tx, err := db.Writer.BeginTx(b.ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(b.ctx, "SELECT 1 FROM tasks WHERE id = $1 FOR NO KEY UPDATE", held.ID)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	claims, err := b.eng.ClaimSteps(ctx, engine.ClaimParams{
		WorkerID: "w", Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: 2,
	}, nil)
	require.NoError(t, err, "the claim must not wait for the held task")
	require.Len(t, claims, 1)
	require.Equal(t, free.ID, claims[0].Step.TaskID)

	require.NoError(t, tx.Rollback())
	claims = b.claim(t, 2)
	require.Len(t, claims, 1)
	require.Equal(t, held.ID, claims[0].Step.TaskID)
}

// requireChains checks every transition row of every step and task leaves
// the state the previous row entered; the first leaves the empty state.
func requireChains(t *testing.T, b *bundle) {
	t.Helper()
	steps, err := b.db.Reader.StepTransition.Query().Order(ent.Asc(steptransition.FieldID)).All(b.ctx)
	require.NoError(t, err)
	last := map[uuid.UUID]string{}
	for _, tr := range steps {
		prev, seen := last[tr.StepID]
		require.Equal(t, prev, tr.FromState, "step %s: transition %d (%s -> %s, %q) does not leave %q (seen before: %v)",
			tr.StepID, tr.ID, tr.FromState, tr.ToState, tr.Reason, prev, seen)
		last[tr.StepID] = tr.ToState
	}
	tasks, err := b.db.Reader.TaskTransition.Query().Order(ent.Asc(tasktransition.FieldID)).All(b.ctx)
	require.NoError(t, err)
	lastTask := map[uuid.UUID]string{}
	for _, tr := range tasks {
		prev, seen := lastTask[tr.TaskID]
		require.Equal(t, prev, tr.FromState, "task %s: transition %d (%s -> %s, %q) does not leave %q (seen before: %v)",
			tr.TaskID, tr.ID, tr.FromState, tr.ToState, tr.Reason, prev, seen)
		lastTask[tr.TaskID] = tr.ToState
	}
	// Every step's and task's current state is where its chain ends.
	all, err := b.db.Reader.Step.Query().All(b.ctx)
	require.NoError(t, err)
	for _, s := range all {
		require.Equal(t, string(s.State), last[s.ID], "step %s", s.ID)
	}
	ts, err := b.db.Reader.Task.Query().All(b.ctx)
	require.NoError(t, err)
	for _, tk := range ts {
		require.Equal(t, string(tk.State), lastTask[tk.ID], "task %s", tk.ID)
	}
}

// deadlocks reads how many deadlocks PostgreSQL detected in the test's
// database (0 on SQLite, which has one writer and no row locks).
func deadlocks(t *testing.T, b *bundle) int64 {
	t.Helper()
	if b.db.Dialect != dialect.Postgres {
		return 0
	}
	var n int64
	require.NoError(t, b.db.ReadDB.QueryRowContext(b.ctx,
		"SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").Scan(&n))
	return n
}

// settledDeadlocks reads the deadlock count once every backend that ran
// the test's transactions has reported its statistics. A backend flushes
// them lazily while it lives, but always as it exits, before it leaves
// pg_stat_activity: so the pool's connections are closed and the count is
// read once none of them is left.
func settledDeadlocks(t *testing.T, b *bundle) int64 {
	t.Helper()
	b.db.ReadDB.SetMaxIdleConns(0)
	require.Eventually(t, func() bool {
		var others int
		err := b.db.ReadDB.QueryRowContext(b.ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&others)
		return err == nil && others == 0
	}, 10*time.Second, 10*time.Millisecond, "the pool's backends exit")
	return deadlocks(t, b)
}
