package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// TestTaskTraceOverOTLP: a diamond run by `tasker serve`, exporting over
// OTLP as its OTEL_* environment says, and a Go SDK worker exporting over
// OTLP too, as two processes would, is one trace at the receiver: the
// CreateTask call's server span, its transaction, the four steps' spans
// under it, each worker handler span under its step's, and the reports'
// calls and transactions under those, every parent in the trace.
func TestTaskTraceOverOTLP(t *testing.T) {
	t.Parallel()
	for _, dialect := range storagetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			database := filepath.Join(t.TempDir(), "tasker.db")
			if dialect == "postgres" {
				database = storagetest.PostgresURL(t)
			}
			testTaskTraceOverOTLP(t, database)
		})
	}
}

func testTaskTraceOverOTLP(t *testing.T, database string) {
	r, endpoint := startReceiver(t)
	templates := t.TempDir()
	diamond, err := os.ReadFile(filepath.Join("..", "..", "examples", "templates", "diamond.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(templates, "diamond.yaml"), diamond, 0o600))
	srv := startServeProcess(t, []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + endpoint},
		"--database", database, "--templates", templates, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// The worker's process: a provider of its own, exporting over OTLP.
	exporter, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	require.NoError(t, err)
	workerTP := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("worker"))))
	t.Cleanup(func() { _ = workerTP.Shutdown(context.Background()) })
	workerConn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(workerTP),
			otelgrpc.WithPropagators(propagation.TraceContext{}))))
	require.NoError(t, err)
	defer workerConn.Close()
	w := worker.New(workerConn, "traced", worker.Options{TracerProvider: workerTP, ClaimWait: time.Second})
	ok := func(context.Context, *worker.Step) (map[string]any, error) { return map[string]any{"ok": true}, nil }
	w.MustRegister("demo", "demo_echo", ok)
	w.MustRegister("demo", "demo_sleep", ok)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(runCtx) }()

	// The caller: untraced, so the CreateTask server span is the root.
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	tasks := taskerv1.NewTaskServiceClient(conn)
	created, err := tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "demo", Name: "diamond"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, err := tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: created.GetTask().GetId()})
		require.NoError(t, err)
		return got.GetTask().GetState() == taskerv1.TaskState_TASK_STATE_COMPLETE
	}, 30*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-ran)
	// Both processes flush what they buffered as they shut down.
	require.NoError(t, workerTP.Shutdown(ctx))
	srv.stop(t)

	// The spans have been sent; wait for the receiver to have them all:
	// the task's trace is complete once every handler's report has its
	// transaction.
	var create receivedSpan
	var trace []receivedSpan
	require.Eventually(t, func() bool {
		create, trace = taskTrace(r.receivedSpans())
		n := 0
		for _, s := range trace {
			if s.GetName() == "tx CompleteSteps" {
				n++
			}
		}
		return create.Span != nil && n > 0 && countNamed(trace, "handle demo/") == 4
	}, 10*time.Second, 20*time.Millisecond, "received: %v", r.received())

	byID := map[string]receivedSpan{}
	for _, s := range trace {
		byID[hex.EncodeToString(s.GetSpanId())] = s
	}
	parentOf := func(s receivedSpan) receivedSpan { return byID[hex.EncodeToString(s.GetParentSpanId())] }
	for _, s := range trace {
		if s.Span == create.Span {
			require.Empty(t, s.GetParentSpanId(), "CreateTask is the root")
			continue
		}
		require.NotNil(t, parentOf(s).Span, "the parent of %s (%s) is in the trace", s.GetName(), s.service)
	}

	var txCreate []receivedSpan
	steps := map[string]receivedSpan{}
	for _, s := range trace {
		switch {
		case s.GetName() == "tx CreateTask":
			txCreate = append(txCreate, s)
		case strings.HasPrefix(s.GetName(), "step "):
			steps[stringAttr(s, "tasker.step_id")] = s
		}
	}
	require.Len(t, txCreate, 1)
	require.Equal(t, create.Span, parentOf(txCreate[0]).Span, "the create's transaction is a child of CreateTask")
	require.Equal(t, "tasker", txCreate[0].service)
	require.NotEmpty(t, stringAttr(txCreate[0], "db.system.name"))
	require.Positive(t, intAttr(txCreate[0], "tasker.tx.statements"))

	all := map[string]receivedSpan{}
	for _, s := range r.receivedSpans() {
		all[hex.EncodeToString(s.GetSpanId())] = s
	}
	names := map[string]bool{}
	for _, s := range steps {
		names[s.GetName()] = true
		require.Equal(t, "tasker", s.service)
		require.Equal(t, create.Span, parentOf(s).Span, "%s is a child of CreateTask", s.GetName())
		require.Len(t, s.GetLinks(), 1, "%s links the call that claimed it", s.GetName())
		claim := all[hex.EncodeToString(s.GetLinks()[0].GetSpanId())]
		require.Equal(t, "tasker.v1.StepService/ClaimSteps", claim.GetName(), "%s links the ClaimSteps call", s.GetName())
		require.Equal(t, "tasker", claim.service)
	}
	require.Equal(t, map[string]bool{"step a": true, "step b": true, "step c": true, "step d": true}, names)

	handled := map[string]bool{}
	handlers, reported := map[string]bool{}, map[string]bool{}
	for _, s := range trace {
		switch {
		case strings.HasPrefix(s.GetName(), "handle demo/"):
			require.Equal(t, "worker", s.service)
			require.Equal(t, tracev1.Span_SPAN_KIND_CONSUMER, s.GetKind())
			step, ok := steps[stringAttr(s, "tasker.step_id")]
			require.True(t, ok, "%s names a step of the task", s.GetName())
			require.Equal(t, step.Span, parentOf(s).Span, "%s is a child of %s", s.GetName(), step.GetName())
			handled[step.GetName()] = true
			handlers[hex.EncodeToString(s.GetSpanId())] = true
		case s.GetName() == "report completions":
			// Reports go out in batches: a batch's span is a child of
			// its first entry's handler span and links every entry's.
			require.True(t, strings.HasPrefix(parentOf(s).GetName(), "handle demo/"))
			for _, l := range s.GetLinks() {
				require.Equal(t, s.GetTraceId(), l.GetTraceId())
				reported[hex.EncodeToString(l.GetSpanId())] = true
			}
		case s.GetName() == "tx CompleteSteps":
			// Under the server span of the report, under the worker's
			// call, under a report span, under a handler span.
			call := parentOf(s)
			require.Equal(t, "tasker.v1.StepService/BatchCompleteSteps", call.GetName())
			require.Equal(t, tracev1.Span_SPAN_KIND_SERVER, call.GetKind())
			require.Equal(t, "worker", parentOf(call).service)
			require.Equal(t, "report completions", parentOf(parentOf(call)).GetName())
			require.True(t, strings.HasPrefix(parentOf(parentOf(parentOf(call))).GetName(), "handle demo/"))
		}
	}
	require.Len(t, handled, 4, "each step's handler span")
	require.Equal(t, handlers, reported, "every handler's report is linked from a report span")
}

// taskTrace finds the CreateTask server span among spans and returns it
// with every span of its trace.
func taskTrace(spans []receivedSpan) (receivedSpan, []receivedSpan) {
	var create receivedSpan
	for _, s := range spans {
		if s.service == "tasker" && s.GetName() == "tasker.v1.TaskService/CreateTask" {
			create = s
		}
	}
	if create.Span == nil {
		return create, nil
	}
	var trace []receivedSpan
	for _, s := range spans {
		if bytes.Equal(s.GetTraceId(), create.GetTraceId()) {
			trace = append(trace, s)
		}
	}
	return create, trace
}

// countNamed counts the spans whose name starts with prefix.
func countNamed(spans []receivedSpan, prefix string) int {
	n := 0
	for _, s := range spans {
		if strings.HasPrefix(s.GetName(), prefix) {
			n++
		}
	}
	return n
}

func stringAttr(s receivedSpan, key string) string {
	for _, a := range s.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

func intAttr(s receivedSpan, key string) int64 {
	for _, a := range s.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue().GetIntValue()
		}
	}
	return 0
}
