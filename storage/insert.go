package storage

import (
	"context"
	"fmt"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/taskerhq/tasker/ent"
)

// maxParams keeps one INSERT under both databases' bound-parameter limits
// (SQLite 32766, PostgreSQL 65535).
const maxParams = 30_000

// InsertRows appends rows to table in tx with as few INSERT statements as
// the parameter limit allows, each row holding a value per column. It is
// for append-only tables written on every state change (transitions,
// events): ent's bulk create reads every new id back (RETURNING), which
// those writes never need. Values are bound as ent binds them: JSON as its
// encoded bytes, UUIDs and times as themselves, nil for NULL.
func InsertRows(ctx context.Context, tx *ent.Tx, dialectName, table string, columns []string, rows [][]any) error {
	perStatement := max(1, maxParams/len(columns))
	for start := 0; start < len(rows); start += perStatement {
		b := entsql.Dialect(dialectName).Insert(table).Columns(columns...)
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
