package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestExecutionStatusOfEndedTasks: a task's execution status agrees with
// its step counts once it has ended. Only a complete task is
// EXECUTION_STATUS_COMPLETE; one resolved manually or cancelled with steps
// never done stays EXECUTION_STATUS_BLOCKED_BY_FAILURES, in GetTask,
// ListTasks and the operator call's own answer.
func TestExecutionStatusOfEndedTasks(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "st")
		type want struct {
			state                          taskerv1.TaskState
			status                         taskerv1.ExecutionStatus
			complete, errors, pending, cxl int32
		}
		requireTask := func(got *taskerv1.Task, w want) {
			t.Helper()
			require.Equal(t, w.state, got.GetState())
			require.Equal(t, w.status, got.GetExecutionStatus())
			c := got.GetStepCounts()
			require.Equal(t, []int32{w.complete, w.errors, w.pending, w.cxl},
				[]int32{c.GetComplete(), c.GetError(), c.GetPending(), c.GetCancelled()}, "complete, error, pending, cancelled")
		}
		requireEverywhere := func(id string, w want) {
			t.Helper()
			got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
			require.NoError(t, err)
			requireTask(got.GetTask(), w)
			list, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "st"})
			require.NoError(t, err)
			for _, lt := range list.GetTasks() {
				if lt.GetId() == id {
					requireTask(lt, w)
				}
			}
		}

		// Failed, then resolved by hand: b never ran and a stays in error.
		failed, err := createChain(ctx, b, "st", 1)
		require.NoError(t, err)
		a := claimAs(ctx, t, b, "st", "w1")
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken(), NonRetryable: true, Error: &taskerv1.StepError{Message: "boom"},
		})
		require.NoError(t, err)
		blocked := want{taskerv1.TaskState_TASK_STATE_ERROR, taskerv1.ExecutionStatus_EXECUTION_STATUS_BLOCKED_BY_FAILURES, 0, 1, 1, 0}
		requireEverywhere(failed.GetId(), blocked)
		resolved, err := b.tasks.ResolveTask(ctx, &taskerv1.ResolveTaskRequest{Id: failed.GetId()})
		require.NoError(t, err)
		blocked.state = taskerv1.TaskState_TASK_STATE_RESOLVED_MANUALLY
		requireTask(resolved.GetTask(), blocked)
		requireEverywhere(failed.GetId(), blocked)

		// Cancelled half-way: a complete, b cancelled.
		cancelled, err := createChain(ctx, b, "st", 2)
		require.NoError(t, err)
		a = claimAs(ctx, t, b, "st", "w1")
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()})
		require.NoError(t, err)
		cancelResp, err := b.tasks.CancelTask(ctx, &taskerv1.CancelTaskRequest{Id: cancelled.GetId()})
		require.NoError(t, err)
		w := want{taskerv1.TaskState_TASK_STATE_CANCELLED, taskerv1.ExecutionStatus_EXECUTION_STATUS_BLOCKED_BY_FAILURES, 1, 0, 0, 1}
		requireTask(cancelResp.GetTask(), w)
		requireEverywhere(cancelled.GetId(), w)

		// Complete: every step done.
		done, err := createChain(ctx, b, "st", 3)
		require.NoError(t, err)
		require.NoError(t, workSteps(ctx, b, "st", "w1", 2))
		requireEverywhere(done.GetId(), want{taskerv1.TaskState_TASK_STATE_COMPLETE, taskerv1.ExecutionStatus_EXECUTION_STATUS_COMPLETE, 2, 0, 0, 0})
	})
}

// TestExecutionStatusScheduled: a task whose run_at is still ahead is
// EXECUTION_STATUS_SCHEDULED, not waiting for a retry; a step waiting out
// its backoff is EXECUTION_STATUS_WAITING_FOR_RETRY.
func TestExecutionStatusScheduled(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		tpl := chain("sched")
		tpl.RetryPolicy.InitialBackoff, tpl.RetryPolicy.MaxBackoff = durationpb.New(time.Hour), durationpb.New(time.Hour)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
		require.NoError(t, err)

		requireStatus := func(id string, want taskerv1.ExecutionStatus, enqueued, waiting int32) {
			t.Helper()
			got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
			require.NoError(t, err)
			require.Equal(t, want, got.GetTask().GetExecutionStatus())
			require.Equal(t, enqueued, got.GetTask().GetStepCounts().GetEnqueued())
			require.Equal(t, waiting, got.GetTask().GetStepCounts().GetWaitingForRetry())
			list, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "sched"})
			require.NoError(t, err)
			found := false
			for _, lt := range list.GetTasks() {
				if lt.GetId() == id {
					found = true
					require.Equal(t, want, lt.GetExecutionStatus())
				}
			}
			require.True(t, found)
		}

		later, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{
			Namespace: "sched", Name: "chain", RunAt: timestamppb.New(time.Now().Add(time.Hour)),
		})
		require.NoError(t, err)
		require.Equal(t, taskerv1.ExecutionStatus_EXECUTION_STATUS_SCHEDULED, later.GetTask().GetExecutionStatus())
		requireStatus(later.GetTask().GetId(), taskerv1.ExecutionStatus_EXECUTION_STATUS_SCHEDULED, 1, 0)

		now, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "sched", Name: "chain"})
		require.NoError(t, err)
		requireStatus(now.GetTask().GetId(), taskerv1.ExecutionStatus_EXECUTION_STATUS_HAS_READY_STEPS, 1, 0)
		a := claimAs(ctx, t, b, "sched", "w1")
		require.Equal(t, now.GetTask().GetId(), a.GetTaskId(), "the scheduled task is not due")
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken(), Error: &taskerv1.StepError{Message: "flaky"},
		})
		require.NoError(t, err)
		requireStatus(now.GetTask().GetId(), taskerv1.ExecutionStatus_EXECUTION_STATUS_WAITING_FOR_RETRY, 0, 1)
	})
}
