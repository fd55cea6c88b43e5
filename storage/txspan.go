package storage

import (
	"context"
	"database/sql"
	"sync/atomic"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerhq/tasker/ent"
)

// Transactions in traces: a DB.Tx call whose context's span is recording
// gets a span of its own, a child of that span, counting the statements
// its function ran. A call without a recording span, such as the
// background work's, makes no span and counts nothing.
//
// The span is started from the provider of its parent, so it goes where
// the call's other spans go without storage being told where that is.

// instrumentation is the name the transaction spans' tracer is known by.
const instrumentation = "github.com/taskerhq/tasker/storage"

// The attributes of a transaction span besides db.system.name.
const (
	// attrStatements is how many statements the caller's function ran,
	// over every attempt: the cost of the call on the database.
	attrStatements = attribute.Key("tasker.tx.statements")
	// attrAttempts is how many times Tx ran the transaction: more than 1
	// after serialization failures.
	attrAttempts = attribute.Key("tasker.tx.attempts")
	// attrGroupSize is, on SQLite, how many callers' functions the
	// transaction that committed this one's work carried (group commit):
	// 1 when it ran alone.
	attrGroupSize = attribute.Key("tasker.tx.group_size")
)

// txStats is what a traced transaction reports to its span. The storage
// code that begins the transaction finds it in the context it begins with.
type txStats struct {
	// statements is incremented by the counting driver for each statement
	// run in a transaction begun with a context holding these stats.
	statements atomic.Int64
	// group is set by the group committer once the caller's function is
	// committed or rolled back, before the caller is answered.
	group int
}

type txStatsKey struct{}

func statsFrom(ctx context.Context) *txStats {
	s, _ := ctx.Value(txStatsKey{}).(*txStats)
	return s
}

type txNameKey struct{}

// TxName names, in traces, the transactions DB.Tx runs with the returned
// context: their spans are called "tx <name>" instead of "tx". When
// ctx's span is not recording no span will be made, and TxName returns
// ctx itself.
func TxName(ctx context.Context, name string) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	return context.WithValue(ctx, txNameKey{}, name)
}

// tracedTx is Tx under a span, a child of parent, the recording span of
// ctx.
func (db *DB) tracedTx(ctx context.Context, parent trace.Span, fn func(tx *ent.Tx) error) error {
	name := "tx"
	if n, _ := ctx.Value(txNameKey{}).(string); n != "" {
		name = "tx " + n
	}
	system := semconv.DBSystemNamePostgreSQL
	if db.Dialect == dialect.SQLite {
		system = semconv.DBSystemNameSQLite
	}
	ctx, span := parent.TracerProvider().Tracer(instrumentation).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(system))
	defer span.End()
	stats := &txStats{}
	attempts, err := db.txAttempts(context.WithValue(ctx, txStatsKey{}, stats), fn)
	attrs := []attribute.KeyValue{attrStatements.Int64(stats.statements.Load()), attrAttempts.Int(attempts)}
	if db.group != nil && stats.group > 0 {
		attrs = append(attrs, attrGroupSize.Int(stats.group))
	}
	span.SetAttributes(attrs...)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// countingDriver is ent's driver, whose transactions count their
// statements into the txStats of the context they begin with. Those begun
// without any cost nothing more than the lookup at their start.
type countingDriver struct {
	*entsql.Driver
}

func (d countingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	return d.BeginTx(ctx, nil)
}

// BeginTx is what ent.Client.BeginTx calls.
func (d countingDriver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	stats := statsFrom(ctx)
	if stats == nil {
		return tx, nil
	}
	return &countingTx{Tx: tx.(*entsql.Tx), n: &stats.statements}, nil
}

// countingTx counts the statements run through it: ent's (Exec, Query)
// and raw SQL (ExecContext, QueryContext, which ent.Tx's methods of the
// same names reach).
type countingTx struct {
	*entsql.Tx
	n *atomic.Int64
}

func (t *countingTx) Exec(ctx context.Context, query string, args, v any) error {
	t.n.Add(1)
	return t.Tx.Exec(ctx, query, args, v)
}

func (t *countingTx) Query(ctx context.Context, query string, args, v any) error {
	t.n.Add(1)
	return t.Tx.Query(ctx, query, args, v)
}

func (t *countingTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.n.Add(1)
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *countingTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	t.n.Add(1)
	return t.Tx.QueryContext(ctx, query, args...)
}
