package server_test

import (
	"context"
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/tasktransition"
	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestEventCatalogueEmitted drives the server through every path that
// records a fact and checks the log against the catalogue: every built-in
// type is emitted by a real path, every payload has exactly its documented
// fields with their JSON types, and every transition has exactly one
// event (no layer publishes a fact twice).
func TestEventCatalogueEmitted(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		eng := b.engine
		ctx := testContext(t)
		s := &scenario{t: t, ctx: ctx, b: b}

		tpl := chain("cat")
		tpl.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT
		tpl.RetryPolicy.MaxAttempts = nil // the default, 3
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
		require.NoError(t, err) // registry.template_registered
		tpl.Description = "changed"
		_, err = b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl, Replace: true})
		require.NoError(t, err) // registry.template_replaced

		// Task 1 runs through retries, a release, a reaped lease, a
		// failure, an operator retry, another failure and a manual
		// resolution to completion.
		t1 := s.create(1) // task.created, step.enqueued (root)
		dup, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "cat", Name: "chain", Context: s.context(1)})
		require.NoError(t, err)
		require.True(t, dup.GetDuplicate()) // workflow.duplicate_detected
		a := s.claim()                      // registry.worker_seen, step.claimed, task.started
		s.fail(a, false)                    // step.retry_scheduled
		a = s.claim()                       // step.enqueued (retry due), step.claimed
		_, err = b.steps.ReleaseStep(ctx, &taskerv1.ReleaseStepRequest{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()})
		require.NoError(t, err) // step.released
		a = s.claim()           // step.claimed
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()})
		require.NoError(t, err) // step.completed, step.enqueued (parents done)
		bStep := s.claim()      // step.claimed
		require.NoError(t, db.Client.Step.UpdateOneID(uuid.MustParse(bStep.GetStepId())).
			SetLeaseExpiresAt(time.Now().Add(-time.Second)).Exec(ctx))
		reap(ctx, t, db, eng, bStep.GetStepId()) // step.retry_scheduled (lease expired)
		bStep = s.claim()                        // step.enqueued (retry due), step.claimed
		s.fail(bStep, true)                      // step.failed, task.failed
		_, err = b.tasks.RetryTask(ctx, &taskerv1.RetryTaskRequest{Id: t1.GetId()})
		require.NoError(t, err) // step.retry_requested, task.resumed
		bStep = s.claim()       // step.claimed
		s.fail(bStep, true)     // step.failed, task.failed
		result, err := structpb.NewStruct(map[string]any{"ok": true})
		require.NoError(t, err)
		_, err = b.steps.ResolveStep(ctx, &taskerv1.ResolveStepRequest{Id: bStep.GetStepId(), Result: result})
		require.NoError(t, err) // step.resolved_manually, task.resumed, task.completed

		// Task 2 is cancelled with both steps unfinished.
		t2 := s.create(2)
		_, err = b.tasks.CancelTask(ctx, &taskerv1.CancelTaskRequest{Id: t2.GetId()})
		require.NoError(t, err) // step.cancelled ×2, task.cancelled

		// Task 3 fails and is resolved by hand.
		t3 := s.create(3)
		s.fail(s.claim(), true) // step.failed, task.failed
		_, err = b.tasks.ResolveTask(ctx, &taskerv1.ResolveTaskRequest{Id: t3.GetId()})
		require.NoError(t, err) // task.resolved_manually

		for id, want := range map[string]taskerv1.TaskState{
			t1.GetId(): taskerv1.TaskState_TASK_STATE_COMPLETE,
			t2.GetId(): taskerv1.TaskState_TASK_STATE_CANCELLED,
			t3.GetId(): taskerv1.TaskState_TASK_STATE_RESOLVED_MANUALLY,
		} {
			got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
			require.NoError(t, err)
			require.Equal(t, want, got.GetTask().GetState())
		}

		settledHead(ctx, t, db)
		all := listAll(ctx, t, b.events, nil, 0)
		emitted := map[string]int{}
		for _, ev := range all {
			emitted[ev.GetType()]++
			typ, ok := events.LookupType(ev.GetType())
			require.True(t, ok, "%s is not in the catalogue", ev.GetType())
			requirePayloadFields(t, typ, ev)
		}
		var names, got []string
		for _, typ := range events.Catalogue() {
			names = append(names, typ.Name)
		}
		for name := range emitted {
			got = append(got, name)
		}
		sort.Strings(got)
		require.Equal(t, names, got, "every catalogue type is emitted by some path")
		require.Equal(t, 1, emitted[events.RegistryWorkerSeen], "a worker's first claim only")

		// One event per transition: the step events of each step are its
		// transitions (bar the creation rows into pending, which are not
		// events), and the task events of each task are its transitions.
		for _, task := range []*taskerv1.Task{t1, t2, t3} {
			var stepEvents, taskEvents int
			for _, ev := range all {
				if ev.GetTaskId() != task.GetId() {
					continue
				}
				require.Equal(t, task.GetCorrelationId(), ev.GetCorrelationId(), "every event of a task carries its correlation id")
				require.Equal(t, "cat", ev.GetNamespace())
				require.Equal(t, "chain", ev.GetTemplateName())
				require.Equal(t, "1.0.0", ev.GetTemplateVersion())
				switch {
				case ev.GetType() == events.WorkflowDuplicateDetected:
				case ev.GetStepId() != "":
					stepEvents++
				default:
					taskEvents++
				}
			}
			id := uuid.MustParse(task.GetId())
			stepTransitions, err := db.Reader.StepTransition.Query().
				Where(steptransition.TaskID(id), steptransition.FromStateNEQ("")).Count(ctx)
			require.NoError(t, err)
			taskTransitions, err := db.Reader.TaskTransition.Query().Where(tasktransition.TaskID(id)).Count(ctx)
			require.NoError(t, err)
			require.Equal(t, stepTransitions, stepEvents, "task %s: one event per step transition", task.GetId())
			require.Equal(t, taskTransitions, taskEvents, "task %s: one event per task transition", task.GetId())
		}
	})
}

// requirePayloadFields checks that ev's payload has exactly the fields the
// catalogue documents for its type, each of its JSON type.
func requirePayloadFields(t *testing.T, typ events.Type, ev *taskerv1.Event) {
	t.Helper()
	fields := ev.GetPayload().GetFields()
	var want, got []string
	for _, f := range typ.Fields {
		want = append(want, f.Name)
		v, ok := fields[f.Name]
		if !ok {
			continue
		}
		var ok2 bool
		switch f.Type {
		case events.JSONString:
			_, ok2 = v.GetKind().(*structpb.Value_StringValue)
		case events.JSONInteger:
			n, isNum := v.GetKind().(*structpb.Value_NumberValue)
			ok2 = isNum && n.NumberValue == math.Trunc(n.NumberValue)
		case events.JSONNumber:
			_, ok2 = v.GetKind().(*structpb.Value_NumberValue)
		case events.JSONBoolean:
			_, ok2 = v.GetKind().(*structpb.Value_BoolValue)
		case events.JSONArray:
			_, ok2 = v.GetKind().(*structpb.Value_ListValue)
		case events.JSONObject:
			_, ok2 = v.GetKind().(*structpb.Value_StructValue)
		}
		require.True(t, ok2, "%s (sequence %d): %s is %v, documented as %s", ev.GetType(), ev.GetSequence(), f.Name, v, f.Type)
	}
	for name := range fields {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	require.Equal(t, want, got, "%s (sequence %d): payload fields", ev.GetType(), ev.GetSequence())
}

// scenario drives one worker ("w1" serving cat/work) through a test.
type scenario struct {
	t   *testing.T
	ctx context.Context
	b   *bundle
}

func (s *scenario) context(n int) *structpb.Struct {
	c, err := structpb.NewStruct(map[string]any{"n": n})
	require.NoError(s.t, err)
	return c
}

func (s *scenario) create(n int) *taskerv1.Task {
	resp, err := s.b.tasks.CreateTask(s.ctx, &taskerv1.CreateTaskRequest{Namespace: "cat", Name: "chain", Context: s.context(n)})
	require.NoError(s.t, err)
	require.False(s.t, resp.GetDuplicate())
	return resp.GetTask()
}

func (s *scenario) claim() *taskerv1.ClaimedStep {
	resp, err := s.b.steps.ClaimSteps(s.ctx, &taskerv1.ClaimStepsRequest{
		WorkerId: "w1", Handlers: []*taskerv1.HandlerRef{{Namespace: "cat", Handler: "work"}},
		MaxSteps: 1, Wait: durationpb.New(5 * time.Second),
	})
	require.NoError(s.t, err)
	require.Len(s.t, resp.GetSteps(), 1)
	return resp.GetSteps()[0]
}

func (s *scenario) fail(c *taskerv1.ClaimedStep, nonRetryable bool) {
	_, err := s.b.steps.FailStep(s.ctx, &taskerv1.FailStepRequest{
		StepId: c.GetStepId(), LeaseToken: c.GetLeaseToken(), NonRetryable: nonRetryable,
		Error: &taskerv1.StepError{Message: "boom", Type: "test"},
	})
	require.NoError(s.t, err)
}

// reap runs a reaper of its own until the step with an expired lease has
// left in_progress. The server's reaper sleeps until the lease it knows
// of, which the test moved into the past behind its back.
func reap(ctx context.Context, t *testing.T, db *storage.DB, eng *engine.Engine, stepID string) {
	t.Helper()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.RunReaper(rctx) }()
	require.Eventually(t, func() bool {
		st, err := db.Reader.Step.Get(ctx, uuid.MustParse(stepID))
		return err == nil && st.State != step.StateInProgress
	}, 10*time.Second, 5*time.Millisecond)
	stop()
	require.NoError(t, <-done)
}
