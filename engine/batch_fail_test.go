package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// registerJoin stores name: a and b run side by side and c joins them,
// with attempts attempts and a backoff of a minute doubling up to an hour
// without jitter, so due times are exact and no retry is due during a
// test.
func (b *bundle) registerJoin(t *testing.T, name string, attempts int32) {
	t.Helper()
	b.registerWith(t, name, &taskerv1.RetryPolicy{
		MaxAttempts: proto.Int32(attempts), InitialBackoff: durationpb.New(time.Minute), MaxBackoff: durationpb.New(time.Hour),
		BackoffMultiplier: proto.Float64(2), Jitter: proto.Float64(0),
	}, []string{"a", "b", "c"}, map[string][]string{"c": {"a", "b"}})
}

// leases are the claims of some tasks, by task (in creation order) and
// step name.
type leases struct {
	tasks []uuid.UUID
	of    map[uuid.UUID]map[string]engine.Claim
}

// createAndClaim creates n tasks of name and claims every step that can
// run.
func (b *bundle) createAndClaim(t *testing.T, name string, n int) leases {
	t.Helper()
	ls := leases{of: map[uuid.UUID]map[string]engine.Claim{}}
	want := 0
	for range n {
		id := b.create(t, name).ID
		ls.tasks = append(ls.tasks, id)
		ls.of[id] = map[string]engine.Claim{}
		roots, err := b.db.Reader.Step.Query().Where(step.TaskID(id), step.StateEQ(step.StateEnqueued)).Count(b.ctx)
		require.NoError(t, err)
		want += roots
	}
	for got := 0; got < want; {
		cs := b.claim(t, 100)
		require.NotEmpty(t, cs)
		for _, c := range cs {
			require.Contains(t, ls.of, c.Step.TaskID, "a step of another task was due")
			ls.of[c.Step.TaskID][c.Step.Name] = c
		}
		got += len(cs)
	}
	return ls
}

func (ls leases) lease(i int, name string) engine.Lease {
	c := ls.of[ls.tasks[i]][name]
	return engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}
}

func (ls leases) stepID(i int, name string) uuid.UUID { return ls.of[ls.tasks[i]][name].Step.ID }

// failure is a FailParams of one lease.
func failure(l engine.Lease, message string, nonRetryable bool) engine.FailParams {
	return engine.FailParams{Lease: l, Message: message, Type: "test", NonRetryable: nonRetryable}
}

// history is what a task became, without its ids: its row, its steps' rows
// and transitions, and its events, so two tasks given the same reports can
// be compared.
func (b *bundle) history(t *testing.T, taskID uuid.UUID) []string {
	t.Helper()
	var out []string
	tm := func(p *time.Time) string {
		if p == nil {
			return "-"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	tk := b.task(t, taskID)
	out = append(out, fmt.Sprintf("task %s finished %s updated %s", tk.State, tm(tk.FinishedAt), tm(&tk.UpdatedAt)))
	steps, err := b.db.Reader.Step.Query().Where(step.TaskID(taskID)).Order(step.ByName()).All(b.ctx)
	require.NoError(t, err)
	names := map[uuid.UUID]string{}
	for _, s := range steps {
		names[s.ID] = s.Name
		claimedBy := "-"
		if s.ClaimedBy != nil {
			claimedBy = *s.ClaimedBy
		}
		out = append(out, fmt.Sprintf("step %s %s attempts %d/%d error %q %q available %s claimable %s finished %s updated %s lease %s deadline %s by %s parents %d",
			s.Name, s.State, s.Attempts, s.AttemptBudget, s.LastErrorMessage, s.LastErrorType, tm(s.AvailableAt), tm(s.ClaimableAt),
			tm(s.FinishedAt), tm(&s.UpdatedAt), tm(s.LeaseExpiresAt), tm(s.ExecutionDeadline), claimedBy, s.PendingParents))
		trs, err := b.db.Reader.StepTransition.Query().Where(steptransition.StepID(s.ID)).Order(steptransition.ByID()).All(b.ctx)
		require.NoError(t, err)
		for _, tr := range trs {
			out = append(out, fmt.Sprintf("  %s→%s %q attempt %d %s %s", tr.FromState, tr.ToState, tr.Reason, tr.Attempt,
				canonicalJSON(t, tr.Metadata), tm(&tr.CreatedAt)))
		}
	}
	evs, err := b.db.Reader.Event.Query().Where(event.TaskID(taskID)).Order(event.ByID()).All(b.ctx)
	require.NoError(t, err)
	for _, ev := range evs {
		name := "-"
		if ev.StepID != nil {
			name = names[*ev.StepID]
		}
		out = append(out, fmt.Sprintf("event %s %s %s %s", ev.Type, name, canonicalJSON(t, ev.Payload), tm(&ev.CreatedAt)))
	}
	return out
}

func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	if len(raw) == 0 {
		return "null"
	}
	var v any
	require.NoError(t, json.Unmarshal(raw, &v))
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return string(out)
}

// sameAnswer checks that a batch entry was answered as FailStep answered
// the same report alone.
func sameAnswer(t *testing.T, single, batch error, why string) {
	t.Helper()
	if single == nil {
		require.NoError(t, batch, why)
		return
	}
	require.Error(t, batch, why)
	fs, ok := fault.As(single)
	require.True(t, ok, "%s: %v", why, single)
	fb, ok := fault.As(batch)
	require.True(t, ok, "%s: %v", why, batch)
	require.Equal(t, fs.Code, fb.Code, "%s: %v / %v", why, single, batch)
	require.Equal(t, fs.Reason, fb.Reason, "%s: %v / %v", why, single, batch)
	require.Equal(t, fs.Metadata, fb.Metadata, why)
	require.Equal(t, fs.Violations, fb.Violations, why)
}

// TestFailStepsAsFailStep: the same reports, as one batch and one at a
// time (FailStep), on two sets of tasks under a stopped clock. Each entry is
// answered alike — retryable, non-retryable, exhausted, lease lost, reaped,
// unknown, invalid, repeated with the same or another error, before or
// within the batch — and leaves the same rows, transitions, events and
// metrics; refused entries change nothing.
func TestFailStepsAsFailStep(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		rec := &observations{}
		b.eng = engine.New(db, registry.NewStore(db), slog.New(slog.DiscardHandler), engine.Options{Metrics: rec})
		// Ahead of the rows' creation times, so that durations measured
		// from them are not negative.
		at := time.Now().UTC().Add(time.Minute).Truncate(time.Microsecond)
		engine.SetClock(b.eng, func() time.Time { return at })
		b.registerJoin(t, "join", 2)

		// The tasks of one side, as the reports find them.
		prepare := func() leases {
			ls := b.createAndClaim(t, "join", 7)
			// Task 4 failed before the batch: a for a retry, b for good.
			_, err := b.eng.FailStep(b.ctx, failure(ls.lease(4, "a"), "before", false))
			require.NoError(t, err)
			_, err = b.eng.FailStep(b.ctx, failure(ls.lease(4, "b"), "before", true))
			require.NoError(t, err)
			// Task 5's a was reaped: its lease expired.
			require.NoError(t, db.Client.Step.UpdateOneID(ls.stepID(5, "a")).SetLeaseExpiresAt(at.Add(-time.Second)).Exec(b.ctx))
			b.reap(t, ls.stepID(5, "a"))
			rec.take(t)
			return ls
		}
		reports := func(ls leases) []engine.FailParams {
			later := failure(ls.lease(0, "b"), "boom", false)
			later.RetryAfter = 30 * time.Second
			negative := failure(ls.lease(3, "b"), "boom", false)
			negative.RetryAfter = -time.Second
			return []engine.FailParams{
				failure(ls.lease(0, "a"), "boom", false), // 0: retry after the policy's backoff
				later,                                    // 1: retry after the worker's delay
				failure(ls.lease(1, "a"), "boom", true),  // 2: error; b still runs
				failure(ls.lease(1, "b"), "boom", false), // 3: retry
				failure(ls.lease(2, "a"), "bad", true),   // 4: error
				failure(ls.lease(2, "b"), "bad", true),   // 5: error: the task fails, once
				failure(engine.Lease{StepID: ls.lease(3, "a").StepID, Token: "not-the-lease"}, "boom", false), // 6: lease lost
				failure(ls.lease(3, "a"), "", false),                                       // 7: invalid
				negative,                                                                   // 8: invalid
				failure(ls.lease(4, "a"), "before", false),                                 // 9: a repeat: its outcome again
				failure(ls.lease(4, "b"), "other", true),                                   // 10: a repeat with another error
				failure(ls.lease(5, "a"), "late", false),                                   // 11: reaped: lease lost
				failure(ls.lease(5, "b"), "x", false),                                      // 12: retry
				failure(ls.lease(5, "b"), "x", false),                                      // 13: repeated in the batch
				failure(ls.lease(5, "b"), "y", false),                                      // 14: repeated with another error
				failure(engine.Lease{StepID: uuid.NewString(), Token: "x"}, "boom", false), // 15: unknown step
				failure(engine.Lease{StepID: "not-a-uuid", Token: "x"}, "boom", false),     // 16: invalid
				failure(ls.lease(6, "a"), "boom", true),                                    // 17: error
				failure(ls.lease(6, "a"), "boom", false),                                   // 18: the same error: its outcome again
			}
		}

		alone := prepare()
		var singleOuts []engine.FailOutcome
		var singleErrs []error
		for _, p := range reports(alone) {
			out, err := b.eng.FailStep(b.ctx, p)
			singleOuts, singleErrs = append(singleOuts, out), append(singleErrs, err)
		}
		singleObs := rec.take(t)

		batched := prepare()
		outs, errs := b.eng.FailSteps(b.ctx, reports(batched))
		batchObs := rec.take(t)

		require.Len(t, errs, len(singleErrs))
		for i := range errs {
			why := fmt.Sprintf("entry %d", i)
			sameAnswer(t, singleErrs[i], errs[i], why)
			require.Equal(t, singleOuts[i].State, outs[i].State, why)
			if singleOuts[i].AvailableAt == nil {
				require.Nil(t, outs[i].AvailableAt, why)
			} else {
				require.NotNil(t, outs[i].AvailableAt, why)
				require.True(t, singleOuts[i].AvailableAt.Equal(*outs[i].AvailableAt), "%s: %s / %s", why, singleOuts[i].AvailableAt, outs[i].AvailableAt)
			}
		}
		require.ElementsMatch(t, singleObs, batchObs, "the same metrics")
		for i := range alone.tasks {
			require.Equal(t, b.history(t, alone.tasks[i]), b.history(t, batched.tasks[i]), "task %d", i)
		}

		// What the answers are, spelled out.
		retryAt := func(i int, d time.Duration) {
			t.Helper()
			require.NoError(t, errs[i], "entry %d", i)
			require.Equal(t, engine.StepWaitingForRetry, outs[i].State, "entry %d", i)
			require.True(t, at.Add(d).Equal(*outs[i].AvailableAt), "entry %d: %s", i, outs[i].AvailableAt)
		}
		inError := func(i int) {
			t.Helper()
			require.NoError(t, errs[i], "entry %d", i)
			require.Equal(t, engine.FailOutcome{State: engine.StepError}, outs[i], "entry %d", i)
		}
		retryAt(0, time.Minute)
		retryAt(1, 30*time.Second)
		inError(2)
		retryAt(3, time.Minute)
		inError(4)
		inError(5)
		requireFault(t, errs[6], fault.Aborted, fault.ReasonLeaseLost, "wrong token")
		requireFault(t, errs[7], fault.InvalidArgument, "", "no message")
		requireFault(t, errs[8], fault.InvalidArgument, "", "negative retry_after")
		retryAt(9, time.Minute)
		requireFault(t, errs[10], fault.FailedPrecondition, fault.ReasonAlreadyCompleted, "failed before with another error")
		requireFault(t, errs[11], fault.Aborted, fault.ReasonLeaseLost, "reaped")
		retryAt(12, time.Minute)
		retryAt(13, time.Minute)
		requireFault(t, errs[14], fault.FailedPrecondition, fault.ReasonAlreadyCompleted, "failed earlier in the batch with another error")
		requireFault(t, errs[15], fault.NotFound, "", "unknown step")
		requireFault(t, errs[16], fault.InvalidArgument, "", "bad id")
		inError(17)
		require.NoError(t, errs[18])
		require.Equal(t, engine.StepError, outs[18].State)
		for i, want := range []task.State{task.StateInProgress, task.StateInProgress, task.StateError, task.StateInProgress, task.StateInProgress, task.StateInProgress, task.StateInProgress} {
			require.Equal(t, want, b.task(t, batched.tasks[i]).State, "task %d", i)
		}
		// The refused entries of task 3 left it as claimed.
		for _, name := range []string{"a", "b"} {
			s := b.step(t, batched.stepID(3, name))
			require.Equal(t, step.StateInProgress, s.State)
			require.Equal(t, batched.lease(3, name).Token, *s.LeaseToken)
		}
		require.Len(t, b.eventTypes(t, batched.tasks[3]), 6, "created, two steps enqueued and claimed, started")
		require.Equal(t, 1, countTaskEvents(t, b, batched.tasks[2], "task.failed"))
	})
}

// countTaskEvents counts the events of one type about a task.
func countTaskEvents(t *testing.T, b *bundle, taskID uuid.UUID, typ string) int {
	t.Helper()
	n, err := b.db.Reader.Event.Query().Where(event.TaskID(taskID), event.Type(typ)).Count(b.ctx)
	require.NoError(t, err)
	return n
}

// TestFailStepsOneTask: the two parallel steps of one task fail in one
// batch. With no attempt left for either (one exhausted, one
// non-retryable) the task fails once, with one task.failed counting both
// and the join blocked; with one retry due it stays in progress.
func TestFailStepsOneTask(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.registerJoin(t, "once", 1)
		ls := b.createAndClaim(t, "once", 1)
		outs, errs := b.eng.FailSteps(b.ctx, []engine.FailParams{
			failure(ls.lease(0, "a"), "boom", false), failure(ls.lease(0, "b"), "bad", true),
		})
		for i := range errs {
			require.NoError(t, errs[i])
			require.Equal(t, engine.FailOutcome{State: engine.StepError}, outs[i])
		}
		id := ls.tasks[0]
		require.Equal(t, task.StateError, b.task(t, id).State)
		require.Equal(t, []string{"step.failed", "step.failed", "task.failed"}, b.eventTypes(t, id)[6:], "after creation and the two claims")
		ev, err := db.Reader.Event.Query().Where(event.TaskID(id), event.Type("task.failed")).Only(b.ctx)
		require.NoError(t, err)
		require.JSONEq(t, `{"from_state":"in_progress","reason":"nothing can progress","error_steps":2,"cancelled_steps":0,"blocked_steps":1}`,
			string(ev.Payload))
		for name, reason := range map[string]string{"a": "attempts exhausted", "b": "non-retryable failure"} {
			s := b.step(t, ls.stepID(0, name))
			require.Equal(t, step.StateError, s.State)
			require.Nil(t, s.ClaimableAt)
			require.NotNil(t, s.FinishedAt)
			tr, err := db.Reader.StepTransition.Query().Where(steptransition.StepID(s.ID)).
				Order(ent.Desc(steptransition.FieldID)).First(b.ctx)
			require.NoError(t, err)
			require.Equal(t, reason, tr.Reason)
		}
		join, err := db.Reader.Step.Query().Where(step.TaskID(id), step.Name("c")).Only(b.ctx)
		require.NoError(t, err)
		require.Equal(t, step.StatePending, join.State)
		require.Equal(t, 2, join.PendingParents)

		b.registerJoin(t, "twice", 2)
		ls = b.createAndClaim(t, "twice", 1)
		outs, errs = b.eng.FailSteps(b.ctx, []engine.FailParams{
			failure(ls.lease(0, "a"), "boom", false), failure(ls.lease(0, "b"), "bad", true),
		})
		require.NoError(t, errs[0])
		require.Equal(t, engine.StepWaitingForRetry, outs[0].State)
		require.NoError(t, errs[1])
		require.Equal(t, engine.StepError, outs[1].State)
		require.Equal(t, task.StateInProgress, b.task(t, ls.tasks[0]).State, "a retry is due")
		require.Zero(t, countTaskEvents(t, b, ls.tasks[0], "task.failed"))
	})
}

// TestCompleteStepsOneTask: the two parallel steps of one task complete in
// one batch: the join is enqueued once, and completing it completes the
// task once.
func TestCompleteStepsOneTask(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "join", 1, []string{"a", "b", "c"}, map[string][]string{"c": {"a", "b"}})
		ls := b.createAndClaim(t, "join", 1)
		for _, err := range b.eng.CompleteSteps(b.ctx, []engine.Completion{
			{Lease: ls.lease(0, "a"), Result: map[string]any{"v": "a"}}, {Lease: ls.lease(0, "b"), Result: map[string]any{"v": "b"}},
		}) {
			require.NoError(t, err)
		}
		cs := b.claim(t, 10)
		require.Len(t, cs, 1)
		require.Equal(t, "c", cs[0].Step.Name)
		require.Len(t, cs[0].Parents, 2)
		require.Equal(t, 1, b.countEventsOf(t, cs[0].Step.ID, "step.enqueued"))
		require.NoError(t, b.eng.CompleteSteps(b.ctx, []engine.Completion{completion(cs[0], nil)})[0])
		id := ls.tasks[0]
		require.Equal(t, task.StateComplete, b.task(t, id).State)
		require.Equal(t, []string{"step.completed", "step.completed", "step.enqueued", "step.claimed", "step.completed", "task.completed"},
			b.eventTypes(t, id)[6:], "after creation and the two claims")
	})
}

// TestFailStepsRaceCancelTask: batches of failures race CancelTask of the
// same tasks, round after round. Both reports of a task are in one batch,
// so each task goes one way: failed first (a retry or an error each as
// reported, the task failing when nothing can run; the cancel then ends
// what is left), or cancelled first (both entries refused CANCELLED,
// nothing failed). No step moves after its task is cancelled, every
// transition leaves the state the previous one entered, and each outcome
// has exactly one event.
func TestFailStepsRaceCancelTask(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.registerJoin(t, "race", 3)
		const n, batches, rounds = 24, 4, 3
		failedFirst := 0
		for range rounds {
			ls := b.createAndClaim(t, "race", n)
			// Task i's a fails for a retry when i is even, for good when
			// odd; its b fails for good. Task i is in batch i%batches.
			reportsOf := func(i int) []engine.FailParams {
				return []engine.FailParams{failure(ls.lease(i, "a"), "a failed", i%2 == 1), failure(ls.lease(i, "b"), "b failed", true)}
			}
			outs := make([][]engine.FailOutcome, n)
			errs := make([][]error, n)
			cancelErrs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for k := range batches {
				wg.Go(func() {
					<-start
					var ps []engine.FailParams
					for i := k; i < n; i += batches {
						ps = append(ps, reportsOf(i)...)
					}
					o, e := b.eng.FailSteps(b.ctx, ps)
					for j, i := 0, k; i < n; j, i = j+2, i+batches {
						outs[i], errs[i] = o[j:j+2], e[j:j+2]
					}
				})
			}
			for i := range n {
				wg.Go(func() {
					<-start
					_, cancelErrs[i] = b.eng.CancelTask(b.ctx, engine.TaskOp{TaskID: ls.tasks[i].String()})
				})
			}
			close(start)
			wg.Wait()

			for i, id := range ls.tasks {
				require.NoError(t, cancelErrs[i], "task %d: a failed task can still be cancelled", i)
				require.Equal(t, task.StateCancelled, b.task(t, id).State, "task %d", i)
				a, bs := b.step(t, ls.stepID(i, "a")), b.step(t, ls.stepID(i, "b"))
				wantFailed := map[string]int{}
				if errs[i][0] == nil {
					failedFirst++
					require.NoError(t, errs[i][1], "task %d: both reports are one transaction", i)
					require.Equal(t, engine.StepError, outs[i][1].State)
					require.Equal(t, step.StateError, bs.State)
					wantFailed["step.failed"]++
					if i%2 == 0 {
						require.Equal(t, engine.StepWaitingForRetry, outs[i][0].State)
						require.Equal(t, step.StateCancelled, a.State, "task %d: the retry was cancelled", i)
						wantFailed["step.retry_scheduled"]++
					} else {
						require.Equal(t, engine.StepError, outs[i][0].State)
						require.Equal(t, step.StateError, a.State)
						wantFailed["step.failed"]++
						wantFailed["task.failed"]++
					}
				} else {
					for j := range errs[i] {
						requireFault(t, errs[i][j], fault.Aborted, fault.ReasonCancelled, "failure after cancel")
					}
					require.Equal(t, step.StateCancelled, a.State)
					require.Equal(t, step.StateCancelled, bs.State)
				}
				types := b.eventTypes(t, id)
				got := map[string]int{}
				for _, typ := range types {
					if typ == "step.failed" || typ == "step.retry_scheduled" || typ == "task.failed" {
						got[typ]++
					}
				}
				require.Equal(t, wantFailed, got, "task %d: %v", i, types)
				require.Equal(t, "task.cancelled", types[len(types)-1], "task %d: nothing after the cancellation: %v", i, types)
				require.Equal(t, 1, countTaskEvents(t, b, id, "task.cancelled"))
				steps, err := db.Reader.Step.Query().Where(step.TaskID(id)).All(b.ctx)
				require.NoError(t, err)
				for _, s := range steps {
					require.True(t, s.State == step.StateCancelled || s.State == step.StateError, "task %d step %s: %s", i, s.Name, s.State)
					trs, err := db.Reader.StepTransition.Query().Where(steptransition.StepID(s.ID)).Order(steptransition.ByID()).All(b.ctx)
					require.NoError(t, err)
					for k := 1; k < len(trs); k++ {
						require.Equal(t, trs[k-1].ToState, trs[k].FromState, "task %d step %s transitions", i, s.Name)
					}
					require.Equal(t, string(s.State), trs[len(trs)-1].ToState)
				}
			}
		}
		t.Logf("%d of %d tasks failed before their cancel", failedFirst, n*rounds)
	})
}

// TestReportBatchStatements: a batch of failures, or of completions, runs
// the same statements whatever its size. The statements are those the
// engine's transaction spans count (storage's counting driver), so on
// SQLite too each call counts its own, whatever it shared a group commit
// with.
func TestReportBatchStatements(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		eng := b.eng
		spans := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
		// counted runs fn in a traced call and returns the statements of the
		// transactions it ran.
		counted := func(fn func(ctx context.Context)) int64 {
			spans.Reset()
			ctx, span := tp.Tracer("test").Start(b.ctx, "measure")
			fn(ctx)
			span.End()
			var n int64
			for _, s := range spans.GetSpans() {
				if !strings.HasPrefix(s.Name, "tx ") {
					continue
				}
				for _, a := range s.Attributes {
					if a.Key == "tasker.tx.statements" {
						n += a.Value.AsInt64()
					}
				}
			}
			return n
		}
		b.registerJoin(t, "count", 2)
		b.register(t, "done", 1, []string{"a", "b", "c"}, map[string][]string{"c": {"a", "b"}})
		// fail: even tasks, a retry and an error (the task goes on); odd
		// tasks, two errors (the task fails). complete: even tasks, both
		// parents (the join is enqueued); odd tasks, one (the join waits).
		measure := func(tasks int) (fail, complete, failAlone int64) {
			ls := b.createAndClaim(t, "count", tasks)
			var ps []engine.FailParams
			for i := range tasks {
				ps = append(ps, failure(ls.lease(i, "a"), "boom", i%2 == 1), failure(ls.lease(i, "b"), "boom", true))
			}
			fail = counted(func(ctx context.Context) {
				_, errs := eng.FailSteps(ctx, ps)
				for _, err := range errs {
					require.NoError(t, err)
				}
			})
			ls = b.createAndClaim(t, "count", tasks)
			failAlone = counted(func(ctx context.Context) {
				for i := range tasks {
					for _, p := range []engine.FailParams{failure(ls.lease(i, "a"), "boom", i%2 == 1), failure(ls.lease(i, "b"), "boom", true)} {
						_, err := eng.FailStep(ctx, p)
						require.NoError(t, err)
					}
				}
			})

			ls = b.createAndClaim(t, "done", tasks)
			var cs []engine.Completion
			for i := range tasks {
				cs = append(cs, engine.Completion{Lease: ls.lease(i, "a")})
				if i%2 == 0 {
					cs = append(cs, engine.Completion{Lease: ls.lease(i, "b")})
				}
			}
			complete = counted(func(ctx context.Context) {
				for _, err := range eng.CompleteSteps(ctx, cs) {
					require.NoError(t, err)
				}
			})
			require.Len(t, b.claim(t, 100), (tasks+1)/2, "the joins enqueued, out of the way of the next tasks' claims")
			return fail, complete, failAlone
		}
		fail2, complete2, alone2 := measure(2)
		fail20, complete20, alone20 := measure(20)
		t.Logf("statements per batch of 2 / 20 tasks: failures %d / %d (one at a time: %d / %d), completions %d / %d",
			fail2, fail20, alone2, alone20, complete2, complete20)
		require.Equal(t, fail2, fail20)
		require.Equal(t, complete2, complete20)
		want := int64(9) // lock, read, two step updates, count, task update, three inserts
		if db.Dialect == dialect.SQLite {
			want++ // and the read of the event log's head, which numbers the events on SQLite
		}
		require.Equal(t, want, fail2)
	})
}
