package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/steptransition"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func orderContext(t *testing.T, id string) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(map[string]any{"order_id": id, "items": []any{1, 2}})
	require.NoError(t, err)
	return s
}

func TestCreateTaskPersistsStepsAndEnqueuesRoots(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)

		var header metadata.MD
		callCtx := metadata.AppendToOutgoingContext(ctx, correlation.Header, "order-42")
		resp, err := b.tasks.CreateTask(callCtx, &taskerv1.CreateTaskRequest{
			Namespace: "shop", Name: "diamond", Context: orderContext(t, "42"),
			Initiator: "tests", Tags: map[string]string{"customer": "c1"}, Priority: 5,
		}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, []string{"order-42"}, header.Get(correlation.Header))
		task := resp.GetTask()
		require.False(t, resp.GetDuplicate())
		require.Equal(t, "order-42", task.GetCorrelationId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_PENDING, task.GetState())
		require.Equal(t, "1.0.0", task.GetTemplateVersion())
		require.Equal(t, taskerv1.ExecutionStatus_EXECUTION_STATUS_HAS_READY_STEPS, task.GetExecutionStatus())
		require.Equal(t, int32(4), task.GetStepCounts().GetTotal())
		require.Equal(t, int32(1), task.GetStepCounts().GetEnqueued())
		require.Equal(t, int32(3), task.GetStepCounts().GetPending())
		require.Zero(t, task.GetCompletionPercentage())

		steps := task.GetSteps()
		require.Len(t, steps, 4)
		byName := map[string]*taskerv1.Step{}
		for _, s := range steps {
			byName[s.GetName()] = s
			require.Equal(t, int32(5), s.GetPriority(), "steps inherit the task priority")
		}
		require.Equal(t, taskerv1.StepState_STEP_STATE_ENQUEUED, byName["a"].GetState())
		require.NotNil(t, byName["a"].GetAvailableAt())
		require.Equal(t, []string{"b", "c"}, byName["d"].GetDependsOn(), "parents in declaration order")
		require.Equal(t, int32(4), byName["b"].GetMaxAttempts(), "template policy copied")
		require.Equal(t, int32(1), byName["c"].GetMaxAttempts(), "step override copied")

		// The answer is built from the rows the creation wrote; nothing has
		// run since, so reading the task back gives the same message.
		got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		require.True(t, proto.Equal(got.GetTask(), task), "CreateTask answered\n%v\nGetTask reads\n%v", task, got.GetTask())

		// Audit trail: one transition per step from the empty state, plus
		// pending -> enqueued for the root; one task.created and one
		// step.enqueued event carrying the correlation id.
		n, err := db.Reader.StepTransition.Query().Count(ctx)
		require.NoError(t, err)
		require.Equal(t, 5, n)
		n, err = db.Reader.StepTransition.Query().Where(steptransition.FromState("pending"), steptransition.ToState("enqueued")).Count(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		evs, err := db.Reader.Event.Query().Where(event.TypeNEQ("registry.template_registered")).Order(event.ByID()).All(ctx)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		require.Equal(t, "task.created", evs[0].Type)
		require.Equal(t, "step.enqueued", evs[1].Type)
		for _, ev := range evs {
			require.Equal(t, "order-42", ev.CorrelationID)
		}
		if db.Dialect == "sqlite3" {
			require.Equal(t, int64(2), *evs[0].Sequence, "numbered right after the registration event")
			require.Equal(t, int64(3), *evs[1].Sequence)
		}

		got, err = b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		require.Equal(t, task.GetId(), got.GetTask().GetId())
		require.Equal(t, "42", got.GetTask().GetContext().GetFields()["order_id"].GetStringValue())
		require.Equal(t, map[string]string{"customer": "c1"}, got.GetTask().GetTags())
	})
}

func TestCreateTaskRefusesBadInput(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		big := make([]any, 0, 70000)
		for range 70000 {
			big = append(big, "0123456789abcdef")
		}
		bigCtx, err := structpb.NewStruct(map[string]any{"order_id": "1", "blob": big})
		require.NoError(t, err)

		for _, tc := range []struct {
			name  string
			req   *taskerv1.CreateTaskRequest
			code  codes.Code
			field string
		}{
			{"schema violation", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: &structpb.Struct{}}, codes.InvalidArgument, "context"},
			{"context too big", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: bigCtx}, codes.InvalidArgument, "context"},
			{"missing name", &taskerv1.CreateTaskRequest{Namespace: "shop", Context: orderContext(t, "1")}, codes.InvalidArgument, "name"},
			{"priority", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"), Priority: 5000}, codes.InvalidArgument, "priority"},
			{"tag key", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"), Tags: map[string]string{"Bad Key": "x"}}, codes.InvalidArgument, "tags"},
			{"parent id", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"), ParentTaskId: "nope"}, codes.InvalidArgument, "parent_task_id"},
			{"bad version", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Version: "one", Context: orderContext(t, "1")}, codes.InvalidArgument, ""},
			{"unknown template", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "nope", Context: orderContext(t, "1")}, codes.NotFound, ""},
			{"unknown version", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Version: "9.9.9", Context: orderContext(t, "1")}, codes.NotFound, ""},
			{"unknown parent", &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1"), ParentTaskId: "0191f0f0-0000-7000-8000-000000000000"}, codes.NotFound, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := b.tasks.CreateTask(ctx, tc.req)
				st := requireCode(t, err, tc.code)
				if tc.field != "" {
					require.Contains(t, badFields(st), tc.field)
				}
			})
		}
		n, err := db.Reader.Task.Query().Count(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is stored for refused requests")
		n, err = db.Reader.Event.Query().Where(event.TaskIDNotNil()).Count(ctx)
		require.NoError(t, err)
		require.Zero(t, n)

		_, err = b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: "0191f0f0-0000-7000-8000-000000000000"})
		requireCode(t, err, codes.NotFound)
		_, err = b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: "x"})
		require.Equal(t, []string{"id"}, badFields(requireCode(t, err, codes.InvalidArgument)))
	})
}

func TestListTasksFiltersAndPages(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		var ids []string
		for i := range 7 {
			resp, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{
				Namespace: "shop", Name: "diamond", Context: orderContext(t, fmt.Sprint(i)),
				Tags: map[string]string{"parity": fmt.Sprint(i % 2)},
			})
			require.NoError(t, err)
			ids = append(ids, resp.GetTask().GetId())
		}

		var seen []string
		token := ""
		for {
			resp, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "shop", PageSize: 3, PageToken: token})
			require.NoError(t, err)
			for _, task := range resp.GetTasks() {
				seen = append(seen, task.GetId())
				require.Equal(t, int32(4), task.GetStepCounts().GetTotal())
				require.Equal(t, taskerv1.ExecutionStatus_EXECUTION_STATUS_HAS_READY_STEPS, task.GetExecutionStatus())
				require.Empty(t, task.GetSteps(), "lists carry no steps")
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
			ids[i], ids[j] = ids[j], ids[i]
		}
		require.Equal(t, ids, seen, "newest first, every task once")

		even, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Tags: map[string]string{"parity": "0"}})
		require.NoError(t, err)
		require.Len(t, even.GetTasks(), 4)

		pending, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{States: []taskerv1.TaskState{taskerv1.TaskState_TASK_STATE_PENDING}})
		require.NoError(t, err)
		require.Len(t, pending.GetTasks(), 7)
		done, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{States: []taskerv1.TaskState{taskerv1.TaskState_TASK_STATE_COMPLETE}})
		require.NoError(t, err)
		require.Empty(t, done.GetTasks())

		future, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{CreateTimeFrom: timestamppb.New(time.Now().Add(time.Hour))})
		require.NoError(t, err)
		require.Empty(t, future.GetTasks())

		first, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{PageSize: 2})
		require.NoError(t, err)
		_, err = b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "other", PageSize: 2, PageToken: first.GetNextPageToken()})
		require.Equal(t, []string{"page_token"}, badFields(requireCode(t, err, codes.InvalidArgument)))
		_, err = b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{PageSize: 501})
		require.Equal(t, []string{"page_size"}, badFields(requireCode(t, err, codes.InvalidArgument)))
		_, err = b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{States: []taskerv1.TaskState{99}})
		require.Equal(t, []string{"states[0]"}, badFields(requireCode(t, err, codes.InvalidArgument)))
	})
}

func TestHealthReflectionAndAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, storagetest.Open(t, "sqlite"))
	ctx := testContext(t)

	h, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "tasker.v1.TaskService"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())

	stream, err := reflectionpb.NewServerReflectionClient(b.conn).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	require.Subset(t, names, []string{"tasker.v1.RegistryService", "tasker.v1.TaskService", "tasker.v1.StepService", "tasker.v1.EventService", "grpc.health.v1.Health"})
	require.NoError(t, stream.CloseSend())

	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusOK} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.adminAddr+path, nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		require.Equal(t, want, res.StatusCode, path)
	}
}
