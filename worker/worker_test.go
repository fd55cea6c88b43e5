package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// dag is a template shape for the DAG tests.
type dag struct {
	name  string
	steps []*taskerv1.StepTemplate
}

func dags() []dag {
	fan := []*taskerv1.StepTemplate{node("split", "node")}
	var mids []string
	for i := range 20 {
		name := fmt.Sprintf("f%02d", i)
		mids = append(mids, name)
		fan = append(fan, node(name, "node", "split"))
	}
	fan = append(fan, node("join", "node", mids...))
	return []dag{
		{"linear", []*taskerv1.StepTemplate{
			node("a", "node"), node("b", "node", "a"), node("c", "node", "b"), node("d", "node", "c"),
		}},
		{"diamond", []*taskerv1.StepTemplate{
			node("a", "node"), node("b", "node", "a"), node("c", "node", "a"), node("d", "node", "b", "c"),
		}},
		{"tree", []*taskerv1.StepTemplate{
			node("root", "node"),
			node("l", "node", "root"), node("r", "node", "root"),
			node("ll", "node", "l"), node("lr", "node", "l"), node("rl", "node", "r"), node("rr", "node", "r"),
		}},
		{"fan", fan},
		{"mixed", []*taskerv1.StepTemplate{
			node("a", "node"), node("b", "node"),
			node("c", "node", "a"), node("d", "node", "a", "b"), node("f", "node", "b"),
			node("e", "node", "c", "d"), node("g", "node", "e", "f", "a"),
		}},
	}
}

// paths counts the paths from the roots to each step: what the "node"
// handler computes from its parents' results, so a wrong or missing parent
// result shows as a wrong count.
func paths(steps []*taskerv1.StepTemplate) map[string]float64 {
	out := map[string]float64{}
	for _, s := range steps { // declaration order is topological here
		if len(s.GetDependsOn()) == 0 {
			out[s.GetName()] = 1
		}
		for _, p := range s.GetDependsOn() {
			out[s.GetName()] += out[p]
		}
	}
	return out
}

// pathHandler returns {"paths": sum of the parents' paths (1 for a root)}
// after checking the config, the parents and the correlation metadata.
func pathHandler(c *calls, parents *sync.Map) worker.HandlerFunc {
	return func(ctx context.Context, s *worker.Step) (map[string]any, error) {
		c.record(s)
		parents.Store(s.ID, s.ParentNames())
		if s.Config["step"] != s.Name {
			return nil, worker.NonRetryable(fmt.Errorf("%w: config %v for step %s", errCheck, s.Config, s.Name))
		}
		if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get("x-correlation-id")) != 1 || md.Get("x-correlation-id")[0] != s.CorrelationID {
			return nil, worker.NonRetryable(fmt.Errorf("%w: correlation metadata %v, want %s", errCheck, md, s.CorrelationID))
		}
		n := 0.0
		for _, name := range s.ParentNames() {
			r, err := s.Parent(ctx, name)
			if err != nil {
				return nil, err
			}
			p, ok := r["paths"].(float64)
			if !ok {
				return nil, worker.NonRetryable(fmt.Errorf("%w: parent %s result %v", errCheck, name, r))
			}
			n += p
		}
		if n == 0 {
			n = 1
		}
		return map[string]any{"paths": n, "step": s.Name}, nil
	}
}

func TestDAGsCompleteWithParentResults(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		shapes := dags()
		for _, d := range shapes {
			tpl := tmpl("dag", d.name, d.steps...)
			tpl.LeaseDuration = durationpb.New(5 * time.Second)
			b.register(t, tpl)
		}
		c, parents := newCalls(), &sync.Map{}
		w := b.newWorker("dag-worker", worker.Options{Concurrency: 10})
		w.MustRegister("dag", "node", pathHandler(c, parents))
		start(t, w)

		tasks := map[string]*taskerv1.Task{}
		for _, d := range shapes {
			tasks[d.name] = b.create(t, "dag", d.name, "corr-"+d.name, map[string]any{"shape": d.name})
		}
		var all []string
		for _, d := range shapes {
			task := b.wait(t, tasks[d.name].GetId())
			require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, task.GetState(), d.name)
			require.Equal(t, "corr-"+d.name, task.GetCorrelationId())
			want := paths(d.steps)
			for _, st := range d.steps {
				s := b.step(t, task, st.GetName())
				all = append(all, s.GetId())
				require.Equal(t, int32(1), s.GetAttempts(), "%s/%s", d.name, st.GetName())
				require.InDelta(t, want[st.GetName()], s.GetResult().AsMap()["paths"], 0, "%s/%s", d.name, st.GetName())
				got, ok := parents.Load(s.GetId())
				require.True(t, ok)
				require.Equal(t, declared(d.steps, st.GetDependsOn()), got, "%s/%s parents in declaration order", d.name, st.GetName())
			}
		}
		c.requireOnce(t, all)
	})
}

// declared returns names in the order their steps are declared, the order
// in which a claim lists parents.
func declared(steps []*taskerv1.StepTemplate, names []string) []string {
	out := []string{}
	for _, s := range steps {
		if slices.Contains(names, s.GetName()) {
			out = append(out, s.GetName())
		}
	}
	return out
}

// TestParentResultOmitted: parents' results too large for one claim
// response are marked omitted by the server and read by Step.Parent with
// GetStep.
func TestParentResultOmitted(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		tpl := tmpl("big", "join",
			node("p1", "blob"), node("p2", "blob"), node("p3", "blob"), node("p4", "blob"),
			node("sink", "sink", "p1", "p2", "p3", "p4"))
		tpl.LeaseDuration = durationpb.New(10 * time.Second)
		b.register(t, tpl)

		// Four results of 900 KB exceed the 3 MiB a claim may carry.
		w := b.newWorker("big-worker", worker.Options{Concurrency: 4})
		w.MustRegister("big", "blob", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			return map[string]any{"blob": strings.Repeat(s.Name[1:], 900_000)}, nil
		})
		var omitted []string
		w.MustRegister("big", "sink", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
			omitted = worker.OmittedParents(s)
			for i, name := range s.ParentNames() {
				r, err := s.Parent(ctx, name)
				if err != nil {
					return nil, err
				}
				if r["blob"] != strings.Repeat(fmt.Sprint(i+1), 900_000) {
					return nil, worker.NonRetryable(fmt.Errorf("%w: parent %s result is wrong", errCheck, name))
				}
			}
			return map[string]any{"ok": true}, nil
		})
		start(t, w)
		task := b.wait(t, b.create(t, "big", "join", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, task.GetState())
		require.NotEmpty(t, omitted, "some parent result should have been omitted from the claim")
	})
}

func TestRetryableFailuresBackOffUntilAttemptsRunOut(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		// A lease long enough that it never expires before a report on a
		// loaded machine: the retries must come from FailStep, whose
		// retry_after and backoff are what this test measures, not from
		// the reaper.
		flakyStep := node("f", "flaky")
		flakyStep.LeaseDuration = durationpb.New(30 * time.Second)
		b.register(t, tmpl("retry", "flaky", flakyStep))
		b.register(t, tmpl("retry", "panics", node("p", "panics")))
		c := newCalls()
		var mu sync.Mutex
		var at []time.Time
		w := b.newWorker("retry-worker", worker.Options{})
		w.MustRegister("retry", "flaky", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			err := worker.WithErrorType(fmt.Errorf("boom %d", s.Attempt), "flaky")
			if s.Attempt == 1 {
				// Overrides the 10ms backoff.
				return nil, worker.RetryAfter(err, 300*time.Millisecond)
			}
			return nil, err
		})
		w.MustRegister("retry", "panics", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			panic("kaboom")
		})
		start(t, w)

		flaky := b.wait(t, b.create(t, "retry", "flaky", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, flaky.GetState())
		f := b.step(t, flaky, "f")
		require.Equal(t, taskerv1.StepState_STEP_STATE_ERROR, f.GetState())
		require.Equal(t, int32(3), f.GetAttempts())
		require.Equal(t, "boom 3", f.GetLastError().GetMessage())
		require.Equal(t, "flaky", f.GetLastError().GetType())
		require.Equal(t, []int{1, 2, 3}, c.attemptsOf(f.GetId()))
		mu.Lock()
		require.GreaterOrEqual(t, at[1].Sub(at[0]), 300*time.Millisecond, "retry_after honoured")
		mu.Unlock()
		// What each failure scheduled, from the step.retry_scheduled events:
		// retry_after for the first, the 10ms policy backoff for the second.
		// Read from the log rather than timed, so a loaded machine's slow
		// claims cannot blur the two.
		list, err := taskerv1.NewEventServiceClient(b.conn).ListEvents(testContext(t), &taskerv1.ListEventsRequest{
			Filter: &taskerv1.EventFilter{TaskId: flaky.GetId(), Types: []string{"step.retry_scheduled"}},
		})
		require.NoError(t, err)
		require.Len(t, list.GetEvents(), 2)
		var delays []time.Duration
		for _, ev := range list.GetEvents() {
			due, err := time.Parse(time.RFC3339Nano, ev.GetPayload().AsMap()["available_at"].(string))
			require.NoError(t, err)
			delays = append(delays, due.Sub(ev.GetTime().AsTime()))
		}
		require.InDelta(t, 300*time.Millisecond, delays[0], float64(50*time.Millisecond), "retry_after honoured")
		require.Less(t, delays[1], 100*time.Millisecond, "policy backoff otherwise")

		panics := b.wait(t, b.create(t, "retry", "panics", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, panics.GetState())
		p := b.step(t, panics, "p")
		require.Equal(t, int32(3), p.GetAttempts())
		require.Equal(t, "panic", p.GetLastError().GetType())
		require.Contains(t, p.GetLastError().GetMessage(), "panic: kaboom")
	})
}

func TestNonRetryableFailureWaitsForIndependentBranch(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		// The slow branch holds a lease long enough that a loaded machine's
		// late heartbeat cannot expire it: the test is about the failure,
		// not about leases.
		slowStep := node("slow", "slow")
		slowStep.LeaseDuration = durationpb.New(30 * time.Second)
		b.register(t, tmpl("nr", "branches", node("bad", "bad"), node("after_bad", "ok", "bad"), slowStep))
		c := newCalls()
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		w := b.newWorker("nr-worker", worker.Options{})
		w.MustRegister("nr", "bad", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			return nil, worker.NonRetryable(worker.WithErrorType(errors.New("card declined"), "declined"))
		})
		w.MustRegister("nr", "ok", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			return nil, nil
		})
		w.MustRegister("nr", "slow", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			select {
			case <-release:
				return map[string]any{"done": true}, nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})
		start(t, w)

		task := b.create(t, "nr", "branches", "", nil)
		var bad, slow string
		for _, s := range task.GetSteps() {
			switch s.GetName() {
			case "bad":
				bad = s.GetId()
			case "slow":
				slow = s.GetId()
			}
		}
		got := b.waitFor(t, task.GetId(), func(task *taskerv1.Task) bool {
			return task.GetStepCounts().GetError() == 1 && task.GetStepCounts().GetInProgress() == 1
		})
		require.Equal(t, taskerv1.StepState_STEP_STATE_IN_PROGRESS, b.stepState(t, slow).GetState())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_IN_PROGRESS, got.GetState(), "the independent branch still runs")
		require.Equal(t, taskerv1.ExecutionStatus_EXECUTION_STATUS_BLOCKED_BY_FAILURES, got.GetExecutionStatus())

		once.Do(func() { close(release) })
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, done.GetState())
		s := b.stepState(t, bad)
		require.Equal(t, int32(1), s.GetAttempts(), "no retry of a non-retryable failure")
		require.Equal(t, int32(3), s.GetMaxAttempts())
		require.Equal(t, "declined", s.GetLastError().GetType())
		require.Equal(t, "card declined", s.GetLastError().GetMessage())
		require.Equal(t, taskerv1.StepState_STEP_STATE_COMPLETE, b.stepState(t, slow).GetState())
		require.Equal(t, taskerv1.StepState_STEP_STATE_PENDING, b.step(t, done, "after_bad").GetState())
		c.requireOnce(t, []string{bad, slow})
	})
}

// TestVanishedWorkerLeaseIsReaped: a worker that claims and disappears
// loses the step when its lease expires; the step runs again (attempt 2)
// and the vanished worker's late report is refused.
func TestVanishedWorkerLeaseIsReaped(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("ghost", "once", node("s", "work")))
		task := b.create(t, "ghost", "once", "", nil)
		ctx := testContext(t)

		claimed := time.Now()
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "ghost", Handlers: []*taskerv1.HandlerRef{{Namespace: "ghost", Handler: "work"}},
			MaxSteps: 1, Wait: durationpb.New(5 * time.Second),
		})
		require.NoError(t, err)
		require.Len(t, resp.GetSteps(), 1)
		old := resp.GetSteps()[0]
		require.Equal(t, int32(1), old.GetAttempt())

		c := newCalls()
		var ranAt atomic.Int64
		w := b.newWorker("survivor", worker.Options{})
		w.MustRegister("ghost", "work", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			ranAt.Store(time.Now().UnixNano())
			return map[string]any{"attempt": s.Attempt}, nil
		})
		start(t, w)

		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		require.Equal(t, []int{2}, c.attemptsOf(old.GetStepId()))
		require.GreaterOrEqual(t, time.Unix(0, ranAt.Load()).Sub(claimed), time.Second, "re-run only after the 1s lease")
		s := b.stepState(t, old.GetStepId())
		require.Equal(t, int32(2), s.GetAttempts())
		require.Equal(t, "lease_expired", s.GetLastError().GetType())

		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: old.GetStepId(), LeaseToken: old.GetLeaseToken()})
		requireReason(t, err, codes.Aborted, "LEASE_LOST")
	})
}

// TestLeaseLossCancelsHandler: when the server refuses to renew a lease
// (here: the step passed its execution timeout), the handler's context is
// cancelled with a *LeaseLostError cause and nothing is reported for it.
func TestLeaseLossCancelsHandler(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		st := node("s", "block")
		st.ExecutionTimeout = durationpb.New(1500 * time.Millisecond)
		st.RetryPolicy = &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(1)}
		b.register(t, tmpl("lease", "timeout", st))

		causes := make(chan error, 1)
		w := b.newWorker("lease-worker", worker.Options{})
		w.MustRegister("lease", "block", func(ctx context.Context, _ *worker.Step) (map[string]any, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			// Would fail the step with this error if it were reported.
			return nil, worker.WithErrorType(errors.New("cancelled"), "handler")
		})
		start(t, w)
		task := b.create(t, "lease", "timeout", "", nil)

		var cause error
		select {
		case cause = <-causes:
		case <-time.After(10 * time.Second):
			require.FailNow(t, "the handler was not cancelled")
		}
		var lost *worker.LeaseLostError
		require.ErrorAs(t, cause, &lost)
		require.Equal(t, codes.Aborted, lost.Code)
		require.Contains(t, []string{"TIMED_OUT", "LEASE_LOST"}, lost.Reason)
		require.Contains(t, cause.Error(), lost.Reason)

		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, done.GetState())
		s := b.step(t, done, "s")
		require.Equal(t, "timeout", s.GetLastError().GetType(), "the server's verdict, not the handler's late error")
		require.Equal(t, int32(1), s.GetAttempts())
	})
}

// TestExecutionTimeoutAnswersTimedOut: worker calls after a step's
// execution timeout must be answered Aborted TIMED_OUT (DESIGN §2's error
// table; StepService's contract), so a handler's cancellation cause says
// the attempt timed out. The reaper takes the step at its deadline, and
// from then on the engine answers LEASE_LOST instead.
func TestExecutionTimeoutAnswersTimedOut(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		st := node("s", "block")
		st.ExecutionTimeout = durationpb.New(300 * time.Millisecond)
		st.RetryPolicy = &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(1)}
		b.register(t, tmpl("timeout", "t", st))
		ctx := testContext(t)

		// The protocol alone: claim, let the timeout pass, then heartbeat
		// and report with the lease.
		task := b.create(t, "timeout", "t", "", nil)
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "raw", Handlers: []*taskerv1.HandlerRef{{Namespace: "timeout", Handler: "block"}},
			MaxSteps: 1, Wait: durationpb.New(5 * time.Second),
		})
		require.NoError(t, err)
		require.Len(t, resp.GetSteps(), 1)
		claim := resp.GetSteps()[0]
		b.wait(t, task.GetId()) // the reaper ended the attempt at its deadline
		ext, err := b.steps.ExtendLease(ctx, &taskerv1.ExtendLeaseRequest{
			WorkerId: "raw", Leases: []*taskerv1.StepLease{{StepId: claim.GetStepId(), LeaseToken: claim.GetLeaseToken()}},
		})
		require.NoError(t, err)
		res := ext.GetExtensions()[0].GetResult()
		require.Equal(t, int32(codes.Aborted), res.GetCode())
		require.Equal(t, "TIMED_OUT", res.GetReason(), "ExtendLease after the execution timeout: %s", res.GetMessage())
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: claim.GetStepId(), LeaseToken: claim.GetLeaseToken()})
		requireReason(t, err, codes.Aborted, "TIMED_OUT")

		// Through the SDK: the handler's cause names the timeout.
		causes := make(chan error, 1)
		w := b.newWorker("timeout-worker", worker.Options{})
		w.MustRegister("timeout", "block", func(ctx context.Context, _ *worker.Step) (map[string]any, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		start(t, w)
		b.create(t, "timeout", "t", "", nil)
		var cause error
		select {
		case cause = <-causes:
		case <-time.After(10 * time.Second):
			require.FailNow(t, "the handler was not cancelled")
		}
		var lost *worker.LeaseLostError
		require.ErrorAs(t, cause, &lost)
		require.Equal(t, "TIMED_OUT", lost.Reason, "cause: %v", cause)
	})
}

// TestGracefulShutdownReleasesUnfinishedSteps: on shutdown a handler that
// does not finish within ShutdownTimeout is cancelled and its step given
// back (attempt not counted); another worker then completes it.
func TestGracefulShutdownReleasesUnfinishedSteps(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("shut", "one", node("s", "work")))
		task := b.create(t, "shut", "one", "", nil)
		stepID := task.GetSteps()[0].GetId()

		started, causes := make(chan struct{}), make(chan error, 1)
		first := b.newWorker("first", worker.Options{ShutdownTimeout: 200 * time.Millisecond})
		first.MustRegister("shut", "work", func(ctx context.Context, _ *worker.Step) (map[string]any, error) {
			close(started)
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		r := start(t, first)
		<-started
		stopping := time.Now()
		require.NoError(t, r.stop(t))
		require.Less(t, time.Since(stopping), 2*time.Second)
		require.ErrorIs(t, <-causes, worker.ErrShutdown)
		s := b.stepState(t, stepID)
		require.Equal(t, taskerv1.StepState_STEP_STATE_ENQUEUED, s.GetState())
		require.Zero(t, s.GetAttempts(), "a released attempt is not counted")

		c := newCalls()
		second := b.newWorker("second", worker.Options{})
		second.MustRegister("shut", "work", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			c.record(s)
			return map[string]any{"by": "second"}, nil
		})
		start(t, second)
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		require.Equal(t, []int{1}, c.attemptsOf(stepID))
	})
}

// TestGracefulShutdownLetsHandlersFinish: a handler that finishes within
// ShutdownTimeout completes its step, and its lease is renewed meanwhile
// (it runs longer than the 1s lease).
func TestGracefulShutdownLetsHandlersFinish(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("drain", "one", node("s", "work")))
		task := b.create(t, "drain", "one", "", nil)

		started := make(chan struct{})
		w := b.newWorker("drainer", worker.Options{ShutdownTimeout: 10 * time.Second})
		w.MustRegister("drain", "work", func(ctx context.Context, _ *worker.Step) (map[string]any, error) {
			close(started)
			select {
			case <-time.After(1800 * time.Millisecond):
				return map[string]any{"slept": true}, nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		})
		r := start(t, w)
		<-started
		require.NoError(t, r.stop(t))
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		s := b.step(t, done, "s")
		require.Equal(t, int32(1), s.GetAttempts(), "the lease was renewed past 1s")
		require.Equal(t, true, s.GetResult().AsMap()["slept"])
	})
}

func TestConcurrentWorkersRunEachStepOnce(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		tpl := tmpl("load", "diamond", node("a", "node"), node("b", "node", "a"), node("c", "node", "a"), node("d", "node", "b", "c"))
		tpl.LeaseDuration = durationpb.New(5 * time.Second)
		b.register(t, tpl)

		c, parents := newCalls(), &sync.Map{}
		inner := pathHandler(c, parents)
		var peak atomic.Int32
		for i := range 3 {
			var now atomic.Int32
			w := b.newWorker(fmt.Sprintf("load-%d", i), worker.Options{Concurrency: 8})
			w.MustRegister("load", "node", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
				n := now.Add(1)
				defer now.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				return inner(ctx, s)
			})
			start(t, w)
		}

		var ids []string
		for i := range 50 {
			ids = append(ids, b.create(t, "load", "diamond", fmt.Sprintf("load-%d", i), nil).GetId())
		}
		var all []string
		for _, id := range ids {
			task := b.wait(t, id)
			require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, task.GetState())
			require.InDelta(t, 2, b.step(t, task, "d").GetResult().AsMap()["paths"], 0)
			for _, s := range task.GetSteps() {
				all = append(all, s.GetId())
			}
		}
		require.Len(t, all, 200)
		c.requireOnce(t, all)
		require.LessOrEqual(t, peak.Load(), int32(8), "a worker never runs more than Concurrency steps")
	})
}

func TestRegister(t *testing.T) {
	t.Parallel()
	w := worker.New(nil, "w", worker.Options{})
	noop := func(context.Context, *worker.Step) (map[string]any, error) { return nil, nil }
	require.NoError(t, w.Register("ns", "h", noop))
	require.ErrorContains(t, w.Register("ns", "h", noop), "already registered")
	require.Error(t, w.Register("", "h", noop))
	require.Error(t, w.Register("ns", "", noop))
	require.Error(t, w.Register("ns", "nil", nil))
	require.Panics(t, func() { w.MustRegister("ns", "h", noop) })

	require.ErrorContains(t, worker.New(nil, "empty", worker.Options{}).Run(context.Background()), "no handler")
	long := worker.New(nil, strings.Repeat("x", 129), worker.Options{})
	long.MustRegister("ns", "h", noop)
	require.ErrorContains(t, long.Run(context.Background()), "worker id")
}

func TestRegisterAfterRunFails(t *testing.T) {
	t.Parallel()
	b := setup(t, storagetest.Open(t, "sqlite"))
	w := b.newWorker("late", worker.Options{})
	w.MustRegister("ns", "h", func(context.Context, *worker.Step) (map[string]any, error) { return nil, nil })
	r := start(t, w)
	var err error
	i := 0
	require.Eventually(t, func() bool {
		i++
		err = w.Register("ns", fmt.Sprintf("h%d", i), func(context.Context, *worker.Step) (map[string]any, error) { return nil, nil })
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "Register kept succeeding after Run started")
	require.ErrorContains(t, err, "already running")
	require.NoError(t, r.stop(t))
	require.ErrorContains(t, w.Run(context.Background()), "already")
}

func TestErrorOptionsCompose(t *testing.T) {
	t.Parallel()
	base := errors.New("base")
	err := fmt.Errorf("wrapped: %w", worker.NonRetryable(worker.WithErrorType(base, "t")))
	err = worker.RetryAfter(err, time.Second)
	require.ErrorIs(t, err, base)
	require.Equal(t, "wrapped: base", err.Error())
	typ, nonRetryable, retryAfter := worker.Classify(err)
	require.Equal(t, "t", typ)
	require.True(t, nonRetryable)
	require.Equal(t, time.Second, retryAfter)
	typ, nonRetryable, retryAfter = worker.Classify(base)
	require.Empty(t, typ)
	require.False(t, nonRetryable)
	require.Zero(t, retryAfter)
	require.NoError(t, worker.NonRetryable(nil))
	require.NoError(t, worker.RetryAfter(nil, time.Second))
	require.NoError(t, worker.WithErrorType(nil, "t"))
}

// requireReason asserts a status code and its ErrorInfo reason.
func requireReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, st.Code(), "message: %s", st.Message())
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, reason, ei.GetReason())
			return
		}
	}
	require.Fail(t, "no ErrorInfo detail", "status: %v", st)
}

// TestCancelledTaskCancelsHandler: cancelling the task of a running step
// cancels the handler's context (cause CANCELLED) and nothing is reported.
func TestCancelledTaskCancelsHandler(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("cancel", "one", node("s", "block")))
		started, causes := make(chan struct{}), make(chan error, 1)
		w := b.newWorker("cancel-worker", worker.Options{})
		w.MustRegister("cancel", "block", func(ctx context.Context, _ *worker.Step) (map[string]any, error) {
			close(started)
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return map[string]any{"late": true}, nil
		})
		start(t, w)
		task := b.create(t, "cancel", "one", "", nil)
		<-started
		_, err := b.tasks.CancelTask(testContext(t), &taskerv1.CancelTaskRequest{Id: task.GetId(), Reason: "test"})
		require.NoError(t, err)

		var cause error
		select {
		case cause = <-causes:
		case <-time.After(10 * time.Second):
			require.FailNow(t, "the handler was not cancelled")
		}
		var lost *worker.LeaseLostError
		require.ErrorAs(t, cause, &lost)
		require.Equal(t, codes.Aborted, lost.Code)
		require.Equal(t, "CANCELLED", lost.Reason)
		done := b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_CANCELLED, done.GetState())
		s := b.step(t, done, "s")
		require.Equal(t, taskerv1.StepState_STEP_STATE_CANCELLED, s.GetState())
		require.Empty(t, s.GetResult().AsMap())
	})
}

// TestWorkerCallsAfterCompleteAnswerAborted: once a step is completed, the
// other worker calls with its lease are answered as StepService documents
// them: ExtendLease entries "Aborted LEASE_LOST, TIMED_OUT or CANCELLED;
// NotFound", FailStep and ReleaseStep "NotFound; Aborted LEASE_LOST,
// TIMED_OUT, CANCELLED". FailedPrecondition ALREADY_COMPLETED belongs to a
// second CompleteStep with a different result only. A heartbeat racing the
// completion is routine for every worker, so its answer must be the
// documented one.
func TestWorkerCallsAfterCompleteAnswerAborted(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("after", "one", node("s", "work")))
		b.create(t, "after", "one", "", nil)
		ctx := testContext(t)
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "raw", Handlers: []*taskerv1.HandlerRef{{Namespace: "after", Handler: "work"}},
			MaxSteps: 1, Wait: durationpb.New(5 * time.Second),
		})
		require.NoError(t, err)
		require.Len(t, resp.GetSteps(), 1)
		claim := resp.GetSteps()[0]
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: claim.GetStepId(), LeaseToken: claim.GetLeaseToken()})
		require.NoError(t, err)

		ext, err := b.steps.ExtendLease(ctx, &taskerv1.ExtendLeaseRequest{
			WorkerId: "raw", Leases: []*taskerv1.StepLease{{StepId: claim.GetStepId(), LeaseToken: claim.GetLeaseToken()}},
		})
		require.NoError(t, err)
		res := ext.GetExtensions()[0].GetResult()
		assert.Equal(t, codes.Aborted, codes.Code(res.GetCode()), "ExtendLease after completion: %s %s", res.GetReason(), res.GetMessage()) //nolint:gosec // status codes are small
		assert.Equal(t, "LEASE_LOST", res.GetReason())
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: claim.GetStepId(), LeaseToken: claim.GetLeaseToken(), Error: &taskerv1.StepError{Message: "late"},
		})
		assert.Equal(t, codes.Aborted, status.Code(err), "FailStep after completion: %v", err)
		_, err = b.steps.ReleaseStep(ctx, &taskerv1.ReleaseStepRequest{StepId: claim.GetStepId(), LeaseToken: claim.GetLeaseToken()})
		assert.Equal(t, codes.Aborted, status.Code(err), "ReleaseStep after completion: %v", err)
	})
}

// TestStepReclaimedWhileOldHandlerRuns: a handler that keeps running after
// its lease was lost must not disturb the next attempt of the same step,
// which the same worker may claim meanwhile: that attempt is still renewed
// and reported.
func TestStepReclaimedWhileOldHandlerRuns(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		st := node("s", "work")
		st.ExecutionTimeout = durationpb.New(2 * time.Second)
		b.register(t, tmpl("again", "one", st))

		second := make(chan struct{})
		w := b.newWorker("again-worker", worker.Options{Concurrency: 2})
		w.MustRegister("again", "work", func(ctx context.Context, s *worker.Step) (map[string]any, error) {
			if s.Attempt == 1 {
				<-ctx.Done() // the timeout passed; lingers past the next claim
				select {
				case <-second:
				case <-time.After(5 * time.Second):
				}
				time.Sleep(300 * time.Millisecond)
				return map[string]any{"attempt": 1}, nil
			}
			close(second)
			time.Sleep(1500 * time.Millisecond) // longer than the 1s lease
			return map[string]any{"attempt": s.Attempt}, nil
		})
		start(t, w)
		done := b.wait(t, b.create(t, "again", "one", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, done.GetState())
		s := b.step(t, done, "s")
		require.Equal(t, int32(2), s.GetAttempts())
		require.InDelta(t, 2, s.GetResult().AsMap()["attempt"], 0)
	})
}

// TestResults: results of any JSON-encodable Go type reach the server; a
// result the server cannot store fails the step for good with type
// "invalid_result" instead of being retried or left to its lease.
func TestResults(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, tmpl("res", "typed", node("s", "typed")))
		b.register(t, tmpl("res", "huge", node("s", "huge")))
		b.register(t, tmpl("res", "chan", node("s", "chan")))
		type line struct {
			SKU string `json:"sku"`
			Qty int    `json:"qty"`
		}
		w := b.newWorker("res-worker", worker.Options{})
		w.MustRegister("res", "typed", func(context.Context, *worker.Step) (map[string]any, error) {
			return map[string]any{"tags": []string{"a", "b"}, "line": line{"mug", 2}, "n": 3}, nil
		})
		w.MustRegister("res", "huge", func(context.Context, *worker.Step) (map[string]any, error) {
			return map[string]any{"blob": strings.Repeat("x", 1<<20+1)}, nil
		})
		w.MustRegister("res", "chan", func(context.Context, *worker.Step) (map[string]any, error) {
			return map[string]any{"x": make(chan int)}, nil
		})
		start(t, w)

		typed := b.wait(t, b.create(t, "res", "typed", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, typed.GetState())
		require.Equal(t, map[string]any{
			"tags": []any{"a", "b"}, "line": map[string]any{"sku": "mug", "qty": float64(2)}, "n": float64(3),
		}, b.step(t, typed, "s").GetResult().AsMap())

		for _, name := range []string{"huge", "chan"} {
			done := b.wait(t, b.create(t, "res", name, "", nil).GetId())
			require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, done.GetState(), name)
			s := b.step(t, done, "s")
			require.Equal(t, int32(1), s.GetAttempts(), name)
			require.Equal(t, "invalid_result", s.GetLastError().GetType(), name)
		}
	})
}
