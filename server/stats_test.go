package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestGetTaskStats runs one task of a two-step template through the API
// and checks the report counts each attempt and names each step, then
// that a bad window is refused naming the field.
func TestGetTaskStats(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		srv := servertest.Start(t, db, servertest.Options{})
		ctx := t.Context()
		_, err := taskerv1.NewRegistryServiceClient(srv.Conn).RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{
			Template: &taskerv1.TaskTemplate{Namespace: "shop", Name: "order", Version: "1.0.0", Steps: []*taskerv1.StepTemplate{
				{Name: "pay", Handler: "pay"}, {Name: "ship", Handler: "ship", DependsOn: []string{"pay"}},
			}},
		})
		require.NoError(t, err)
		tasks := taskerv1.NewTaskServiceClient(srv.Conn)
		start := time.Now().Add(-time.Second)
		created, err := tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "order"})
		require.NoError(t, err)
		steps := taskerv1.NewStepServiceClient(srv.Conn)
		var ids []string
		for _, h := range []string{"pay", "ship"} {
			resp, err := steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
				WorkerId: "w-" + h, MaxSteps: 1,
				Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: h}},
			})
			require.NoError(t, err)
			require.Len(t, resp.GetSteps(), 1)
			s := resp.GetSteps()[0]
			ids = append(ids, s.GetStepId())
			_, err = steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: s.GetStepId(), LeaseToken: s.GetLeaseToken()})
			require.NoError(t, err)
		}
		end := time.Now().Add(time.Second)
		st, err := tasks.GetTaskStats(ctx, &taskerv1.GetTaskStatsRequest{
			Namespace: "shop", StartTime: timestamppb.New(start), EndTime: timestamppb.New(end),
		})
		require.NoError(t, err)
		require.EqualValues(t, 1, st.GetTasksFinished())
		require.EqualValues(t, 2, st.GetStepAttempts())
		require.Len(t, st.GetHandlers(), 2)
		for i, h := range st.GetHandlers() {
			require.Equal(t, []string{"pay", "ship"}[i], h.GetHandler())
			require.EqualValues(t, 1, h.GetCompleted())
			require.Zero(t, h.GetErrorRate())
			require.EqualValues(t, 1, h.GetDuration().GetSampleSize())
		}
		require.Len(t, st.GetSlowestTasks(), 1)
		require.Equal(t, created.GetTask().GetId(), st.GetSlowestTasks()[0].GetTaskId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, st.GetSlowestTasks()[0].GetState())
		require.Len(t, st.GetSlowestSteps(), 2)
		require.ElementsMatch(t, ids, []string{st.GetSlowestSteps()[0].GetStepId(), st.GetSlowestSteps()[1].GetStepId()})
		require.EqualValues(t, 1, st.GetTaskCounts().GetComplete())
		require.EqualValues(t, 2, st.GetStepCounts().GetComplete())
		require.Empty(t, st.GetHandlersWithoutWorkers())

		_, err = tasks.GetTaskStats(ctx, &taskerv1.GetTaskStatsRequest{
			Namespace: "shop", StartTime: timestamppb.New(end), EndTime: timestamppb.New(start),
		})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		var br *errdetails.BadRequest
		for _, d := range status.Convert(err).Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		require.NotNil(t, br)
		require.Equal(t, "end_time", br.GetFieldViolations()[0].GetField())
	})
}
