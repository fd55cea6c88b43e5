package engine_test

import (
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func completion(c engine.Claim, result map[string]any) engine.Completion {
	return engine.Completion{Lease: engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, Result: result}
}

// requireFault checks an entry's error by its code and reason.
func requireFault(t *testing.T, err error, code fault.Code, reason string, why string) {
	t.Helper()
	fe, ok := fault.As(err)
	require.True(t, ok, "%s: %v is not a fault", why, err)
	require.Equal(t, code, fe.Code, "%s: %v", why, err)
	require.Equal(t, reason, fe.Reason, "%s: %v", why, err)
}

// countEventsOf counts the events of one type about a step.
func (b *bundle) countEventsOf(t *testing.T, id uuid.UUID, typ string) int {
	t.Helper()
	n, err := b.db.Reader.Event.Query().Where(event.StepID(id), event.Type(typ)).Count(b.ctx)
	require.NoError(t, err)
	return n
}

// TestCompleteStepsMixedOutcomes: one batch holds good entries, repeats and
// bad ones. Each entry is answered as CompleteStep would answer it alone;
// the bad ones change nothing and do not fail the good ones, whose children
// are enqueued and whose transitions and events are written once.
func TestCompleteStepsMixedOutcomes(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "pair", 1, []string{"a", "b"}, map[string][]string{"b": {"a"}})
		for range 5 {
			b.create(t, "pair")
		}
		cl := b.claim(t, 5)
		require.Len(t, cl, 5)
		// cl[3] is completed before the batch, with another result.
		require.NoError(t, b.eng.CompleteStep(b.ctx, completion(cl[3], nil).Lease, map[string]any{"v": "before"}))

		errs := b.eng.CompleteSteps(b.ctx, []engine.Completion{
			completion(cl[0], map[string]any{"v": 0}),
			completion(cl[0], map[string]any{"v": 0}), // the same again: succeeds
			{Lease: engine.Lease{StepID: cl[1].Step.ID.String(), Token: "not-the-lease"}},
			{Lease: engine.Lease{StepID: "not-a-uuid", Token: "x"}},
			{Lease: engine.Lease{StepID: uuid.NewString(), Token: "x"}},
			completion(cl[3], map[string]any{"v": "after"}),
			completion(cl[4], map[string]any{"v": 4}),
			completion(cl[2], map[string]any{"big": string(make([]byte, 1<<20))}),
			completion(cl[4], map[string]any{"v": "other"}), // after its own completion in this batch
		})
		require.Len(t, errs, 9)
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		requireFault(t, errs[2], fault.Aborted, fault.ReasonLeaseLost, "wrong token")
		requireFault(t, errs[3], fault.InvalidArgument, "", "bad id")
		requireFault(t, errs[4], fault.NotFound, "", "unknown step")
		requireFault(t, errs[5], fault.FailedPrecondition, fault.ReasonAlreadyCompleted, "completed before")
		require.NoError(t, errs[6])
		requireFault(t, errs[7], fault.InvalidArgument, "", "result too large")
		requireFault(t, errs[8], fault.FailedPrecondition, fault.ReasonAlreadyCompleted, "completed earlier in the batch")

		for i, want := range []step.State{step.StateComplete, step.StateInProgress, step.StateInProgress, step.StateComplete, step.StateComplete} {
			s := b.step(t, cl[i].Step.ID)
			require.Equal(t, want, s.State, "step %d", i)
			wantCompleted := 0
			if want == step.StateComplete {
				wantCompleted = 1
				require.Nil(t, s.LeaseExpiresAt)
				require.Nil(t, s.ClaimedBy)
				require.Nil(t, s.ClaimableAt)
			}
			require.Equal(t, wantCompleted, b.countEventsOf(t, s.ID, "step.completed"), "step %d", i)
			n, err := db.Reader.StepTransition.Query().
				Where(steptransition.StepID(s.ID), steptransition.ToState(string(step.StateComplete))).Count(b.ctx)
			require.NoError(t, err)
			require.Equal(t, wantCompleted, n, "step %d", i)
		}
		require.JSONEq(t, `{"v":0}`, string(b.step(t, cl[0].Step.ID).Result))
		require.JSONEq(t, `{"v":"before"}`, string(b.step(t, cl[3].Step.ID).Result))
		require.JSONEq(t, `{"v":4}`, string(b.step(t, cl[4].Step.ID).Result))

		// The children of the three completed steps are enqueued, with their
		// parents' results; the others stay pending.
		next := b.claim(t, 10)
		require.Len(t, next, 3)
		for _, c := range next {
			require.Equal(t, "b", c.Step.Name)
			require.Len(t, c.Parents, 1)
		}
		errs = b.eng.CompleteSteps(b.ctx, []engine.Completion{completion(next[0], nil), completion(next[1], nil), completion(next[2], nil)})
		for _, err := range errs {
			require.NoError(t, err)
		}
		for _, c := range next {
			require.Equal(t, task.StateComplete, b.task(t, c.Step.TaskID).State)
			require.Equal(t, []string{"task.created", "step.enqueued", "step.claimed", "task.started", "step.completed",
				"step.enqueued", "step.claimed", "step.completed", "task.completed"}, b.eventTypes(t, c.Step.TaskID))
		}
	})
}

// TestCompleteStepsFanIn: the parents of a join, all in one batch (of
// several tasks): each join is enqueued exactly once with no parent left
// pending, and a second batch completes every task exactly once.
func TestCompleteStepsFanIn(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "fanin", 1, []string{"a", "b", "c", "d"}, map[string][]string{"d": {"a", "b", "c"}})
		const n = 4
		for range n {
			b.create(t, "fanin")
		}
		parents := b.claim(t, 100)
		require.Len(t, parents, 3*n)
		cs := make([]engine.Completion, len(parents))
		for i, c := range parents {
			cs[i] = completion(c, map[string]any{"from": c.Step.Name})
		}
		for _, err := range b.eng.CompleteSteps(b.ctx, cs) {
			require.NoError(t, err)
		}
		joins, err := db.Reader.Step.Query().Where(step.Name("d")).All(b.ctx)
		require.NoError(t, err)
		require.Len(t, joins, n)
		for _, d := range joins {
			require.Equal(t, step.StateEnqueued, d.State)
			require.Zero(t, d.PendingParents)
			require.Equal(t, 1, b.countEventsOf(t, d.ID, "step.enqueued"))
			require.Equal(t, task.StateInProgress, b.task(t, d.TaskID).State)
		}
		ds := b.claim(t, 100)
		require.Len(t, ds, n)
		cs = cs[:0]
		for _, c := range ds {
			require.Len(t, c.Parents, 3)
			cs = append(cs, completion(c, nil))
		}
		for _, err := range b.eng.CompleteSteps(b.ctx, cs) {
			require.NoError(t, err)
		}
		for _, d := range ds {
			require.Equal(t, task.StateComplete, b.task(t, d.Step.TaskID).State)
			cnt, err := db.Reader.Event.Query().Where(event.TaskID(d.Step.TaskID), event.Type("task.completed")).Count(b.ctx)
			require.NoError(t, err)
			require.Equal(t, 1, cnt)
		}
	})
}

// TestCompleteStepsRaceCancelTask: batches of completions race CancelTask
// of the same tasks. Each task ends one way only: its step completed and
// the task complete (the cancel refused), or the cancel first and the
// entry refused CANCELLED. Every transition leaves the state its row was
// really in, and each outcome has exactly one event.
func TestCompleteStepsRaceCancelTask(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "single", 1, []string{"a"}, nil)
		const n = 40
		for range n {
			b.create(t, "single")
		}
		var claims []engine.Claim
		for len(claims) < n {
			got := b.claim(t, 100)
			require.NotEmpty(t, got)
			claims = append(claims, got...)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		entryErrs := make([]error, n)
		cancelErrs := make([]error, n)
		for part := range 4 { // four batches of ten, racing forty cancels
			wg.Go(func() {
				<-start
				cs := make([]engine.Completion, 0, n/4)
				for i := part; i < n; i += 4 {
					cs = append(cs, completion(claims[i], map[string]any{"i": i}))
				}
				errs := b.eng.CompleteSteps(b.ctx, cs)
				for k, err := range errs {
					entryErrs[part+4*k] = err
				}
			})
		}
		for i := range n {
			wg.Go(func() {
				<-start
				_, cancelErrs[i] = b.eng.CancelTask(b.ctx, engine.TaskOp{TaskID: claims[i].Step.TaskID.String()})
			})
		}
		close(start)
		wg.Wait()

		completed := 0
		for i, c := range claims {
			tk := b.task(t, c.Step.TaskID)
			s := b.step(t, c.Step.ID)
			if entryErrs[i] == nil {
				completed++
				require.Equal(t, task.StateComplete, tk.State, "task %d", i)
				require.Equal(t, step.StateComplete, s.State)
				requireFault(t, cancelErrs[i], fault.FailedPrecondition, "INVALID_STATE", "cancel after completion")
			} else {
				requireFault(t, entryErrs[i], fault.Aborted, fault.ReasonCancelled, "completion after cancel")
				require.NoError(t, cancelErrs[i])
				require.Equal(t, task.StateCancelled, tk.State, "task %d", i)
				require.Equal(t, step.StateCancelled, s.State)
			}
			types := b.eventTypes(t, c.Step.TaskID)
			ends := 0
			for _, typ := range types {
				if typ == "task.completed" || typ == "task.cancelled" {
					ends++
				}
			}
			require.Equal(t, 1, ends, "task %d: %v", i, types)
			// Transitions chain: each leaves the state the previous entered.
			trs, err := db.Reader.StepTransition.Query().Where(steptransition.StepID(s.ID)).
				Order(steptransition.ByID()).All(b.ctx)
			require.NoError(t, err)
			for k := 1; k < len(trs); k++ {
				require.Equal(t, trs[k-1].ToState, trs[k].FromState, "step %d transitions", i)
			}
		}
		t.Logf("%d of %d completed before their cancel", completed, n)
	})
}

// TestCompleteStepsCrossingBatches: batches naming the same tasks in
// opposite orders, at once. Each locks its tasks in id order, so on
// PostgreSQL neither waits for a task the other holds while holding one
// the other wants: no deadlock is detected, and every task completes once.
func TestCompleteStepsCrossingBatches(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "twin", 1, []string{"a", "b"}, nil)
		const n = 30
		for range n {
			b.create(t, "twin")
		}
		var claims []engine.Claim
		for len(claims) < 2*n {
			got := b.claim(t, 100)
			require.NotEmpty(t, got)
			claims = append(claims, got...)
		}
		byName := map[string][]engine.Completion{}
		for _, c := range claims {
			byName[c.Step.Name] = append(byName[c.Step.Name], completion(c, nil))
		}
		as, bs := byName["a"], byName["b"]
		for i, j := 0, len(bs)-1; i < j; i, j = i+1, j-1 {
			bs[i], bs[j] = bs[j], bs[i]
		}
		before := deadlocks(t, b)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, batch := range [][]engine.Completion{as, bs, as[n/2:], bs[:n/2]} {
			wg.Go(func() {
				<-start
				for _, err := range b.eng.CompleteSteps(b.ctx, batch) {
					require.NoError(t, err)
				}
			})
		}
		close(start)
		wg.Wait()
		for _, c := range claims {
			require.Equal(t, task.StateComplete, b.task(t, c.Step.TaskID).State)
			cnt, err := db.Reader.Event.Query().Where(event.TaskID(c.Step.TaskID), event.Type("task.completed")).Count(b.ctx)
			require.NoError(t, err)
			require.Equal(t, 1, cnt)
		}
		if db.Dialect == "postgres" {
			require.Equal(t, before, settledDeadlocks(t, b), "deadlocks detected in the test database")
		}
	})
}
