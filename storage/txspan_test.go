package storage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// spanAttr is the span's attribute key, an empty Value when it has none.
func spanAttr(s tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}

// countQueries runs n single-statement queries in tx.
func countQueries(ctx context.Context, tx *ent.Tx, n int) error {
	for range n {
		if _, err := tx.Namespace.Query().Count(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestTxSpans: a Tx whose context's span is recording has a span of its
// own, that span's child, named by TxName, counting the statements its
// function ran, raw SQL included; a failed one has an error status. A Tx
// without a recording span, untraced or not sampled, makes no span.
func TestTxSpans(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		spans := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
		system := "postgresql"
		if db.Dialect == "sqlite3" {
			system = "sqlite"
		}

		ctx, parent := tp.Tracer("test").Start(t.Context(), "call")
		require.NoError(t, db.Tx(storage.TxName(ctx, "Count"), func(tx *ent.Tx) error {
			if err := countQueries(ctx, tx, 3); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "UPDATE namespaces SET name = name WHERE name = 'none'")
			return err
		}))
		boom := errors.New("boom")
		require.ErrorIs(t, db.Tx(ctx, func(tx *ent.Tx) error {
			if err := countQueries(ctx, tx, 1); err != nil {
				return err
			}
			return boom
		}), boom)
		parent.End()

		// Untraced, or traced but not sampled: no span.
		require.NoError(t, db.Tx(t.Context(), func(tx *ent.Tx) error { return countQueries(t.Context(), tx, 1) }))
		unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSyncer(spans))
		uctx, uspan := unsampled.Tracer("test").Start(t.Context(), "unsampled")
		require.False(t, uspan.IsRecording())
		require.NoError(t, db.Tx(storage.TxName(uctx, "Unsampled"), func(tx *ent.Tx) error { return countQueries(uctx, tx, 1) }))
		uspan.End()

		got := spans.GetSpans()
		require.Len(t, got, 3, "two transaction spans and their parent")
		ok, failed := got[0], got[1]
		require.Equal(t, "tx Count", ok.Name)
		require.Equal(t, "tx", failed.Name, "unnamed")
		for _, s := range []tracetest.SpanStub{ok, failed} {
			require.Equal(t, parent.SpanContext().SpanID(), s.Parent.SpanID(), "%s is a child of the caller's span", s.Name)
			require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext.TraceID())
			require.Equal(t, trace.SpanKindClient, s.SpanKind)
			require.Equal(t, system, spanAttr(s, "db.system.name").AsString())
			require.Equal(t, int64(1), spanAttr(s, "tasker.tx.attempts").AsInt64())
			if system == "sqlite" {
				require.Equal(t, int64(1), spanAttr(s, "tasker.tx.group_size").AsInt64(), "ran alone")
			} else {
				require.Equal(t, attribute.EMPTY, spanAttr(s, "tasker.tx.group_size").Type(), "no group commit on PostgreSQL")
			}
		}
		require.Equal(t, int64(4), spanAttr(ok, "tasker.tx.statements").AsInt64(), "three queries and one raw statement")
		require.Equal(t, codes.Unset, ok.Status.Code)
		require.Equal(t, int64(1), spanAttr(failed, "tasker.tx.statements").AsInt64())
		require.Equal(t, codes.Error, failed.Status.Code)
		require.Equal(t, "boom", failed.Status.Description)
	})
}

// TestTxSpanCountsRetries: the span of a transaction retried after
// serialization failures counts the attempts and the statements of all
// of them.
func TestTxSpanCountsRetries(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	ctx, parent := tp.Tracer("test").Start(t.Context(), "call")
	attempts := 0
	require.NoError(t, db.Tx(ctx, func(tx *ent.Tx) error {
		attempts++
		if err := countQueries(ctx, tx, 2); err != nil {
			return err
		}
		if attempts < 3 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return nil
	}))
	parent.End()
	got := spans.GetSpans()
	require.Len(t, got, 2)
	require.Equal(t, int64(3), spanAttr(got[0], "tasker.tx.attempts").AsInt64())
	require.Equal(t, int64(6), spanAttr(got[0], "tasker.tx.statements").AsInt64())
	require.Equal(t, codes.Unset, got[0].Status.Code)
}
