package server_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestPublishEvent(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		ctx := testContext(t)
		registerChain(ctx, t, b, "shop")
		task, err := createChain(ctx, b, "shop", 1)
		require.NoError(t, err)
		other, err := createChain(ctx, b, "shop", 2)
		require.NoError(t, err)
		steps, err := b.steps.ListSteps(ctx, &taskerv1.ListStepsRequest{TaskId: task.GetId()})
		require.NoError(t, err)
		stepID := steps.GetSteps()[0].GetId()
		follower := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{
			Filter: &taskerv1.EventFilter{Types: []string{"billing.*"}}, HeartbeatInterval: heartbeat,
		})

		// No task: the call's correlation id; returned numbered.
		payload, err := structpb.NewStruct(map[string]any{"invoice": "i-1", "amount": 12.5})
		require.NoError(t, err)
		callCtx := metadata.AppendToOutgoingContext(ctx, "x-correlation-id", "pub-1")
		var header metadata.MD
		resp, err := b.events.PublishEvent(callCtx, &taskerv1.PublishEventRequest{Type: "billing.invoice_sent", Payload: payload}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, []string{"pub-1"}, header.Get("x-correlation-id"))
		ev := resp.GetEvent()
		require.Positive(t, ev.GetSequence(), "the response carries the sequence")
		require.Equal(t, "billing.invoice_sent", ev.GetType())
		require.Equal(t, "pub-1", ev.GetCorrelationId())
		require.Empty(t, ev.GetTaskId())
		require.Empty(t, ev.GetNamespace())
		require.True(t, proto.Equal(payload, ev.GetPayload()))

		// A task: its correlation id, namespace and template, whatever the
		// call's.
		resp, err = b.events.PublishEvent(callCtx, &taskerv1.PublishEventRequest{Type: "billing.paid", TaskId: task.GetId()})
		require.NoError(t, err)
		onTask := resp.GetEvent()
		require.Equal(t, task.GetCorrelationId(), onTask.GetCorrelationId())
		require.Equal(t, "shop", onTask.GetNamespace())
		require.Equal(t, "chain", onTask.GetTemplateName())
		require.Equal(t, "1.0.0", onTask.GetTemplateVersion())
		require.Equal(t, task.GetId(), onTask.GetTaskId())
		require.Empty(t, onTask.GetStepId())
		require.Empty(t, onTask.GetPayload().GetFields())

		// A step alone names its task.
		resp, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "billing.step_note", StepId: stepID})
		require.NoError(t, err)
		onStep := resp.GetEvent()
		require.Equal(t, task.GetId(), onStep.GetTaskId())
		require.Equal(t, stepID, onStep.GetStepId())
		require.Equal(t, task.GetCorrelationId(), onStep.GetCorrelationId())
		resp, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "billing.step_note", TaskId: task.GetId(), StepId: stepID})
		require.NoError(t, err)
		require.Equal(t, stepID, resp.GetEvent().GetStepId())

		// The log holds them as answered, and they stream.
		follower.waitScanned(t, resp.GetEvent().GetSequence())
		requireSameEvents(t, []*taskerv1.Event{ev, onTask, onStep, resp.GetEvent()}, follower.received())
		requireSameEvents(t, listAll(ctx, t, b.events, &taskerv1.EventFilter{Types: []string{"billing.*"}}, 0), follower.received())

		big, err := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", events.MaxCustomPayloadBytes)})
		require.NoError(t, err)
		justFits, err := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", events.MaxCustomPayloadBytes-len(`{"blob":""}`))})
		require.NoError(t, err)
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "load.blob", Payload: justFits})
		require.NoError(t, err, "64 KiB exactly")

		for _, tc := range []struct {
			req   *taskerv1.PublishEventRequest
			field string
		}{
			{&taskerv1.PublishEventRequest{}, "type"},
			{&taskerv1.PublishEventRequest{Type: "billing"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "Billing.sent"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "billing..sent"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "billing.sent-x"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "billing.*"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "a.b.c.d.e.f.g.h.i"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "billing." + strings.Repeat("x", 128)}, "type"},
			{&taskerv1.PublishEventRequest{Type: "task.custom"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "step.completed"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "workflow.x"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "registry.x"}, "type"},
			{&taskerv1.PublishEventRequest{Type: "load.blob", Payload: big}, "payload"},
			{&taskerv1.PublishEventRequest{Type: "billing.x", TaskId: "nope"}, "task_id"},
			{&taskerv1.PublishEventRequest{Type: "billing.x", StepId: "{" + stepID + "}"}, "step_id"},
			{&taskerv1.PublishEventRequest{Type: "billing.x", TaskId: other.GetId(), StepId: stepID}, "step_id"},
		} {
			_, err := b.events.PublishEvent(ctx, tc.req)
			st := requireCode(t, err, codes.InvalidArgument)
			require.Equal(t, []string{tc.field}, badFields(st), "%v", tc.req)
		}
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "billing.x", TaskId: "123e4567-e89b-12d3-a456-426614174000"})
		requireCode(t, err, codes.NotFound)
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "billing.x", StepId: "123e4567-e89b-12d3-a456-426614174000"})
		requireCode(t, err, codes.NotFound)
		n, err := db.Reader.Event.Query().Count(ctx)
		require.NoError(t, err)
		head := settledHead(ctx, t, db)
		require.Equal(t, int64(n), head, "refused events store nothing")
	})
}

func TestListEventTypes(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	b := serve(t, db, servertest.Options{})
	resp, err := b.events.ListEventTypes(testContext(t), &taskerv1.ListEventTypesRequest{})
	require.NoError(t, err)
	cat := events.Catalogue()
	require.Len(t, resp.GetEventTypes(), len(cat))
	for i, et := range resp.GetEventTypes() {
		require.Equal(t, cat[i].Name, et.GetName(), "ordered by name")
		require.Equal(t, cat[i].Description, et.GetDescription())
		require.Len(t, et.GetPayloadFields(), len(cat[i].Fields))
		for j, f := range et.GetPayloadFields() {
			require.Equal(t, cat[i].Fields[j].Name, f.GetName())
			require.Equal(t, cat[i].Fields[j].Type, f.GetType())
			require.NotEmpty(t, f.GetDescription())
		}
	}
}

// TestCorrelationThroughWorkerCalls: a task created with x-correlation-id
// "abc" has "abc" on every event its steps cause, whoever calls; the
// server's log line of a worker call carries the id the worker sent in
// x-correlation-id (the Go SDK sends the task's), and a raw client that
// sends none is logged under a fresh id of its call, while the events
// still carry the task's.
func TestCorrelationThroughWorkerCalls(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		var logs lockedBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		b := serve(t, db, servertest.Options{Logger: logger})
		ctx := testContext(t)
		registerChain(ctx, t, b, "shop")
		abc := metadata.AppendToOutgoingContext(ctx, "x-correlation-id", "abc")
		var header metadata.MD
		c, err := structpb.NewStruct(map[string]any{"n": 1})
		require.NoError(t, err)
		created, err := b.tasks.CreateTask(abc, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "chain", Context: c}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, "abc", created.GetTask().GetCorrelationId())
		require.Equal(t, []string{"abc"}, header.Get("x-correlation-id"))

		claim := func(callCtx context.Context) *taskerv1.ClaimedStep {
			resp, err := b.steps.ClaimSteps(callCtx, &taskerv1.ClaimStepsRequest{
				WorkerId: "w", Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}}, MaxSteps: 1,
				Wait: durationpb.New(5 * time.Second),
			})
			require.NoError(t, err)
			require.Len(t, resp.GetSteps(), 1)
			require.Equal(t, "abc", resp.GetSteps()[0].GetCorrelationId(), "a claim hands the task's id to the worker")
			return resp.GetSteps()[0]
		}
		// Step a: a raw client sending no id.
		a := claim(ctx)
		_, err = b.steps.ExtendLease(ctx, &taskerv1.ExtendLeaseRequest{Leases: []*taskerv1.StepLease{{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()}}})
		require.NoError(t, err)
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: a.GetStepId(), LeaseToken: a.GetLeaseToken()})
		require.NoError(t, err)
		// Step b: a worker sending the task's id, as the SDK does.
		bStep := claim(abc)
		_, err = b.steps.FailStep(abc, &taskerv1.FailStepRequest{StepId: bStep.GetStepId(), LeaseToken: bStep.GetLeaseToken(), Error: &taskerv1.StepError{Message: "again"}})
		require.NoError(t, err)
		bStep = claim(abc)
		_, err = b.steps.ReleaseStep(abc, &taskerv1.ReleaseStepRequest{StepId: bStep.GetStepId(), LeaseToken: bStep.GetLeaseToken()})
		require.NoError(t, err)
		bStep = claim(abc)
		_, err = b.steps.CompleteStep(abc, &taskerv1.CompleteStepRequest{StepId: bStep.GetStepId(), LeaseToken: bStep.GetLeaseToken()})
		require.NoError(t, err)

		settledHead(ctx, t, db)
		evs := listAll(ctx, t, b.events, &taskerv1.EventFilter{TaskId: created.GetTask().GetId()}, 0)
		require.Equal(t, "task.completed", evs[len(evs)-1].GetType())
		for _, ev := range evs {
			require.Equal(t, "abc", ev.GetCorrelationId(), "%s", ev.GetType())
		}
		byCorrelation := listAll(ctx, t, b.events, &taskerv1.EventFilter{CorrelationId: "abc"}, 0)
		requireSameEvents(t, evs, byCorrelation)

		// The log lines of the worker calls.
		calls := map[string][]string{} // method → correlation ids logged
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
			method, _ := rec["grpc.method"].(string)
			id, _ := rec["correlation_id"].(string)
			if method != "" && rec["grpc.service"] == "tasker.v1.StepService" {
				calls[method] = append(calls[method], id)
			}
		}
		require.Equal(t, []string{"abc"}, calls["FailStep"])
		require.Equal(t, []string{"abc"}, calls["ReleaseStep"])
		require.Len(t, calls["CompleteStep"], 2)
		require.NotEqual(t, "abc", calls["CompleteStep"][0], "a raw client's call is logged under its own id")
		require.NotEmpty(t, calls["CompleteStep"][0])
		require.Equal(t, "abc", calls["CompleteStep"][1])
		require.Len(t, calls["ExtendLease"], 1)
	})
}

// TestEventRetentionServed: the server trims the log by its Retention in
// the background; readers inside the window resume, readers before it get
// OutOfRange LOG_TRUNCATED from Subscribe and ListEvents.
func TestEventRetentionServed(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{Config: server.Config{
			Retention: events.Retention{MaxCount: 5, Interval: 10 * time.Millisecond},
		}})
		ctx := testContext(t)
		for range 12 {
			_, err := b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "audit.note"})
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool {
			resp, err := b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{})
			return err == nil && len(resp.GetEvents()) == 5 && resp.GetEvents()[0].GetSequence() == 8
		}, 10*time.Second, 5*time.Millisecond)

		f := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: 7, HeartbeatInterval: heartbeat})
		f.waitScanned(t, 12)
		require.Equal(t, []int64{8, 9, 10, 11, 12}, seqs(f.received()))
		stream, err := b.events.Subscribe(ctx, &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: 6})
		require.NoError(t, err)
		_, err = stream.Recv()
		st := requireCode(t, err, codes.OutOfRange)
		require.Equal(t, map[string]string{"oldest_sequence": "8"}, errorInfo(st).GetMetadata())
		_, err = b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{AfterSequence: 6})
		requireCode(t, err, codes.OutOfRange)
	})
}

// TestInProcessSubscribers: subscribers registered in Config.Subscribers
// run while the server serves and see the events of its calls.
func TestInProcessSubscribers(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		subs := events.NewRegistry(slog.New(slog.DiscardHandler))
		got := make(chan string, 16)
		subs.MustSubscribe("notes", events.Filter{Types: []string{"audit.*"}}, func(_ context.Context, ev *events.Stored) error {
			got <- ev.Type
			return nil
		})
		b := serve(t, db, servertest.Options{Config: server.Config{Subscribers: subs}})
		ctx := testContext(t)
		// The subscriber starts at the head when the server starts serving;
		// publish until the first note arrives, then one more.
		require.Eventually(t, func() bool {
			_, err := b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "audit.ping"})
			return err == nil && len(got) > 0
		}, 10*time.Second, 20*time.Millisecond)
		_, err := b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "billing.ignored"})
		require.NoError(t, err)
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "audit.done"})
		require.NoError(t, err)
		for {
			select {
			case typ := <-got:
				if typ == "audit.done" {
					return
				}
				require.Equal(t, "audit.ping", typ)
			case <-ctx.Done():
				t.Fatal("the in-process subscriber never saw audit.done")
			}
		}
	})
}
