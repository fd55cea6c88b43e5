package engine_test

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestConcurrentParentsEnqueueChildOnce completes the two middle steps of
// many diamonds at the same instant. Under READ COMMITTED each completion
// could see the other parent unfinished and neither enqueue the join; the
// task lock serialises them, so every join is enqueued exactly once and
// every task completes exactly once.
func TestConcurrentParentsEnqueueChildOnce(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "diamond", 1, []string{"a", "b", "c", "d"}, map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}})
		const n = 40
		for range n {
			b.create(t, "diamond")
		}
		completeAll := func(claims []engine.Claim) {
			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, len(claims))
			for _, c := range claims {
				wg.Go(func() {
					<-start
					errs <- b.eng.CompleteStep(b.ctx, engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken},
						map[string]any{"step": c.Step.Name})
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		}
		claimN := func(want int) []engine.Claim {
			var claims []engine.Claim
			for len(claims) < want {
				got := b.claim(t, 100)
				require.NotEmpty(t, got, "claimed %d of %d", len(claims), want)
				claims = append(claims, got...)
			}
			return claims
		}

		completeAll(claimN(n))  // every a
		middle := claimN(2 * n) // every b and c
		for _, c := range middle {
			require.Contains(t, []string{"b", "c"}, c.Step.Name)
			require.Len(t, c.Parents, 1)
			require.JSONEq(t, `{"step":"a"}`, string(c.Parents[0].Result))
		}
		completeAll(middle)

		joins, err := db.Reader.Step.Query().Where(step.Name("d")).All(b.ctx)
		require.NoError(t, err)
		require.Len(t, joins, n)
		for _, d := range joins {
			require.Equal(t, step.StateEnqueued, d.State)
			require.Zero(t, d.PendingParents)
			cnt, err := db.Reader.Event.Query().Where(event.StepID(d.ID), event.Type("step.enqueued")).Count(b.ctx)
			require.NoError(t, err)
			require.Equal(t, 1, cnt, "join enqueued exactly once")
		}
		last := claimN(n)
		for _, c := range last {
			require.Len(t, c.Parents, 2)
			require.Equal(t, "b", c.Parents[0].Name, "parents in declaration order")
		}
		completeAll(last)
		require.Empty(t, b.claim(t, 100))

		done, err := db.Reader.Task.Query().Where(task.StateEQ(task.StateComplete)).Count(b.ctx)
		require.NoError(t, err)
		require.Equal(t, n, done)
		completed, err := db.Reader.Event.Query().Where(event.Type("task.completed")).Count(b.ctx)
		require.NoError(t, err)
		require.Equal(t, n, completed, "each task completed exactly once")
		started, err := db.Reader.Event.Query().Where(event.Type("task.started")).Count(b.ctx)
		require.NoError(t, err)
		require.Equal(t, n, started)
	})
}

// TestConcurrentClaimersTakeDifferentSteps runs claimers in parallel: no
// step is handed out twice.
func TestConcurrentClaimersTakeDifferentSteps(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "single", 1, []string{"a"}, nil)
		const n = 60
		for range n {
			b.create(t, "single")
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				for {
					claims, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
						WorkerID: "w", Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: 3,
					}, nil)
					if err != nil || len(claims) == 0 {
						require.NoError(t, err)
						return
					}
					mu.Lock()
					for _, c := range claims {
						seen[c.Step.ID.String()]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Len(t, seen, n)
		for id, times := range seen {
			require.Equal(t, 1, times, "step %s claimed more than once", id)
		}
	})
}

// TestLifecycleEvents follows one task through retries to completion and
// checks the log holds exactly one event per transition, in order.
func TestLifecycleEvents(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "chain", 2, []string{"a", "b"}, map[string][]string{"b": {"a"}})
		tk := b.create(t, "chain")
		c := b.claim(t, 1)[0]
		out, err := b.eng.FailStep(b.ctx, engine.FailParams{Lease: engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, Message: "flaky"})
		require.NoError(t, err)
		require.Equal(t, engine.StepWaitingForRetry, out.State)
		c = b.claim(t, 1)[0]
		require.Equal(t, 2, c.Step.Attempts)
		require.NoError(t, b.eng.CompleteStep(b.ctx, engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, nil))
		c = b.claim(t, 1)[0]
		require.Equal(t, "b", c.Step.Name)
		require.NoError(t, b.eng.CompleteStep(b.ctx, engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, nil))
		require.Equal(t, task.StateComplete, b.task(t, tk.ID).State)
		require.Equal(t, []string{
			"task.created", "step.enqueued", // a is a root
			"step.claimed", "task.started",
			"step.retry_scheduled",
			"step.enqueued", "step.claimed", // due again, claimed directly
			"step.completed", "step.enqueued", // b's parent is done
			"step.claimed", "step.completed", "task.completed",
		}, b.eventTypes(t, tk.ID))
	})
}

// TestIdempotencyWindow: once a key's window has passed, the key creates a
// new task instead of answering with the old one.
func TestIdempotencyWindow(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "single", 1, []string{"a"}, nil)
		short := engine.New(db, registry.NewStore(db), slog.New(slog.DiscardHandler), engine.Options{IdempotencyWindow: time.Millisecond})
		p := engine.CreateTaskParams{Namespace: "ns", Name: "single", IdempotencyKey: "k"}
		first, dup, err := short.CreateTask(b.ctx, p)
		require.NoError(t, err)
		require.False(t, dup)
		time.Sleep(5 * time.Millisecond)
		p.Reason = "a different request"
		second, dup, err := short.CreateTask(b.ctx, p)
		require.NoError(t, err)
		require.False(t, dup, "the expired key is free again")
		require.NotEqual(t, first.Task.ID, second.Task.ID)
		require.Nil(t, b.task(t, first.Task.ID).IdempotencyKey, "the old task no longer holds the key")
	})
}

// TestReviveRespectsStrictIdentity: a task in error frees its strict
// identity, so an identical task may start; reviving the first one then is
// refused rather than leaving two unfinished tasks with one identity.
func TestReviveRespectsStrictIdentity(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		tpl := &taskerv1.TaskTemplate{
			Namespace: "ns", Name: "strict", Version: "1.0.0",
			IdentityStrategy: taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT,
			Steps:            []*taskerv1.StepTemplate{{Name: "a", Handler: "h"}},
		}
		_, _, err := registry.NewStore(db).Register(b.ctx, tpl, false)
		require.NoError(t, err)
		p := engine.CreateTaskParams{Namespace: "ns", Name: "strict", Context: map[string]any{"k": 1}}
		first, _, err := b.eng.CreateTask(b.ctx, p)
		require.NoError(t, err)
		c := b.claim(t, 1)[0]
		_, err = b.eng.FailStep(b.ctx, engine.FailParams{Lease: engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, Message: "no", NonRetryable: true})
		require.NoError(t, err)
		require.Equal(t, task.StateError, b.task(t, first.Task.ID).State)

		second, dup, err := b.eng.CreateTask(b.ctx, p)
		require.NoError(t, err)
		require.False(t, dup, "a task in error no longer holds its identity")
		require.NotEqual(t, first.Task.ID, second.Task.ID)

		_, err = b.eng.RetryTask(b.ctx, engine.TaskOp{TaskID: first.Task.ID.String()})
		fe, ok := fault.As(err)
		require.True(t, ok, "want a domain error, got %v", err)
		require.Equal(t, fault.FailedPrecondition, fe.Code)
		require.Equal(t, task.StateError, b.task(t, first.Task.ID).State, "nothing changed")
	})
}

// TestConcurrentClaimsStartATaskOnce: two claimers taking the two root
// steps of the same pending task at the same instant both succeed, and the
// task starts once (one task.started event), on both databases. A claim
// skips a task another claim holds (doc.go), so each may wait a moment for
// the other to commit.
func TestConcurrentClaimsStartATaskOnce(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "twins", 1, []string{"x", "y"}, nil)
		const n = 30
		for range n {
			b.create(t, "twins")
		}
		for range n {
			start := make(chan struct{})
			var wg sync.WaitGroup
			claimed := make(chan []engine.Claim, 2)
			for i := range 2 {
				wg.Go(func() {
					<-start
					got, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
						WorkerID: "w" + string(rune('0'+i)), Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: 1,
						Wait: 10 * time.Second,
					}, nil)
					require.NoError(t, err, "a claim racing another one of the same task")
					claimed <- got
				})
			}
			close(start)
			wg.Wait()
			close(claimed)
			for got := range claimed {
				require.Len(t, got, 1)
			}
		}
		tasks, err := db.Reader.Task.Query().All(b.ctx)
		require.NoError(t, err)
		require.Len(t, tasks, n)
		for _, tk := range tasks {
			require.Equal(t, task.StateInProgress, tk.State)
			started, err := db.Reader.Event.Query().Where(event.TaskID(tk.ID), event.Type("task.started")).Count(b.ctx)
			require.NoError(t, err)
			require.Equal(t, 1, started, "task %s started once", tk.ID)
		}
	})
}

// TestConcurrentClaimsWithoutWait: claimers that ask for one step at a
// time without waiting, all at once, while many steps are due. On
// PostgreSQL each reads the same first step, locks past the others (SKIP
// LOCKED) or finds it taken after their commit; a pass that loses that race
// must look again, not answer "nothing claimable" while hundreds are due.
// Every step is claimed exactly once.
func TestConcurrentClaimsWithoutWait(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "single", 1, []string{"s"}, nil)
		const claimers, each = 8, 25
		for range claimers*each + 50 {
			b.create(t, "single")
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		got := make([][]engine.Claim, claimers)
		errs := make([]error, claimers)
		for i := range claimers {
			wg.Go(func() {
				<-start
				for range each {
					cs, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
						WorkerID: "w" + string(rune('a'+i)), Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: 1,
					}, nil)
					if err == nil && len(cs) != 1 {
						err = fmt.Errorf("claim %d: got %d steps while steps were due", len(got[i])+1, len(cs))
					}
					if err != nil {
						errs[i] = err
						return
					}
					got[i] = append(got[i], cs...)
				}
			})
		}
		close(start)
		wg.Wait()
		seen := map[string]bool{}
		for i := range claimers {
			require.NoError(t, errs[i])
			for _, c := range got[i] {
				require.False(t, seen[c.Step.ID.String()], "step %s claimed twice", c.Step.ID)
				seen[c.Step.ID.String()] = true
			}
		}
		require.Len(t, seen, claimers*each)
	})
}
