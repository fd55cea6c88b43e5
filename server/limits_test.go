package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestOutOfRangeValuesAreInvalidArgument: values protobuf decodes but the
// contract does not allow (a timestamp past year 9999, an enum number
// outside its declaration, a Duration with nanos ≥ 1e9, NaN or ±Inf in a
// Struct) are InvalidArgument naming the field, on unary calls and streams,
// and change nothing.
func TestOutOfRangeValuesAreInvalidArgument(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		registerChain(ctx, t, b, "bad")
		task, err := createChain(ctx, b, "bad", 1)
		require.NoError(t, err)
		step := claimAs(ctx, t, b, "bad", "w1")

		requireBad := func(err error, field string) {
			t.Helper()
			st := requireCode(t, err, codes.InvalidArgument)
			require.Equal(t, []string{field}, badFields(st))
		}

		_, err = b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{CreateTimeTo: &timestamppb.Timestamp{Seconds: 1 << 50}})
		requireBad(err, "create_time_to")
		_, err = b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{States: []taskerv1.TaskState{taskerv1.TaskState_TASK_STATE_PENDING, 77}})
		requireBad(err, "states[1]")
		_, err = b.steps.ListSteps(ctx, &taskerv1.ListStepsRequest{TaskId: task.GetId(), View: 99})
		requireBad(err, "view")

		nan := &structpb.Struct{Fields: map[string]*structpb.Value{
			"order": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"total": structpb.NewNumberValue(math.NaN())}}),
		}}
		_, err = b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "bad", Name: "chain", Context: nan})
		requireBad(err, "context.order.total")
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "custom.bad", Payload: &structpb.Struct{
			Fields: map[string]*structpb.Value{"x": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(math.Inf(1))}})},
		}})
		requireBad(err, "payload.x[0]")
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{
			StepId: step.GetStepId(), LeaseToken: step.GetLeaseToken(),
			Result: &structpb.Struct{Fields: map[string]*structpb.Value{"r": structpb.NewNumberValue(math.Inf(-1))}},
		})
		requireBad(err, "result.r")
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: step.GetStepId(), LeaseToken: step.GetLeaseToken(),
			Error: &taskerv1.StepError{Message: "x"}, RetryAfter: &durationpb.Duration{Nanos: 1e9},
		})
		requireBad(err, "retry_after")

		stream, err := b.events.Subscribe(ctx, &taskerv1.SubscribeRequest{Start: 9})
		require.NoError(t, err)
		_, err = stream.Recv()
		requireBad(err, "start")

		// Nothing changed: one task, its step still held by w1.
		list, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{CreateTimeTo: timestamppb.New(time.Now().Add(time.Hour))})
		require.NoError(t, err)
		require.Len(t, list.GetTasks(), 1)
		require.Equal(t, taskerv1.StepState_STEP_STATE_IN_PROGRESS, getStep(ctx, t, b, step.GetStepId()).GetState())
	})
}

// TestClaimStepsNamesFollowTemplateRules: ClaimSteps refuses namespaces and
// handlers a template could not declare, more than 100 of them, and worker
// ids longer than 128 bytes or not printable, and records no such worker.
func TestClaimStepsNamesFollowTemplateRules(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		claim := func(worker string, hs ...*taskerv1.HandlerRef) error {
			_, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{WorkerId: worker, Handlers: hs, MaxSteps: 1})
			return err
		}
		requireBad := func(err error, fields ...string) {
			t.Helper()
			st := requireCode(t, err, codes.InvalidArgument)
			require.Equal(t, fields, badFields(st))
			require.NotContains(t, st.Message(), "Not Valid!", "the message quotes no value")
		}
		ok := &taskerv1.HandlerRef{Namespace: "shop", Handler: "work"}

		requireBad(claim("w1", ok, &taskerv1.HandlerRef{Namespace: "shop", Handler: "Not Valid!"}), "handlers[1].handler")
		requireBad(claim("w1", &taskerv1.HandlerRef{Namespace: strings.Repeat("n", 64), Handler: "work"}), "handlers[0].namespace")
		requireBad(claim("w1", &taskerv1.HandlerRef{Namespace: "Shop", Handler: strings.Repeat("h", 60_000)}),
			"handlers[0].namespace", "handlers[0].handler")
		many := make([]*taskerv1.HandlerRef, 101)
		for i := range many {
			many[i] = &taskerv1.HandlerRef{Namespace: "shop", Handler: fmt.Sprintf("h%d", i)}
		}
		requireBad(claim("w1", many...), "handlers")
		requireBad(claim(strings.Repeat("w", 129), ok), "worker_id")
		requireBad(claim("w\n1", ok), "worker_id")

		require.NoError(t, claim(strings.Repeat("w", 128), many[:100]...))
		resp, err := b.registry.ListHandlers(ctx, &taskerv1.ListHandlersRequest{})
		require.NoError(t, err)
		for _, h := range resp.GetHandlers() {
			require.Equal(t, "shop", h.GetHandler().GetNamespace())
			for _, w := range h.GetWorkers() {
				require.Equal(t, strings.Repeat("w", 128), w.GetWorkerId())
			}
		}
	})
}

// TestTemplateSizeLimits: a template with more than 500 steps or 5,000
// dependencies in all is refused at registration, naming template.steps, so
// no CreateTask can hold the database's writer for seconds.
func TestTemplateSizeLimits(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		register := func(steps []*taskerv1.StepTemplate) error {
			_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: &taskerv1.TaskTemplate{
				Namespace: "big", Name: fmt.Sprintf("t%d", len(steps)), Version: "1.0.0", Steps: steps,
			}})
			return err
		}
		flat := make([]*taskerv1.StepTemplate, 501)
		for i := range flat {
			flat[i] = &taskerv1.StepTemplate{Name: fmt.Sprintf("s%d", i), Handler: "work"}
		}
		st := requireCode(t, register(flat), codes.InvalidArgument)
		require.Equal(t, []string{"template.steps"}, badFields(st))
		require.NoError(t, register(flat[:500]))

		// Each step depends on every earlier one: 102 steps make 5,151.
		dense := make([]*taskerv1.StepTemplate, 102)
		for i := range dense {
			dense[i] = &taskerv1.StepTemplate{Name: fmt.Sprintf("s%d", i), Handler: "work"}
			for j := range i {
				dense[i].DependsOn = append(dense[i].DependsOn, fmt.Sprintf("s%d", j))
			}
		}
		st = requireCode(t, register(dense), codes.InvalidArgument)
		require.Equal(t, []string{"template.steps"}, badFields(st))
		require.Contains(t, st.Message(), "at most 5000")
		require.NoError(t, register(dense[:100]))
	})
}

// TestPagesAreBoundedByBytes: tasks, step results and events of 60 KB each
// are legal, and a page of 100 of them would pass gRPC's default 4 MiB
// receive limit; each listing cuts its pages at 2 MiB instead (40 items make
// two pages), and paging still returns every item.
func TestPagesAreBoundedByBytes(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		// Longer than testContext: 120 writes of 60 KB under -race.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		registerChain(ctx, t, b, "big")
		blob := func(i int) *structpb.Struct {
			return &structpb.Struct{Fields: map[string]*structpb.Value{
				"i": structpb.NewNumberValue(float64(i)), "blob": structpb.NewStringValue(strings.Repeat("x", 60_000)),
			}}
		}
		const n = 40
		for i := range n {
			_, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "big", Name: "chain", Context: blob(i)})
			require.NoError(t, err)
			_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "custom.big", Payload: blob(i)})
			require.NoError(t, err)
		}
		for done := 0; done < n; {
			resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
				WorkerId: "w", Handlers: []*taskerv1.HandlerRef{{Namespace: "big", Handler: "work"}}, MaxSteps: 10,
			})
			require.NoError(t, err)
			for _, s := range resp.GetSteps() {
				_, err := b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: s.GetStepId(), LeaseToken: s.GetLeaseToken(), Result: blob(done)})
				require.NoError(t, err)
				done++
			}
		}

		// pages lists with fetch until the token runs out, and returns the
		// number of items seen and of pages.
		pages := func(fetch func(token string) (int, string, error)) (items, count int) {
			t.Helper()
			token := ""
			for {
				got, next, err := fetch(token)
				require.NoError(t, err)
				require.Positive(t, got)
				items += got
				count++
				if next == "" {
					return items, count
				}
				token = next
			}
		}
		items, count := pages(func(token string) (int, string, error) {
			resp, err := b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{
				Filter: &taskerv1.EventFilter{Types: []string{"custom.big"}}, PageSize: n, PageToken: token,
			})
			return len(resp.GetEvents()), resp.GetNextPageToken(), err
		})
		require.Equal(t, n, items)
		require.GreaterOrEqual(t, count, 2, "60 KB events: at most 34 to a 2 MiB page")
		items, count = pages(func(token string) (int, string, error) {
			resp, err := b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "big", PageSize: n, PageToken: token})
			return len(resp.GetTasks()), resp.GetNextPageToken(), err
		})
		require.Equal(t, n, items)
		require.GreaterOrEqual(t, count, 2)
		items, count = pages(func(token string) (int, string, error) {
			resp, err := b.steps.ListSteps(ctx, &taskerv1.ListStepsRequest{
				Namespace: "big", States: []taskerv1.StepState{taskerv1.StepState_STEP_STATE_COMPLETE},
				View: taskerv1.StepView_STEP_VIEW_FULL, PageSize: n, PageToken: token,
			})
			return len(resp.GetSteps()), resp.GetNextPageToken(), err
		})
		require.Equal(t, n, items)
		require.GreaterOrEqual(t, count, 2)
	})
}

// TestErrorsDoNotEchoValues: a context failing its schema is refused naming
// the path and the schema rule, not the value (a PIN sent in a context
// reached the log), and a long value quoted in an error is cut (to 40
// bytes, 256 for a resource name), in the response and in the log at every
// level.
func TestErrorsDoNotEchoValues(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		var logs lockedBuffer
		b := serve(t, db, servertest.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		ctx := testContext(t)
		tpl := chain("pins")
		schema, err := structpb.NewStruct(map[string]any{
			"type": "object",
			"properties": map[string]any{
				"card": map[string]any{"type": "object", "properties": map[string]any{
					"pin": map[string]any{"type": "string", "pattern": "^[0-9]{6}$"},
				}},
			},
		})
		require.NoError(t, err)
		tpl.ContextSchema = schema
		_, err = b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
		require.NoError(t, err)

		const pin = "4711"
		c, err := structpb.NewStruct(map[string]any{"card": map[string]any{"pin": pin}})
		require.NoError(t, err)
		_, err = b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "pins", Name: "chain", Context: c})
		st := requireCode(t, err, codes.InvalidArgument)
		require.Equal(t, []string{"context.card.pin"}, badFields(st))
		require.Contains(t, st.Message(), "/properties/card/properties/pin/pattern")
		require.NotContains(t, st.Message(), pin)

		long := "secret-" + strings.Repeat("s", 10_000)
		_, err = b.registry.GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{Namespace: "pins", Name: long})
		st = requireCode(t, err, codes.NotFound)
		require.Less(t, len(st.Message()), 400, "a name no template can have is cut: %s", st.Message())
		_, err = b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "pins", Name: "chain", IdempotencyKey: long})
		if err != nil {
			st = requireCode(t, err, codes.InvalidArgument)
			require.Less(t, len(st.Message()), 200, st.Message())
		}

		require.NoError(t, b.stop())
		require.NotContains(t, logs.String(), pin)
		require.NotContains(t, logs.String(), strings.Repeat("s", 300))
	})
}
