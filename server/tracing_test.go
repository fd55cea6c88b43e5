package server_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/taskerhq/tasker/engine"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestRPCSpansReachConfiguredProvider: the spans of RPCs go to the
// provider of Config.TracerProvider, one server span per call, named by
// method, with the gRPC status.
func TestRPCSpansReachConfiguredProvider(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		spans := tracetest.NewInMemoryExporter()
		provider := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		t.Cleanup(func() { require.NoError(t, provider.Shutdown(testContext(t))) })
		b := serve(t, db, servertest.Options{Config: server.Config{TracerProvider: provider}})
		ctx := testContext(t)

		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		_, err = b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: "not-an-id"})
		require.Error(t, err)

		// The server span ends after the response is sent, so it may be
		// recorded a moment after the client returned.
		byName := map[string]tracetest.SpanStub{}
		require.Eventually(t, func() bool {
			for _, s := range spans.GetSpans() {
				byName[s.Name] = s
			}
			return len(byName) >= 2
		}, 10*time.Second, 10*time.Millisecond)
		reg, ok := byName["tasker.v1.RegistryService/RegisterTaskTemplate"]
		require.True(t, ok, "spans: %v", byName)
		require.Equal(t, trace.SpanKindServer, reg.SpanKind)
		require.Equal(t, "Unset", reg.Status.Code.String())
		get, ok := byName["tasker.v1.TaskService/GetTask"]
		require.True(t, ok, "spans: %v", byName)
		require.Equal(t, "OK", attr(reg, "rpc.response.status_code"))
		require.Equal(t, "INVALID_ARGUMENT", attr(get, "rpc.response.status_code"), "a refused call's span carries its code")
		require.NotEmpty(t, attr(get, "tasker.correlation_id"))
		require.NotEqual(t, reg.SpanContext.TraceID(), get.SpanContext.TraceID(), "calls without a parent start their own traces")
	})
}

// attr is the value of the span's attribute key, "" when it has none.
func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.AsString()
		}
	}
	return ""
}

// TestLogLinesJoinTraces: a call's log line carries its correlation id and
// the trace and span ids of its server span, so logs, events and traces of
// one call join.
func TestLogLinesJoinTraces(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		spans := tracetest.NewInMemoryExporter()
		provider := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		t.Cleanup(func() { require.NoError(t, provider.Shutdown(testContext(t))) })
		var logs lockedBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		b := serve(t, db, servertest.Options{Logger: logger, Config: server.Config{TracerProvider: provider}})
		ctx := testContext(t)

		callCtx := metadata.AppendToOutgoingContext(ctx, "x-correlation-id", "join-1")
		_, err := b.registry.RegisterTaskTemplate(callCtx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)

		var span tracetest.SpanStub
		require.Eventually(t, func() bool {
			for _, s := range spans.GetSpans() {
				if s.Name == "tasker.v1.RegistryService/RegisterTaskTemplate" {
					span = s
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond)
		var line map[string]any
		require.Eventually(t, func() bool {
			for raw := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(raw), &rec) == nil && rec["grpc.method"] == "RegisterTaskTemplate" {
					line = rec
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond)
		require.Equal(t, "join-1", line["correlation_id"])
		require.Equal(t, span.SpanContext.TraceID().String(), line["trace_id"])
		require.Equal(t, span.SpanContext.SpanID().String(), line["span_id"])
		require.Equal(t, "join-1", attr(span, "tasker.correlation_id"))
		require.Equal(t, 1, strings.Count(logs.String(), `"correlation_id"`), "the id is added once: %s", logs.String())
	})
}

// TestTransactionSpans: the engine's transactions in a traced call are
// spans under the call's server span, named by the operation, with the
// database system, the statements they ran and their attempts; calls
// without a recording span, the engine's background work among them,
// make none.
func TestTransactionSpans(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		spans := tracetest.NewInMemoryExporter()
		provider := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		t.Cleanup(func() { require.NoError(t, provider.Shutdown(testContext(t))) })
		b := serve(t, db, servertest.Options{Config: server.Config{TracerProvider: provider}})
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		_, err = b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1")})
		require.NoError(t, err)

		// Server spans end after the response is sent: wait for both
		// calls'.
		var register, create, tx tracetest.SpanStub
		require.Eventually(t, func() bool {
			for _, s := range spans.GetSpans() {
				switch s.Name {
				case "tasker.v1.RegistryService/RegisterTaskTemplate":
					register = s
				case "tasker.v1.TaskService/CreateTask":
					create = s
				case "tx CreateTask":
					tx = s
				}
			}
			return register.SpanContext.IsValid() && create.SpanContext.IsValid() && tx.SpanContext.IsValid()
		}, 10*time.Second, 10*time.Millisecond)
		require.Equal(t, create.SpanContext.TraceID(), tx.SpanContext.TraceID())
		require.Equal(t, create.SpanContext.SpanID(), tx.Parent.SpanID(), "the transaction is a child of the call")
		require.Equal(t, trace.SpanKindClient, tx.SpanKind)
		system := map[string]string{"sqlite3": "sqlite", "postgres": "postgresql"}[db.Dialect]
		require.Equal(t, system, attr(tx, "db.system.name"))
		values := map[string]int64{}
		for _, a := range tx.Attributes {
			values[string(a.Key)] = a.Value.AsInt64()
		}
		// The task, its four steps, their dependencies, transitions and
		// events, whatever the batching: more than a handful.
		require.Greater(t, values["tasker.tx.statements"], int64(4))
		require.Equal(t, int64(1), values["tasker.tx.attempts"])
		if system == "sqlite" {
			require.Equal(t, int64(1), values["tasker.tx.group_size"], "no other writer to share a commit with")
		}
		require.Equal(t, "Unset", tx.Status.Code.String())

		// The engine called without a trace: no span.
		before := len(spans.GetSpans())
		_, _, err = b.engine.CreateTask(context.Background(), engine.CreateTaskParams{
			Namespace: "shop", Name: "diamond", Context: map[string]any{"order_id": "2"}})
		require.NoError(t, err)
		got := spans.GetSpans()
		require.Len(t, got, before, "no span: %v", got[before:])

		// Every transaction span has a parent among the recorded spans:
		// none is the root of a trace of its own.
		ids := map[trace.SpanID]bool{}
		for _, s := range got {
			ids[s.SpanContext.SpanID()] = true
		}
		for _, s := range got {
			if strings.HasPrefix(s.Name, "tx") {
				require.True(t, ids[s.Parent.SpanID()], "%s has its parent in the trace", s.Name)
			}
		}
	})
}
