package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql/schema"

	"github.com/taskerhq/tasker/ent/migrate"
)

// migrateLockKey is the PostgreSQL advisory lock key that serialises
// migrations across replicas ("taskmigr" in ASCII). Other session locks of
// Tasker must use other keys.
const migrateLockKey int64 = 0x7461736b6d696772

// migrateMu serialises migrations within the process: ent's migration
// writes to the package-level tables of ent/migrate (it links columns to
// their indexes), so two databases migrating at once, as in tests, race.
var migrateMu sync.Mutex

// backfills fill columns added to existing tables, after the schema change
// and under the same lock. Each must be idempotent and cheap when there is
// nothing left to fill.
var backfills = []string{
	// claimable_at (the claim index) for steps stored before it existed,
	// and cleared where a replica that predates it moved a step on.
	"UPDATE steps SET claimable_at = available_at WHERE claimable_at IS NULL AND available_at IS NOT NULL AND state IN ('enqueued', 'waiting_for_retry')",
	"UPDATE steps SET claimable_at = NULL WHERE claimable_at IS NOT NULL AND state NOT IN ('enqueued', 'waiting_for_retry')",
}

// Migrate brings the schema up to date with ent/schema: it creates missing
// tables, columns and indexes and drops indexes that are no longer declared,
// but never drops a column or table. On PostgreSQL it holds an advisory lock
// meanwhile, so replicas that start together migrate one after the other and
// the later ones find nothing to do.
func (db *DB) Migrate(ctx context.Context) error {
	migrateMu.Lock()
	defer migrateMu.Unlock()
	create := func(ctx context.Context) error {
		if err := db.Client.Schema.Create(ctx, migrate.WithDropIndex(true)); err != nil {
			return fmt.Errorf("storage: migrate: %w", err)
		}
		for _, stmt := range backfills {
			if _, err := db.Writer.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("storage: migrate: backfill: %w", err)
			}
		}
		return nil
	}
	if db.Dialect != dialect.Postgres {
		// The single writer connection serialises this process, and the
		// migration's BEGIN IMMEDIATE any other.
		return create(ctx)
	}
	return withSessionLock(ctx, db.Writer, migrateLockKey, create)
}

// MigrationPlan returns the statements Migrate would run now, without
// running them; none when the schema is up to date. It serves dry runs and
// the test that migrating twice changes nothing.
func (db *DB) MigrationPlan(ctx context.Context) ([]string, error) {
	migrateMu.Lock()
	defer migrateMu.Unlock()
	var stmts []string
	dryRun := func(schema.Applier) schema.Applier {
		return schema.ApplyFunc(func(_ context.Context, _ dialect.ExecQuerier, plan *atlasmigrate.Plan) error {
			for _, c := range plan.Changes {
				stmts = append(stmts, c.Cmd)
			}
			return nil
		})
	}
	if err := db.Client.Schema.Create(ctx, migrate.WithDropIndex(true), schema.WithApplyHook(dryRun)); err != nil {
		return nil, fmt.Errorf("storage: migration plan: %w", err)
	}
	return stmts, nil
}

// withSessionLock runs fn while holding a PostgreSQL session advisory lock
// taken on a connection of its own. The lock is released explicitly before
// the connection goes back to the pool, because a session lock outlives
// everything but its session; if the unlock fails the connection is
// discarded, which ends the session and so releases the lock too.
func withSessionLock(ctx context.Context, pool *sql.DB, key int64, fn func(context.Context) error) (err error) {
	conn, err := pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("storage: lock connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("storage: advisory lock: %w", err)
	}
	defer func() {
		// Unlock even when ctx is done: the lock must not outlive fn.
		if _, uerr := conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); uerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn(ctx)
}

// Ready reports whether the database answers and is migrated: every table of
// the schema exists. It wraps ErrNotMigrated when tables are missing.
func (db *DB) Ready(ctx context.Context) error {
	if err := db.Writer.PingContext(ctx); err != nil {
		return fmt.Errorf("storage: ping: %w", err)
	}
	query := "SELECT name FROM sqlite_master WHERE type = 'table'"
	if db.Dialect == dialect.Postgres {
		query = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
	}
	rows, err := db.ReadDB.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("storage: list tables: %w", err)
	}
	defer rows.Close()
	var have []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("storage: list tables: %w", err)
		}
		have = append(have, name)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: list tables: %w", err)
	}
	var missing []string
	for _, t := range migrate.Tables {
		if !slices.Contains(have, t.Name) {
			missing = append(missing, t.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing tables %v", ErrNotMigrated, missing)
	}
	return nil
}

// DurabilityInfo describes what a commit survives, for start-up logs and
// benchmark reports: SQLite's journal mode and synchronous setting of the
// writer connection, or PostgreSQL's synchronous_commit.
func (db *DB) DurabilityInfo(ctx context.Context) (string, error) {
	if db.Dialect == dialect.Postgres {
		var commit string
		if err := db.Writer.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&commit); err != nil {
			return "", fmt.Errorf("storage: durability: %w", err)
		}
		return "postgres synchronous_commit=" + commit, nil
	}
	// Both pragmas on one connection: synchronous is per connection, and the
	// writer's is the one that decides.
	conn, err := db.Writer.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("storage: durability: %w", err)
	}
	defer conn.Close()
	var journal string
	var sync int
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return "", fmt.Errorf("storage: durability: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return "", fmt.Errorf("storage: durability: %w", err)
	}
	modes := []string{"OFF", "NORMAL", "FULL", "EXTRA"}
	if sync < 0 || sync >= len(modes) {
		return "", fmt.Errorf("storage: durability: unknown synchronous value %d", sync)
	}
	return fmt.Sprintf("sqlite journal_mode=%s synchronous=%s", journal, modes[sync]), nil
}

// ErrNotMigrated is wrapped by Ready when the schema's tables are missing.
var ErrNotMigrated = errors.New("storage: database not migrated")
