package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"sync"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"

	"github.com/taskerhq/tasker/ent/migrate"
)

// migrateLockKey is the PostgreSQL advisory lock key that serialises
// migrations across replicas ("taskmigr" in ASCII). Other session locks of
// Tasker must use other keys.
const migrateLockKey int64 = 0x7461736b6d696772

// revisionTable records the migrations applied to a database, one row each.
// It belongs to the migration mechanism rather than to ent/schema: it must
// exist before the first migration runs.
const revisionTable = "tasker_schema_migrations"

//go:embed migrations/sqlite migrations/postgres
var embedded embed.FS

// Sentinels of the migration checks; the errors returned wrap them with the
// versions involved and what to do.
var (
	// ErrNotMigrated: the database lacks migrations this binary has.
	ErrNotMigrated = errors.New("storage: database not migrated")
	// ErrSchemaNewer: the database holds migrations this binary does not
	// know, written by a newer Tasker.
	ErrSchemaNewer = errors.New("storage: database schema is newer than this binary")
	// ErrMigrationEdited: a migration file differs from the one that was
	// applied, or the embedded files do not match their atlas.sum.
	ErrMigrationEdited = errors.New("storage: migration changed after it was applied")
)

// Migration is one versioned migration file of a dialect.
type Migration struct {
	// Version orders migrations: a UTC timestamp, yyyymmddhhmmss.
	Version string
	// Name says what the migration changes.
	Name string
	// Checksum is the file's hash in atlas.sum, recorded when applied.
	Checksum string
	// Stmts are the file's statements, in order.
	Stmts []string
}

// Migrations is the ordered list of a dialect's migrations.
type Migrations []Migration

// Head is the newest migration's version, "" when there is none.
func (ms Migrations) Head() string {
	if len(ms) == 0 {
		return ""
	}
	return ms[len(ms)-1].Version
}

// MigrationFolder is the folder of a dialect's migration files under
// storage/migrations.
func MigrationFolder(d string) string {
	if d == dialect.Postgres {
		return "postgres"
	}
	return "sqlite"
}

// EmbeddedMigrations returns the migrations built into this binary for
// the dialect. They are read once, as readiness probes ask for them often;
// each caller gets a copy of its own to change.
func EmbeddedMigrations(d string) (Migrations, error) {
	load := embeddedSQLite
	if d == dialect.Postgres {
		load = embeddedPostgres
	}
	ms, err := load()
	return slices.Clone(ms), err
}

var (
	embeddedPostgres = sync.OnceValues(func() (Migrations, error) { return loadEmbedded(dialect.Postgres) })
	embeddedSQLite   = sync.OnceValues(func() (Migrations, error) { return loadEmbedded(dialect.SQLite) })
)

func loadEmbedded(d string) (Migrations, error) {
	sub, err := fs.Sub(embedded, "migrations/"+MigrationFolder(d))
	if err != nil {
		return nil, err
	}
	return LoadMigrations(sub)
}

// LoadMigrations reads a directory of migration files in Atlas's format
// (version_name.sql, with an atlas.sum that hashes them) and checks the
// files against the sum, so a migration edited after it was generated is
// refused instead of applied.
func LoadMigrations(fsys fs.FS) (Migrations, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var files []atlasmigrate.File
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("storage: migration %s: %w", n, err)
		}
		files = append(files, atlasmigrate.NewLocalFile(n, b))
	}
	sumText, err := fs.ReadFile(fsys, atlasmigrate.HashFileName)
	if err != nil && (!errors.Is(err, fs.ErrNotExist) || len(files) > 0) {
		return nil, fmt.Errorf("storage: migrations: %w", err)
	}
	var want atlasmigrate.HashFile
	if len(sumText) > 0 {
		if err := want.UnmarshalText(sumText); err != nil {
			return nil, fmt.Errorf("%w: atlas.sum: %w", ErrMigrationEdited, err)
		}
	}
	have, err := atlasmigrate.NewHashFile(files)
	if err != nil {
		return nil, err
	}
	if want.Sum() != have.Sum() {
		return nil, fmt.Errorf("%w: the migration files do not match atlas.sum; regenerate with `make migration`, never edit an applied migration", ErrMigrationEdited)
	}
	ms := make(Migrations, 0, len(files))
	for _, f := range files {
		if err := atlasmigrate.CheckVersion(f.Version()); err != nil {
			return nil, fmt.Errorf("storage: migration %s: %w", f.Name(), err)
		}
		stmts, err := f.Stmts()
		if err != nil {
			return nil, fmt.Errorf("storage: migration %s: %w", f.Name(), err)
		}
		sum, err := have.SumByName(f.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: f.Version(), Name: f.Desc(), Checksum: sum, Stmts: stmts})
	}
	return ms, nil
}

// MigrationStatus compares a database with a list of migrations.
type MigrationStatus struct {
	// Applied are the versions recorded in the database, in order.
	Applied []string
	// Pending are the migrations of the list the database lacks, in order.
	Pending Migrations
	// Err is non-nil when the database cannot be served by this list: it
	// wraps ErrSchemaNewer or ErrMigrationEdited.
	Err error
}

// Migrate applies the migrations built into this binary that the database
// lacks; see MigrateTo.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := EmbeddedMigrations(db.Dialect)
	if err != nil {
		return err
	}
	_, err = db.MigrateTo(ctx, ms)
	return err
}

// MigrateTo applies, in order, the migrations of ms that the database lacks,
// each in a transaction of its own together with its row in
// tasker_schema_migrations, and returns those it applied. It refuses a
// database that holds a migration ms does not have (one written by a newer
// binary) or whose recorded checksum differs from the file's, and changes
// nothing then. On PostgreSQL it holds an advisory lock meanwhile, so
// replicas that start together migrate one after the other and the later
// ones find nothing to do; on SQLite the writer's BEGIN IMMEDIATE does the
// same across processes.
func (db *DB) MigrateTo(ctx context.Context, ms Migrations) (applied []string, err error) {
	run := func(ctx context.Context) error {
		if err := db.ensureRevisionTable(ctx, ms); err != nil {
			return err
		}
		st, err := db.MigrationStatus(ctx, ms)
		if err != nil {
			return err
		}
		if st.Err != nil {
			return st.Err
		}
		for _, m := range st.Pending {
			if err := db.apply(ctx, m); err != nil {
				return fmt.Errorf("storage: migration %s_%s: %w", m.Version, m.Name, err)
			}
			applied = append(applied, m.Version)
		}
		return nil
	}
	if db.Dialect != dialect.Postgres {
		return applied, run(ctx)
	}
	return applied, withSessionLock(ctx, db.Writer, migrateLockKey, run)
}

// MigrationStatus reports which of ms the database has and lacks, without
// changing anything.
func (db *DB) MigrationStatus(ctx context.Context, ms Migrations) (MigrationStatus, error) {
	var st MigrationStatus
	recorded, err := db.readRevisions(ctx)
	if err != nil {
		return st, err
	}
	known := make(map[string]Migration, len(ms))
	for _, m := range ms {
		known[m.Version] = m
	}
	var unknown []string
	for _, r := range recorded {
		st.Applied = append(st.Applied, r.version)
		m, ok := known[r.version]
		switch {
		case !ok:
			unknown = append(unknown, r.version)
		case m.Checksum != r.checksum:
			st.Err = fmt.Errorf("%w: migration %s_%s was applied with checksum %s, this binary's file has %s", ErrMigrationEdited, m.Version, m.Name, r.checksum, m.Checksum)
		}
	}
	if len(unknown) > 0 {
		st.Err = fmt.Errorf("%w: the database has migration %s, which this binary (newest migration %s) does not know; run the Tasker that migrated it, or a newer one",
			ErrSchemaNewer, strings.Join(unknown, ", "), orNone(ms.Head()))
	}
	done := make(map[string]bool, len(recorded))
	for _, r := range recorded {
		done[r.version] = true
	}
	for _, m := range ms {
		if !done[m.Version] {
			st.Pending = append(st.Pending, m)
		}
	}
	return st, nil
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

type revision struct{ version, checksum string }

// readRevisions returns the recorded migrations in version order; none when
// the table does not exist yet.
func (db *DB) readRevisions(ctx context.Context) ([]revision, error) {
	exists, err := db.tableExists(ctx, revisionTable)
	if err != nil || !exists {
		return nil, err
	}
	rows, err := db.Writer.QueryContext(ctx, "SELECT version, checksum FROM "+revisionTable+" ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("storage: read migrations: %w", err)
	}
	defer rows.Close()
	var out []revision
	for rows.Next() {
		var r revision
		if err := rows.Scan(&r.version, &r.checksum); err != nil {
			return nil, fmt.Errorf("storage: read migrations: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: read migrations: %w", err)
	}
	return out, nil
}

func (db *DB) tableExists(ctx context.Context, name string) (bool, error) {
	query := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.Dialect == dialect.Postgres {
		query = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
	}
	var n int
	if err := db.Writer.QueryRowContext(ctx, query, name).Scan(&n); err != nil {
		return false, fmt.Errorf("storage: look up table %s: %w", name, err)
	}
	return n > 0, nil
}

// ensureRevisionTable creates tasker_schema_migrations, adopting first a
// database made by a release that predates versioned migrations.
func (db *DB) ensureRevisionTable(ctx context.Context, ms Migrations) error {
	exists, err := db.tableExists(ctx, revisionTable)
	if err != nil || exists {
		return err
	}
	legacy, err := db.tableExists(ctx, "tasks")
	if err != nil {
		return err
	}
	if legacy {
		if err := db.upgradeLegacy(ctx); err != nil {
			return err
		}
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		at := "TEXT NOT NULL"
		if db.Dialect == dialect.Postgres {
			at = "timestamptz NOT NULL DEFAULT now()"
		}
		if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+revisionTable+
			" (version TEXT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at "+at+")"); err != nil {
			return fmt.Errorf("storage: create %s: %w", revisionTable, err)
		}
		if !legacy {
			return nil
		}
		for _, m := range ms {
			if err := db.record(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// legacyBackfills completed the schema changes of releases that migrated by
// ent's auto-migration; they run once more when such a database is adopted.
var legacyBackfills = []string{
	"UPDATE steps SET claimable_at = available_at WHERE claimable_at IS NULL AND available_at IS NOT NULL AND state IN ('enqueued', 'waiting_for_retry')",
	"UPDATE steps SET claimable_at = NULL WHERE claimable_at IS NOT NULL AND state NOT IN ('enqueued', 'waiting_for_retry')",
}

// upgradeLegacy brings a database made before versioned migrations to
// ent/schema the way those releases did, with ent's auto-migration and
// their backfills. ent/schema is what the embedded migrations produce
// (TestMigrationsMatchSchema), so the caller then records every migration
// as applied, in the same transaction that creates the record table: a
// crash before that commit leaves a database this function adopts again.
func (db *DB) upgradeLegacy(ctx context.Context) error {
	entSchemaMu.Lock()
	defer entSchemaMu.Unlock()
	m, err := schema.NewMigrate(entsql.OpenDB(db.Dialect, db.Writer), schema.WithDropIndex(true))
	if err != nil {
		return err
	}
	if err := m.Create(ctx, migrate.Tables...); err != nil {
		return fmt.Errorf("storage: adopt a database made before versioned migrations: %w", err)
	}
	for _, stmt := range legacyBackfills {
		if _, err := db.Writer.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("storage: adopt a database made before versioned migrations: %w", err)
		}
	}
	return nil
}

// entSchemaMu serialises uses of ent's schema migration within the process:
// it writes to the package-level tables of ent/migrate (it links columns to
// their indexes), so two databases diffing at once, as in tests, race.
var entSchemaMu sync.Mutex

// inTx runs fn in a transaction on the writer.
func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.Writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// record notes in tx that migration m is applied.
func (db *DB) record(ctx context.Context, tx *sql.Tx, m Migration) error {
	insert := "INSERT INTO " + revisionTable + " (version, name, checksum, applied_at) VALUES (?, ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))"
	if db.Dialect == dialect.Postgres {
		insert = "INSERT INTO " + revisionTable + " (version, name, checksum) VALUES ($1, $2, $3)"
	}
	if _, err := tx.ExecContext(ctx, insert, m.Version, m.Name, m.Checksum); err != nil {
		return fmt.Errorf("storage: record migration %s: %w", m.Version, err)
	}
	return nil
}

// apply runs one migration and records it, in one transaction, so a crash
// leaves it either wholly applied and recorded or not at all. SQLite cannot
// switch foreign keys inside a transaction, and a table rebuild (SQLite's
// way to alter a column) would trip them, so they are off around the
// transaction and checked by foreign_key_check before the commit, the
// procedure SQLite documents for schema changes.
func (db *DB) apply(ctx context.Context, m Migration) error {
	conn, err := db.Writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	sqlite := db.Dialect != dialect.Postgres
	if sqlite {
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			return err
		}
		defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON") }()
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, stmt := range m.Stmts {
		if sqlite && isForeignKeysPragma(stmt) {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	if sqlite {
		var violations int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_foreign_key_check").Scan(&violations); err != nil {
			return err
		}
		if violations > 0 {
			return fmt.Errorf("%w: %d rows violate foreign keys after the migration", ErrForeignKeyViolation, violations)
		}
	}
	if err := db.record(ctx, tx, m); err != nil {
		return err
	}
	return tx.Commit()
}

func isForeignKeysPragma(stmt string) bool {
	s := strings.ToLower(strings.Join(strings.Fields(stmt), " "))
	return strings.HasPrefix(s, "pragma foreign_keys")
}

func firstLine(stmt string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	if len(line) > 80 {
		line = line[:80] + "…"
	}
	return line
}

// SchemaDrift returns the statements that would bring the database to what
// ent/schema declares, index drops included; none when they match. After
// Migrate it must return none: a test runs it on both dialects, so a change
// of ent/schema without its migration file fails CI.
func (db *DB) SchemaDrift(ctx context.Context) ([]string, error) {
	entSchemaMu.Lock()
	defer entSchemaMu.Unlock()
	var stmts []string
	dryRun := func(schema.Applier) schema.Applier {
		return schema.ApplyFunc(func(_ context.Context, _ dialect.ExecQuerier, plan *atlasmigrate.Plan) error {
			for _, c := range plan.Changes {
				stmts = append(stmts, c.Cmd)
			}
			return nil
		})
	}
	m, err := schema.NewMigrate(entsql.OpenDB(db.Dialect, db.Writer), schema.WithDropIndex(true), schema.WithApplyHook(dryRun))
	if err != nil {
		return nil, err
	}
	if err := m.Create(ctx, migrate.Tables...); err != nil {
		return nil, fmt.Errorf("storage: schema drift: %w", err)
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

// Ready reports whether the database answers and has every migration of
// this binary: it wraps ErrNotMigrated when some are missing, and
// ErrSchemaNewer or ErrMigrationEdited when the database cannot be served.
func (db *DB) Ready(ctx context.Context) error {
	if err := db.Writer.PingContext(ctx); err != nil {
		return fmt.Errorf("storage: ping: %w", err)
	}
	ms, err := EmbeddedMigrations(db.Dialect)
	if err != nil {
		return err
	}
	st, err := db.MigrationStatus(ctx, ms)
	switch {
	case err != nil:
		return err
	case st.Err != nil:
		return st.Err
	case len(st.Pending) > 0:
		return fmt.Errorf("%w: %d migrations pending, the newest %s", ErrNotMigrated, len(st.Pending), ms.Head())
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
