package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// TestBatchCreateTasks: a batch with new tasks, refused entries and
// duplicates answers each as CreateTask would, in request order, in one
// call; the created tasks carry the call's correlation id and run to
// completion through the Go SDK's workers.
func TestBatchCreateTasks(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		keyed := diamond("shop", "1.0.0")
		keyed.Name = "keyed"
		keyed.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY
		for _, tpl := range []*taskerv1.TaskTemplate{diamond("shop", "1.0.0"), keyed} {
			_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
			require.NoError(t, err)
		}
		stored, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "keyed", Context: orderContext(t, "0"), IdempotencyKey: "order-0"})
		require.NoError(t, err)

		var header metadata.MD
		callCtx := metadata.AppendToOutgoingContext(ctx, correlation.Header, "batch-7")
		resp, err := b.tasks.BatchCreateTasks(callCtx, &taskerv1.BatchCreateTasksRequest{Tasks: []*taskerv1.CreateTaskRequest{
			{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"), Priority: 3},
			{Namespace: "shop", Name: "diamond", Context: result(t, map[string]any{"order_id": 5})},
			{Namespace: "shop", Name: "missing"},
			{Namespace: "shop", Name: "keyed", Context: orderContext(t, "0"), IdempotencyKey: "order-0"},
			{Namespace: "shop", Name: "keyed", Context: orderContext(t, "2"), IdempotencyKey: "order-2"},
			{Namespace: "shop", Name: "keyed", Context: orderContext(t, "2"), IdempotencyKey: "order-2"},
			{Namespace: "shop", Name: "keyed", Context: orderContext(t, "3"), IdempotencyKey: "order-2"},
			{Namespace: "shop", Name: "diamond", Context: orderContext(t, "4"), Tags: map[string]string{"Bad Key": "v"}},
			{Namespace: "shop", Name: "diamond", Context: orderContext(t, "5"), ParentTaskId: uuid.NewString()},
		}}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, []string{"batch-7"}, header.Get(correlation.Header))
		out := resp.GetOutcomes()
		require.Len(t, out, 9)
		for i, want := range []codes.Code{
			codes.OK, codes.InvalidArgument, codes.NotFound, codes.OK, codes.OK, codes.OK, codes.AlreadyExists,
			codes.InvalidArgument, codes.NotFound,
		} {
			requireEntry(t, out[i].GetResult(), want, "", fmt.Sprint(i))
			if want != codes.OK {
				require.Nil(t, out[i].GetTask(), "entry %d", i)
				continue
			}
			task := out[i].GetTask()
			require.Equal(t, int32(4), task.GetStepCounts().GetTotal(), "entry %d", i)
			require.Empty(t, task.GetSteps(), "entry %d: no steps", i)
			require.Nil(t, task.GetContext(), "entry %d: no context", i)
		}
		require.Contains(t, out[1].GetResult().GetMessage(), "context.order_id")
		require.Contains(t, out[7].GetResult().GetMessage(), "tags")
		require.False(t, out[0].GetDuplicate())
		require.Equal(t, int32(3), out[0].GetTask().GetPriority())
		require.Equal(t, taskerv1.ExecutionStatus_EXECUTION_STATUS_HAS_READY_STEPS, out[0].GetTask().GetExecutionStatus())
		require.True(t, out[3].GetDuplicate())
		require.Equal(t, stored.GetTask().GetId(), out[3].GetTask().GetId())
		require.Equal(t, stored.GetTask().GetCorrelationId(), out[3].GetTask().GetCorrelationId(), "the existing task as it is")
		require.False(t, out[4].GetDuplicate())
		require.True(t, out[5].GetDuplicate())
		require.Equal(t, out[4].GetTask().GetId(), out[5].GetTask().GetId())

		created := []string{out[0].GetTask().GetId(), out[4].GetTask().GetId()}
		for _, id := range created {
			got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
			require.NoError(t, err)
			require.Equal(t, "batch-7", got.GetTask().GetCorrelationId())
			require.Len(t, got.GetTask().GetSteps(), 4)
		}
		listed, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "shop"})
		require.NoError(t, err)
		require.Len(t, listed.GetTasks(), 3, "the stored task and the two created; refused entries wrote nothing")

		// The created tasks run to the end through workers.
		conn := b.conn
		w := worker.New(conn, "batch", worker.Options{ClaimWait: time.Second,
			Logger: slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		ok := func(context.Context, *worker.Step) (map[string]any, error) { return map[string]any{"ok": true}, nil }
		w.MustRegister("shop", "work", ok)
		w.MustRegister("shop", "other", ok)
		runCtx, stop := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- w.Run(runCtx) }()
		for _, id := range append(created, stored.GetTask().GetId()) {
			require.Eventually(t, func() bool {
				got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
				require.NoError(t, err)
				return got.GetTask().GetState() == taskerv1.TaskState_TASK_STATE_COMPLETE
			}, 20*time.Second, 20*time.Millisecond, "task %s completes", id)
		}
		stop()
		require.NoError(t, <-ran)
	})
}

// TestBatchCreateTasksBounds: an empty batch, one of more than 100 entries
// and one with a value out of any request's bounds are refused whole.
func TestBatchCreateTasksBounds(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		_, err := b.tasks.BatchCreateTasks(ctx, &taskerv1.BatchCreateTasksRequest{})
		require.Equal(t, []string{"tasks"}, badFields(requireCode(t, err, codes.InvalidArgument)))
		many := make([]*taskerv1.CreateTaskRequest, 101)
		for i := range many {
			many[i] = &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1")}
		}
		_, err = b.tasks.BatchCreateTasks(ctx, &taskerv1.BatchCreateTasksRequest{Tasks: many})
		require.Equal(t, []string{"tasks"}, badFields(requireCode(t, err, codes.InvalidArgument)))
		many[1].RunAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -1}
		_, err = b.tasks.BatchCreateTasks(ctx, &taskerv1.BatchCreateTasksRequest{Tasks: many[:2]})
		require.Equal(t, []string{"tasks[1].run_at"}, badFields(requireCode(t, err, codes.InvalidArgument)))
	})
}

// TestBatchCreateTasksNamespaces: a token is checked against the
// namespace of every entry and of every parent task named; one entry out
// of its reach refuses the whole call, which creates nothing.
func TestBatchCreateTasksNamespaces(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		f, admin := startAuthServer(t, db, time.Minute)
		f.seed(t, admin)
		ctx := testContext(t)
		billing := diamond("billing", "1.0.0")
		_, err := taskerv1.NewRegistryServiceClient(admin).RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: billing})
		require.NoError(t, err)
		billingTask, err := taskerv1.NewTaskServiceClient(admin).CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "billing", Name: "diamond", Context: orderContext(t, "b")})
		require.NoError(t, err)
		shopOnly := taskerv1.NewTaskServiceClient(f.conn(t, f.token(t, "shop-writer", []auth.Scope{auth.TasksWrite}, "shop")))
		count := func() int {
			listed, err := taskerv1.NewTaskServiceClient(admin).ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "shop"})
			require.NoError(t, err)
			return len(listed.GetTasks())
		}
		before := count()
		shop := &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "2")}

		for name, other := range map[string]*taskerv1.CreateTaskRequest{
			"namespace":   {Namespace: "billing", Name: "diamond", Context: orderContext(t, "3")},
			"parent task": {Namespace: "shop", Name: "diamond", Context: orderContext(t, "3"), ParentTaskId: billingTask.GetTask().GetId()},
		} {
			_, err := shopOnly.BatchCreateTasks(ctx, &taskerv1.BatchCreateTasksRequest{Tasks: []*taskerv1.CreateTaskRequest{shop, other}})
			st := requireCode(t, err, codes.PermissionDenied)
			require.Equal(t, fault.ReasonNamespaceDenied, errorInfo(st).GetReason(), name)
			require.Equal(t, "billing", errorInfo(st).GetMetadata()["namespace"], name)
		}
		require.Equal(t, before, count(), "a refused call creates nothing")

		resp, err := shopOnly.BatchCreateTasks(ctx, &taskerv1.BatchCreateTasksRequest{Tasks: []*taskerv1.CreateTaskRequest{shop, shop}})
		require.NoError(t, err)
		for _, o := range resp.GetOutcomes() {
			requireEntry(t, o.GetResult(), codes.OK, "")
		}
		require.Equal(t, before+2, count())
	})
}
