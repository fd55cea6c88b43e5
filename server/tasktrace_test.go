package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// TestTaskTrace: a diamond run through the Go SDK is one trace. The
// CreateTask call's span is the task's; each claimed attempt is a span
// of the server's under it, handed to the worker with the claim; the
// worker's handler span is that span's child, and the worker's report is
// a child of the handler span. Server and worker export to providers of
// their own, as two processes would.
func TestTaskTrace(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		serverSpans, workerSpans := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
		serverTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(serverSpans))
		workerTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(workerSpans))
		t.Cleanup(func() {
			require.NoError(t, serverTP.Shutdown(context.Background()))
			require.NoError(t, workerTP.Shutdown(context.Background()))
		})
		b := serve(t, db, servertest.Options{Config: server.Config{TracerProvider: serverTP}})
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		created, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1")})
		require.NoError(t, err)

		conn, err := grpc.NewClient(b.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(workerTP),
				otelgrpc.WithPropagators(propagation.TraceContext{}))))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		w := worker.New(conn, "traced", worker.Options{TracerProvider: workerTP, ClaimWait: time.Second})
		ok := func(context.Context, *worker.Step) (map[string]any, error) { return map[string]any{"ok": true}, nil }
		w.MustRegister("shop", "work", ok)
		w.MustRegister("shop", "other", ok)
		runCtx, stop := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- w.Run(runCtx) }()
		require.Eventually(t, func() bool {
			got, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: created.GetTask().GetId()})
			require.NoError(t, err)
			return got.GetTask().GetState() == taskerv1.TaskState_TASK_STATE_COMPLETE
		}, 20*time.Second, 20*time.Millisecond)
		stop()
		require.NoError(t, <-ran)

		var create tracetest.SpanStub
		steps := map[string]tracetest.SpanStub{}
		for _, s := range serverSpans.GetSpans() {
			switch {
			case s.Name == "tasker.v1.TaskService/CreateTask":
				create = s
			case len(s.Name) == len("step a") && s.Name[:5] == "step ":
				steps[attr(s, "tasker.step_id")] = s
			}
		}
		require.True(t, create.SpanContext.IsValid(), "the CreateTask span was recorded")
		traceID := create.SpanContext.TraceID()
		require.Len(t, steps, 4, "one span per attempt")
		names := map[string]bool{}
		for _, s := range steps {
			names[s.Name] = true
			require.Equal(t, traceID, s.SpanContext.TraceID(), "%s is in the task's trace", s.Name)
			require.Equal(t, create.SpanContext.SpanID(), s.Parent.SpanID(), "%s is a child of CreateTask", s.Name)
			require.Len(t, s.Links, 1, "%s links the ClaimSteps call that took it", s.Name)
		}
		require.Equal(t, map[string]bool{"step a": true, "step b": true, "step c": true, "step d": true}, names)

		handled := 0
		handlers := map[trace.SpanID]bool{}
		for _, s := range workerSpans.GetSpans() {
			if s.Name != "handle shop/work" && s.Name != "handle shop/other" {
				continue
			}
			handled++
			handlers[s.SpanContext.SpanID()] = true
			parent, ok := steps[attr(s, "tasker.step_id")]
			require.True(t, ok, "the handler span names its step")
			require.Equal(t, traceID, s.SpanContext.TraceID())
			require.Equal(t, parent.SpanContext.SpanID(), s.Parent.SpanID(), "%s is a child of %s", s.Name, parent.Name)
			require.Equal(t, trace.SpanKindConsumer, s.SpanKind)
		}
		require.Equal(t, 4, handled)
		// Reports go out in batches: a batch's span is a child of its first
		// entry's handler span and links every entry's, so each handler's
		// trace shows the call that reported it.
		reported := map[trace.SpanID]bool{}
		for _, s := range workerSpans.GetSpans() {
			if s.Name != "report completions" {
				continue
			}
			require.True(t, handlers[s.Parent.SpanID()], "a report is a child of a handler span")
			require.Equal(t, traceID, s.SpanContext.TraceID())
			for _, l := range s.Links {
				require.True(t, handlers[l.SpanContext.SpanID()], "a report links handler spans")
				reported[l.SpanContext.SpanID()] = true
			}
		}
		require.Equal(t, handlers, reported, "every handler's report is linked from a report span")
	})
}
