package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// claimAs claims one step of the "work" handler of ns as workerID.
func claimAs(ctx context.Context, t *testing.T, b *bundle, ns, workerID string) *taskerv1.ClaimedStep {
	t.Helper()
	resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
		WorkerId: workerID, Handlers: []*taskerv1.HandlerRef{{Namespace: ns, Handler: "work"}},
		MaxSteps: 1, Wait: durationpb.New(5 * time.Second),
	})
	require.NoError(t, err)
	require.Len(t, resp.GetSteps(), 1)
	return resp.GetSteps()[0]
}

func getStep(ctx context.Context, t *testing.T, b *bundle, id string) *taskerv1.Step {
	t.Helper()
	resp, err := b.steps.GetStep(ctx, &taskerv1.GetStepRequest{Id: id})
	require.NoError(t, err)
	return resp.GetStep()
}

// TestClaimedByNamesTheLeaseHolder: claimed_by names the worker holding the
// current lease, and is empty once the lease ends by release, failure,
// expiry, completion or cancellation; the step.claimed events keep who ran
// each attempt.
func TestClaimedByNamesTheLeaseHolder(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "own")
		task, err := createChain(ctx, b, "own", 1)
		require.NoError(t, err)

		requireHolder := func(stepID, want string, state taskerv1.StepState) {
			t.Helper()
			s := getStep(ctx, t, b, stepID)
			require.Equal(t, state, s.GetState())
			require.Equal(t, want, s.GetClaimedBy(), "claimed_by in %s", s.GetState())
		}

		a := claimAs(ctx, t, b, "own", "w1")
		requireHolder(a.GetStepId(), "w1", taskerv1.StepState_STEP_STATE_IN_PROGRESS)
		_, err = b.steps.ReleaseStep(ctx, &taskerv1.ReleaseStepRequest{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()})
		require.NoError(t, err)
		requireHolder(a.GetStepId(), "", taskerv1.StepState_STEP_STATE_ENQUEUED)

		a = claimAs(ctx, t, b, "own", "w2")
		requireHolder(a.GetStepId(), "w2", taskerv1.StepState_STEP_STATE_IN_PROGRESS)
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken(), Error: &taskerv1.StepError{Message: "flaky"},
		})
		require.NoError(t, err)
		requireHolder(a.GetStepId(), "", taskerv1.StepState_STEP_STATE_WAITING_FOR_RETRY)

		// The last of two attempts: its lease expires and the reaper ends it.
		a = claimAs(ctx, t, b, "own", "w1")
		require.NoError(t, db.Client.Step.UpdateOneID(uuid.MustParse(a.GetStepId())).
			SetLeaseExpiresAt(time.Now().Add(-time.Second)).Exec(ctx))
		reap(ctx, t, db, b.engine, a.GetStepId())
		requireHolder(a.GetStepId(), "", taskerv1.StepState_STEP_STATE_ERROR)

		_, err = b.tasks.RetryTask(ctx, &taskerv1.RetryTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		a = claimAs(ctx, t, b, "own", "w3")
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()})
		require.NoError(t, err)
		requireHolder(a.GetStepId(), "", taskerv1.StepState_STEP_STATE_COMPLETE)

		next := claimAs(ctx, t, b, "own", "w1")
		requireHolder(next.GetStepId(), "w1", taskerv1.StepState_STEP_STATE_IN_PROGRESS)
		_, err = b.tasks.CancelTask(ctx, &taskerv1.CancelTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		requireHolder(next.GetStepId(), "", taskerv1.StepState_STEP_STATE_CANCELLED)

		// Who ran each attempt is not lost: each claim's event names it.
		settledHead(ctx, t, db)
		var workers []string
		for _, ev := range listAll(ctx, t, b.events, &taskerv1.EventFilter{TaskId: task.GetId(), Types: []string{events.StepClaimed}}, 0) {
			if ev.GetStepId() == a.GetStepId() {
				workers = append(workers, ev.GetPayload().GetFields()["worker_id"].GetStringValue())
			}
		}
		require.Equal(t, []string{"w1", "w2", "w1", "w3"}, workers)
	})
}

// TestCancelledStepsAreResolvedNotRetried: the one rule for cancelled
// steps. RetryTask and RetryStep never run a cancelled step again, and
// both say to resolve it; ResolveStep accepts it, and the task in error
// resumes and completes.
func TestCancelledStepsAreResolvedNotRetried(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "cx")
		task, err := createChain(ctx, b, "cx", 1)
		require.NoError(t, err)
		a := claimAs(ctx, t, b, "cx", "w1")
		_, err = b.steps.CancelStep(ctx, &taskerv1.CancelStepRequest{Id: a.GetStepId()})
		require.NoError(t, err)
		got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		require.Equal(t, taskerv1.TaskState_TASK_STATE_ERROR, got.GetTask().GetState(), "b cannot run behind a cancelled a")

		_, err = b.tasks.RetryTask(ctx, &taskerv1.RetryTaskRequest{Id: task.GetId()})
		st := requireCode(t, err, codes.FailedPrecondition)
		require.Equal(t, "INVALID_STATE", errorInfo(st).GetReason())
		require.Contains(t, st.Message(), "ResolveStep")
		_, err = b.steps.RetryStep(ctx, &taskerv1.RetryStepRequest{Id: a.GetStepId()})
		st = requireCode(t, err, codes.FailedPrecondition)
		require.Equal(t, "STEP_STATE_CANCELLED", errorInfo(st).GetMetadata()["current_state"])
		require.Contains(t, st.Message(), "ResolveStep")
		require.Equal(t, taskerv1.StepState_STEP_STATE_CANCELLED, getStep(ctx, t, b, a.GetStepId()).GetState(), "refusals change nothing")

		result, err := structpb.NewStruct(map[string]any{"by": "hand"})
		require.NoError(t, err)
		resolved, err := b.steps.ResolveStep(ctx, &taskerv1.ResolveStepRequest{Id: a.GetStepId(), Result: result})
		require.NoError(t, err)
		require.Equal(t, taskerv1.StepState_STEP_STATE_RESOLVED_MANUALLY, resolved.GetStep().GetState())
		got, err = b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		require.Equal(t, taskerv1.TaskState_TASK_STATE_IN_PROGRESS, got.GetTask().GetState(), "the task resumed")

		next := claimAs(ctx, t, b, "cx", "w1")
		require.Equal(t, "b", next.GetStepName())
		require.Equal(t, "hand", next.GetParentResults()[0].GetResult().GetFields()["by"].GetStringValue())
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: next.GetStepId(), LeaseToken: next.GetLeaseToken()})
		require.NoError(t, err)
		got, err = b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, got.GetTask().GetState())

		// A resolved step is not resolved again.
		_, err = b.steps.ResolveStep(ctx, &taskerv1.ResolveStepRequest{Id: a.GetStepId()})
		requireCode(t, err, codes.FailedPrecondition)
	})
}
