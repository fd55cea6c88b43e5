package storage_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	"github.com/stretchr/testify/require"

	entmigrate "github.com/taskerhq/tasker/ent/migrate"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// openEmpty opens a new, unmigrated database of dialect d.
func openEmpty(t *testing.T, d string) *storage.DB {
	t.Helper()
	url := filepath.Join(t.TempDir(), "t.db")
	if d == "postgres" {
		url = storagetest.PostgresURL(t)
	}
	db, err := storage.Open(t.Context(), url, storage.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func embedded(t *testing.T, db *storage.DB) storage.Migrations {
	t.Helper()
	ms, err := storage.EmbeddedMigrations(db.Dialect)
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	return ms
}

// future is a migration a newer binary would carry: one more index.
var future = storage.Migration{
	Version:  "29991231235959",
	Name:     "future_index",
	Checksum: "h1:future",
	Stmts:    []string{"CREATE INDEX tasks_future_idx ON tasks (created_at)"},
}

// TestMigrationsMatchSchema is the check that ent/schema never changes
// without a migration file: after every migration, ent's own diff of the
// database against ent/schema (index drops included) is empty.
func TestMigrationsMatchSchema(t *testing.T) {
	t.Parallel()
	for _, d := range storagetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := openEmpty(t, d)
			require.NoError(t, db.Migrate(t.Context()))
			drift, err := db.SchemaDrift(t.Context())
			require.NoError(t, err)
			require.Empty(t, drift, "ent/schema changed without a migration: run `make migration NAME=…`")
		})
	}
}

// TestUpgradeWithData applies the first migration, stores rows in the
// schema it made, then upgrades to head: every row is still there and the
// database is ready and matches ent/schema.
func TestUpgradeWithData(t *testing.T) {
	t.Parallel()
	for _, d := range storagetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := openEmpty(t, d)
			ms := embedded(t, db)
			applied, err := db.MigrateTo(ctx, ms[:1])
			require.NoError(t, err)
			require.Equal(t, []string{ms[0].Version}, applied)

			// Rows written in the first migration's schema, by hand, since
			// ent writes head's columns.
			ph := func(s string) string { return s }
			if db.Dialect == dialect.Postgres {
				ph = postgresPlaceholders
			}
			now := "2026-01-02 03:04:05"
			exec := func(q string, args ...any) {
				t.Helper()
				_, err := db.Writer.ExecContext(ctx, ph(q), args...)
				require.NoError(t, err, q)
			}
			exec("INSERT INTO namespaces (id, name, description, created_at) VALUES (1, ?, '', ?)", "billing", now)
			exec(`INSERT INTO task_templates (id, name, version, description, identity_strategy, max_attempts,
				backoff_initial_ms, backoff_multiplier, backoff_max_ms, backoff_jitter, lease_duration_ms,
				execution_timeout_ms, content_hash, created_at, updated_at, namespace_id)
				VALUES (1, 'invoice', '1.0.0', '', 'always_unique', 3, 100, 2, 1000, 0.1, 30000, 0, 'h', ?, ?, 1)`, now, now)
			exec(`INSERT INTO tasks (id, namespace, template_name, template_version, state, context, correlation_id,
				priority, created_at, updated_at, template_id)
				VALUES ('0193a0f0-0000-7000-8000-000000000001', 'billing', 'invoice', '1.0.0', 'pending', '{"n":1}', 'corr-1', 0, ?, ?, 1)`, now, now)
			exec(`INSERT INTO events (sequence, type, correlation_id, namespace, payload, created_at)
				VALUES (1, 'task.created', 'corr-1', 'billing', '{}', ?)`, now)

			_, err = db.MigrateTo(ctx, ms)
			require.NoError(t, err)
			require.NoError(t, db.Ready(ctx))
			drift, err := db.SchemaDrift(ctx)
			require.NoError(t, err)
			require.Empty(t, drift)

			var corr string
			require.NoError(t, db.Writer.QueryRowContext(ctx, "SELECT correlation_id FROM tasks").Scan(&corr))
			require.Equal(t, "corr-1", corr)
			var events int
			require.NoError(t, db.Writer.QueryRowContext(ctx, "SELECT COUNT(*) FROM events").Scan(&events))
			require.Equal(t, 1, events)
		})
	}
}

// postgresPlaceholders numbers ? placeholders as $1, $2, ….
func postgresPlaceholders(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteString("$" + strconv.Itoa(n))
	}
	return b.String()
}

// TestMigrateRecordsAndIsIdempotent: every migration is recorded once, and a
// second run applies nothing.
func TestMigrateRecordsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		ms := embedded(t, db)
		applied, err := db.MigrateTo(ctx, ms)
		require.NoError(t, err)
		require.Empty(t, applied, "storagetest databases are migrated already")
		st, err := db.MigrationStatus(ctx, ms)
		require.NoError(t, err)
		require.NoError(t, st.Err)
		require.Empty(t, st.Pending)
		var want []string
		for _, m := range ms {
			want = append(want, m.Version)
		}
		require.Equal(t, want, st.Applied)
	})
}

// TestNewerSchemaRefused: a database migrated by a newer binary is refused by
// an older one, with a message that names the versions, and the older one
// changes nothing.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		ms := embedded(t, db)
		newer := append(slices.Clone(ms), future)
		applied, err := db.MigrateTo(ctx, newer)
		require.NoError(t, err)
		require.Equal(t, []string{future.Version}, applied)

		err = db.Migrate(ctx)
		require.ErrorIs(t, err, storage.ErrSchemaNewer)
		require.ErrorContains(t, err, future.Version)
		require.ErrorContains(t, err, ms.Head())
		require.ErrorIs(t, db.Ready(ctx), storage.ErrSchemaNewer)
		require.True(t, hasIndex(t, db, "tasks_future_idx"))
	})
}

// TestEditedMigrationRefused: a migration whose file changed after it was
// applied is refused, and so is a directory whose files do not match
// atlas.sum.
func TestEditedMigrationRefused(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ms := embedded(t, db)
		edited := slices.Clone(ms)
		edited[0].Checksum = "h1:edited"
		_, err := db.MigrateTo(t.Context(), edited)
		require.ErrorIs(t, err, storage.ErrMigrationEdited)
	})

	_, err := storage.LoadMigrations(fstest.MapFS{
		"20260101000000_a.sql": {Data: []byte("CREATE TABLE a (id integer);\n")},
		"atlas.sum":            {Data: []byte("h1:AAAA\n20260101000000_a.sql h1:BBBB\n")},
	})
	require.ErrorIs(t, err, storage.ErrMigrationEdited)
	_, err = storage.LoadMigrations(fstest.MapFS{
		"20260101000000_a.sql": {Data: []byte("CREATE TABLE a (id integer);\n")},
	})
	require.Error(t, err, "a migration without atlas.sum")
}

// TestFailedMigrationChangesNothing: a migration that fails halfway leaves
// neither its first statements nor a record behind, and the next start
// retries it.
func TestFailedMigrationChangesNothing(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		broken := storage.Migration{
			Version: "29991231235959", Name: "broken", Checksum: "h1:broken",
			Stmts: []string{
				"CREATE INDEX tasks_half_idx ON tasks (updated_at)",
				"CREATE INDEX tasks_broken_idx ON no_such_table (x)",
			},
		}
		_, err := db.MigrateTo(ctx, append(embedded(t, db), broken))
		require.ErrorContains(t, err, "29991231235959_broken")
		require.False(t, hasIndex(t, db, "tasks_half_idx"), "the failed migration's first statement was rolled back")
		st, err := db.MigrationStatus(ctx, append(embedded(t, db), broken))
		require.NoError(t, err)
		require.Len(t, st.Pending, 1)
	})
}

// TestOlderAndNewerBinaryKeepIndexes serves one PostgreSQL database from an
// older binary (the embedded migrations) and a newer one (one more index)
// started after it: the older one's restart-free run keeps working, no
// index of either is dropped by anyone, and the newer one's restart applies
// nothing.
func TestOlderAndNewerBinaryKeepIndexes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := storagetest.PostgresURL(t)
	open := func() *storage.DB {
		db, err := storage.Open(ctx, url, storage.Options{MaxConns: 4})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		return db
	}
	older, newer := open(), open()
	ms := embedded(t, older)
	require.NoError(t, older.Migrate(ctx))
	before := indexes(t, older)

	applied, err := newer.MigrateTo(ctx, append(slices.Clone(ms), future))
	require.NoError(t, err)
	require.Equal(t, []string{future.Version}, applied)
	after := indexes(t, older)
	require.Subset(t, after, before, "the newer binary dropped an index of the older one")
	require.Contains(t, after, "tasks_future_idx")

	// The older binary, already serving, keeps using the database; the
	// newer one restarting applies nothing and drops nothing.
	require.NoError(t, older.Writer.PingContext(ctx))
	applied, err = newer.MigrateTo(ctx, append(slices.Clone(ms), future))
	require.NoError(t, err)
	require.Empty(t, applied)
	require.ElementsMatch(t, after, indexes(t, older))
}

func indexes(t *testing.T, db *storage.DB) []string {
	t.Helper()
	rows, err := db.Writer.QueryContext(context.Background(), "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

func hasIndex(t *testing.T, db *storage.DB, name string) bool {
	t.Helper()
	q := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
	if db.Dialect == dialect.Postgres {
		q = "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1"
	}
	var n int
	require.NoError(t, db.Writer.QueryRowContext(t.Context(), q, name).Scan(&n))
	return n > 0
}

// TestLegacyDatabaseAdopted: a database made by a release that migrated with
// ent's auto-migration, rows included, is brought to ent/schema and every
// migration recorded, once.
//
// Not parallel: ent's auto-migration writes to ent/migrate's package-level
// tables, which storage guards with a lock of its own that tests cannot take.
func TestLegacyDatabaseAdopted(t *testing.T) {
	for _, d := range storagetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := t.Context()
			db := openEmpty(t, d)
			// What those releases ran at start, minus the newest index.
			m, err := schema.NewMigrate(entsql.OpenDB(db.Dialect, db.Writer))
			require.NoError(t, err)
			require.NoError(t, m.Create(ctx, entmigrate.Tables...))
			_, err = db.Writer.ExecContext(ctx, "DROP INDEX step_namespace_handler_claimable_at")
			require.NoError(t, err)
			ns, err := db.Client.Namespace.Create().SetName("billing").Save(ctx)
			require.NoError(t, err)

			require.NoError(t, db.Migrate(ctx))
			require.NoError(t, db.Ready(ctx))
			require.True(t, hasIndex(t, db, "step_namespace_handler_claimable_at"))
			drift, err := db.SchemaDrift(ctx)
			require.NoError(t, err)
			require.Empty(t, drift)
			got, err := db.Client.Namespace.Get(ctx, ns.ID)
			require.NoError(t, err)
			require.Equal(t, "billing", got.Name)
			st, err := db.MigrationStatus(ctx, embedded(t, db))
			require.NoError(t, err)
			require.Len(t, st.Applied, len(embedded(t, db)))
			require.NoError(t, db.Migrate(ctx))
		})
	}
}
