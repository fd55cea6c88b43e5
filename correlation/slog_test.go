package correlation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerhq/tasker/correlation"
)

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		out = append(out, m)
	}
	return out
}

func TestHandlerAddsIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := correlation.Logger(slog.New(slog.NewJSONHandler(&buf, nil)))
	require.Same(t, log, correlation.Logger(log), "wrapping twice wraps once")

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(correlation.WithID(context.Background(), "req-1"), sc)
	log.With("component", "x").InfoContext(ctx, "with both")
	log.InfoContext(correlation.WithID(context.Background(), "req-2"), "id only")
	log.InfoContext(context.Background(), "neither")
	log.Info("no context")

	got := lines(t, &buf)
	require.Len(t, got, 4)
	require.Equal(t, "req-1", got[0]["correlation_id"])
	require.Equal(t, sc.TraceID().String(), got[0]["trace_id"])
	require.Equal(t, sc.SpanID().String(), got[0]["span_id"])
	require.Equal(t, "x", got[0]["component"])
	require.Equal(t, "req-2", got[1]["correlation_id"])
	require.NotContains(t, got[1], "trace_id")
	for _, l := range got[2:] {
		require.NotContains(t, l, "correlation_id")
		require.NotContains(t, l, "trace_id")
	}
}
