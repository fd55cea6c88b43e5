package engine_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// statsClock is a settable clock for the engine under test.
type statsClock struct {
	t0 time.Time
	at atomic.Int64
}

func (c *statsClock) now() time.Time      { return c.t0.Add(time.Duration(c.at.Load())) }
func (c *statsClock) set(d time.Duration) { c.at.Store(int64(d)) }

// TestStatsExactFigures runs a scripted history on a fixed clock and checks
// every figure of the report: two tasks of fetch → work finish (one
// complete after a retried work step, one in error), a third waits.
func TestStatsExactFigures(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		clock := &statsClock{t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		engine.SetClock(b.eng, clock.now)
		policy := &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(3), InitialBackoff: durationpb.New(0), MaxBackoff: durationpb.New(0)}
		for _, tpl := range []*taskerv1.TaskTemplate{
			{Namespace: "ns", Name: "pipe", Version: "1.0.0", RetryPolicy: policy, LeaseDuration: durationpb.New(time.Hour),
				Steps: []*taskerv1.StepTemplate{{Name: "fetch", Handler: "fetch"}, {Name: "work", Handler: "work", DependsOn: []string{"fetch"}}}},
			{Namespace: "ns", Name: "idle", Version: "1.0.0", RetryPolicy: policy,
				Steps: []*taskerv1.StepTemplate{{Name: "only", Handler: "orphan"}}},
		} {
			_, _, err := registry.NewStore(db).Register(b.ctx, tpl, false)
			require.NoError(t, err)
		}
		create := func(at time.Duration) uuid.UUID {
			clock.set(at)
			v, _, err := b.eng.CreateTask(b.ctx, engine.CreateTaskParams{Namespace: "ns", Name: "pipe", CorrelationID: "c"})
			require.NoError(t, err)
			return v.Task.ID
		}
		claim := func(at time.Duration, handler string) engine.Claim {
			clock.set(at)
			cs, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
				WorkerID: "w-" + handler, Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: handler}}, Max: 1,
			}, nil)
			require.NoError(t, err)
			require.Len(t, cs, 1)
			return cs[0]
		}
		lease := func(c engine.Claim) engine.Lease {
			return engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}
		}
		complete := func(at time.Duration, c engine.Claim) {
			clock.set(at)
			require.NoError(t, b.eng.CompleteStep(b.ctx, lease(c), map[string]any{"ok": true}))
		}
		fail := func(at time.Duration, c engine.Claim, nonRetryable bool) {
			clock.set(at)
			_, err := b.eng.FailStep(b.ctx, engine.FailParams{Lease: lease(c), Message: "boom", NonRetryable: nonRetryable})
			require.NoError(t, err)
		}
		s := time.Second
		t1 := create(0)
		f1 := claim(1*s, "fetch")
		complete(3*s, f1) // fetch 2s
		w1 := claim(4*s, "work")
		fail(9*s, w1, false) // work 5s, retried
		w2 := claim(10*s, "work")
		complete(11*s, w2) // work 1s; t1 complete after 11s
		t2 := create(20 * s)
		f2 := claim(21*s, "fetch")
		fail(25*s, f2, true) // fetch 4s; t2 in error after 5s
		create(30 * s)       // waits: fetch enqueued, work pending
		clock.set(60 * s)

		st, err := b.eng.Stats(b.ctx, engine.StatsParams{Namespace: "ns", From: clock.t0, To: clock.t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, 2, st.TasksFinished)
		require.Equal(t, 4, st.StepAttempts)
		require.InDelta(t, 2.0, st.PerMinute(st.TasksFinished), 1e-9)
		require.InDelta(t, 4.0, st.PerMinute(st.StepAttempts), 1e-9)
		require.False(t, st.Sampled)
		require.Equal(t, engine.Percentiles{P50: 5 * s, P95: 11 * s, P99: 11 * s, Max: 11 * s, N: 2}, st.TaskDuration)
		require.Equal(t, []engine.HandlerStats{
			{Handler: "fetch", Attempts: 2, Completed: 1, Failed: 1, Duration: engine.Percentiles{P50: 2 * s, P95: 4 * s, P99: 4 * s, Max: 4 * s, N: 2}},
			{Handler: "work", Attempts: 2, Completed: 1, Failed: 1, Duration: engine.Percentiles{P50: 1 * s, P95: 5 * s, P99: 5 * s, Max: 5 * s, N: 2}},
		}, st.Handlers)
		require.InDelta(t, 0.5, st.Handlers[0].ErrorRate(), 1e-9)

		type slowTask struct {
			id    uuid.UUID
			state engine.TaskState
			d     time.Duration
		}
		var tasks []slowTask
		for _, x := range st.SlowestTasks {
			tasks = append(tasks, slowTask{x.TaskID, x.State, x.Duration})
		}
		require.Equal(t, []slowTask{{t1, engine.TaskComplete, 11 * s}, {t2, engine.TaskError, 5 * s}}, tasks)
		type slowStep struct {
			id      uuid.UUID
			handler string
			attempt int
			state   engine.StepState
			d       time.Duration
		}
		var steps []slowStep
		for _, x := range st.SlowestSteps {
			steps = append(steps, slowStep{x.StepID, x.Handler, x.Attempt, x.State, x.Duration})
		}
		require.Equal(t, []slowStep{
			{w1.Step.ID, "work", 1, engine.StepWaitingForRetry, 5 * s},
			{f2.Step.ID, "fetch", 1, engine.StepError, 4 * s},
			{f1.Step.ID, "fetch", 1, engine.StepComplete, 2 * s},
			{w2.Step.ID, "work", 2, engine.StepComplete, 1 * s},
		}, steps)
		require.Equal(t, map[engine.TaskState]int{engine.TaskComplete: 1, engine.TaskError: 1, engine.TaskPending: 1}, st.TaskCounts)
		require.Equal(t, map[engine.StepState]int{
			engine.StepComplete: 2, engine.StepError: 1, engine.StepPending: 2, engine.StepEnqueued: 1,
		}, st.StepCounts)
		require.Equal(t, []string{"orphan"}, st.UnservedHandlers)

		// A later window sees only what happened in it; a limit cuts the lists.
		st, err = b.eng.Stats(b.ctx, engine.StatsParams{Namespace: "ns", From: clock.t0.Add(20 * s), To: clock.t0.Add(time.Minute), Slowest: 1})
		require.NoError(t, err)
		require.Equal(t, 1, st.TasksFinished)
		require.Equal(t, 1, st.StepAttempts)
		require.InDelta(t, 1.5, st.PerMinute(st.StepAttempts), 1e-9)
		require.Equal(t, []engine.HandlerStats{
			{Handler: "fetch", Attempts: 1, Failed: 1, Duration: engine.Percentiles{P50: 4 * s, P95: 4 * s, P99: 4 * s, Max: 4 * s, N: 1}},
		}, st.Handlers)
		require.Len(t, st.SlowestTasks, 1)
		require.Equal(t, t2, st.SlowestTasks[0].TaskID)
		require.Equal(t, map[engine.TaskState]int{engine.TaskError: 1, engine.TaskPending: 1}, st.TaskCounts)

		// Another namespace's window is empty.
		st, err = b.eng.Stats(b.ctx, engine.StatsParams{Namespace: "other", From: clock.t0, To: clock.t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Zero(t, st.StepAttempts)
		require.Empty(t, st.Handlers)
		require.Empty(t, st.UnservedHandlers)
	})
}

func TestStatsRefusesBadWindows(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		now := time.Now()
		for _, tc := range []struct {
			name  string
			p     engine.StatsParams
			field string
		}{
			{"no namespace", engine.StatsParams{}, "namespace"},
			{"bad namespace", engine.StatsParams{Namespace: "Not Valid"}, "namespace"},
			{"end before start", engine.StatsParams{Namespace: "ns", From: now, To: now.Add(-time.Second)}, "end_time"},
			{"empty window", engine.StatsParams{Namespace: "ns", From: now, To: now}, "end_time"},
			{"too long", engine.StatsParams{Namespace: "ns", From: now.Add(-32 * 24 * time.Hour), To: now}, "start_time"},
			{"limit", engine.StatsParams{Namespace: "ns", Slowest: 101}, "slowest_limit"},
			{"negative limit", engine.StatsParams{Namespace: "ns", Slowest: -1}, "slowest_limit"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := b.eng.Stats(b.ctx, tc.p)
				fe, ok := fault.As(err)
				require.True(t, ok, "%v", err)
				require.Equal(t, fault.InvalidArgument, fe.Code)
				require.Equal(t, tc.field, fe.Violations[0].Field)
			})
		}
	})
}
