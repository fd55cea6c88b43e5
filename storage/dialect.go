package storage

import (
	"context"
	"database/sql"
	"fmt"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/taskerhq/tasker/ent"
)

// Dialect is what the code above storage needs to know of the database it
// runs on: how a writer locks the rows it changes, how claims skip rows
// other claimers hold, how events get their numbers, how to read one
// snapshot and how to order text. SQLite and PostgreSQL each implement it
// in a file of their own (sqlite.go, postgres.go), so the engine, the event
// log and the registry hold no per-dialect branch and no SQL of one
// dialect. DB.SQL returns the database's.
type Dialect interface {
	// Name is ent's name of the dialect ("sqlite3", "postgres").
	Name() string
	// LockForWrite makes a query of task rows lock them against every
	// other writer until the transaction ends. Apply it as a predicate:
	// q.Where(func(s *sql.Selector) { d.LockForWrite(s) }).
	LockForWrite(s *entsql.Selector)
	// LockTasksOfSteps makes a query of steps (whose task column is
	// taskColumn) lock their tasks, skipping, never waiting for, tasks
	// another transaction holds: how claims keep the lock order (task,
	// then steps) without queueing behind operators and reports.
	LockTasksOfSteps(s *entsql.Selector, taskColumn string)
	// ClaimCandidates is how many due steps per handler a claim of max
	// steps reads: more than max where concurrent claimers may take some of
	// them first.
	ClaimCandidates(max int) int
	// ConcurrentWriters reports whether other transactions write while
	// this one runs: rows read before a lock was taken must then be read
	// again under it.
	ConcurrentWriters() bool
	// NextSequence returns the sequence the next event appended in tx
	// gets, or 0 when events are appended unnumbered and numbered after
	// commit (PostgreSQL's sequencer).
	NextSequence(ctx context.Context, tx *ent.Tx) (int64, error)
	// Replicated reports whether several processes serve one database:
	// their commits reach each other only by notification, and a sequencer
	// numbers the events they append after commit (PostgreSQL). On SQLite
	// one process owns the file and numbers events as it appends them.
	Replicated() bool
	// SnapshotRead is the options of a read-only transaction whose
	// statements all see one snapshot.
	SnapshotRead() *sql.TxOptions
	// BinaryCollation is the clause, appended to a text expression, that
	// orders it byte by byte, the same on both dialects.
	BinaryCollation() string
}

// SQL returns the dialect of db.
func (db *DB) SQL() Dialect {
	if db.Dialect == postgresName {
		return postgres{}
	}
	return sqliteDialect{}
}

// maxParams keeps one INSERT under both databases' bound-parameter limits
// (SQLite 32766, PostgreSQL 65535).
const maxParams = 30_000

// InsertRows appends rows to table in tx with as few INSERT statements as
// the parameter limit allows, each row holding a value per column. It is
// for append-only tables written on every state change (transitions,
// events): ent's bulk create reads every new id back (RETURNING), which
// those writes never need. Values are bound as ent binds them: JSON as its
// encoded bytes, UUIDs and times as themselves, nil for NULL.
func InsertRows(ctx context.Context, tx *ent.Tx, d Dialect, table string, columns []string, rows [][]any) error {
	perStatement := max(1, maxParams/len(columns))
	for start := 0; start < len(rows); start += perStatement {
		b := entsql.Dialect(d.Name()).Insert(table).Columns(columns...)
		for _, row := range rows[start:min(start+perStatement, len(rows))] {
			if len(row) != len(columns) {
				return fmt.Errorf("storage: insert into %s: a row of %d values for %d columns", table, len(row), len(columns))
			}
			b.Values(row...)
		}
		query, args := b.Query()
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("storage: insert into %s: %w", table, err)
		}
	}
	return nil
}
