package storagetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5"

	"github.com/taskerhq/tasker/storage"
)

// Dialects lists the dialects every storage behaviour is tested on, in the
// names Open accepts: both, unless TASKER_TEST_DIALECTS names a subset
// (`make test-short` runs SQLite only).
var Dialects = dialects()

func dialects() []string {
	v := os.Getenv("TASKER_TEST_DIALECTS")
	if v == "" {
		return []string{"sqlite", "postgres"}
	}
	var out []string
	for _, d := range strings.Split(v, ",") {
		if d = strings.TrimSpace(d); d == "sqlite" || d == "postgres" {
			out = append(out, d)
		}
	}
	return out
}

// DefaultPostgresURL is the server tests use when TASKER_TEST_POSTGRES_URL
// is not set: a local PostgreSQL with the default superuser.
const DefaultPostgresURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

// templateLockKey serialises template creation across the test binaries
// `go test ./...` runs in parallel ("tasktmpl" in ASCII).
const templateLockKey int64 = 0x7461736b746d706c

// Each runs fn as a parallel subtest per dialect, each with its own fresh,
// migrated database.
func Each(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, Open(t, d))
		})
	}
}

// Open returns a fresh, migrated database of the dialect ("sqlite" or
// "postgres"), closed and removed when the test ends. PostgreSQL tests are
// skipped when the server is unreachable, or fail when CI=true.
func Open(t testing.TB, dialect string) *storage.DB {
	t.Helper()
	switch dialect {
	case "sqlite", "sqlite3":
		return open(t, filepath.Join(t.TempDir(), "tasker.db"), true)
	case "postgres":
		return open(t, createDatabase(t, templateName(t)), false)
	default:
		t.Fatalf("storagetest: unknown dialect %q", dialect)
		return nil
	}
}

// PostgresURL returns the URL of a fresh, empty PostgreSQL database that is
// dropped when the test ends, for tests that start a server process that
// migrates for itself.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return createDatabase(t, "")
}

// MigratedPostgresURL returns the URL of a fresh, migrated PostgreSQL
// database that is dropped when the test ends, for tests that reach it by
// another way than Open, such as through a proxy.
func MigratedPostgresURL(t testing.TB) string {
	t.Helper()
	return createDatabase(t, templateName(t))
}

func open(t testing.TB, url string, needsMigration bool) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, url, storage.Options{})
	if err != nil {
		t.Fatalf("storagetest: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("storagetest: close: %v", err)
		}
	})
	if needsMigration {
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("storagetest: %v", err)
		}
	}
	return db
}

// baseURL is the PostgreSQL server to create test databases on.
func baseURL() string {
	if u := os.Getenv("TASKER_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// connect opens an admin connection to the base database. A single pgx
// connection rather than a database/sql pool, so nothing outlives the call
// for goleak to find.
func connect(t testing.TB) *pgx.Conn {
	t.Helper()
	if !slices.Contains(Dialects, "postgres") {
		t.Skip("TASKER_TEST_DIALECTS leaves PostgreSQL out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL())
	if err == nil {
		return conn
	}
	where := redact(baseURL())
	if os.Getenv("CI") == "true" {
		t.Fatalf("storagetest: PostgreSQL not reachable at %s (set TASKER_TEST_POSTGRES_URL): %v", where, err)
	}
	t.Skipf("!!! PostgreSQL not reachable at %s; PostgreSQL tests SKIPPED (set TASKER_TEST_POSTGRES_URL; CI=true makes this a failure): %v", where, err)
	return nil
}

// createDatabase creates a database cloned from template (PostgreSQL's
// default template when empty), registers its removal, and returns its URL.
func createDatabase(t testing.TB, template string) string {
	t.Helper()
	ctx := context.Background()
	conn := connect(t)
	defer conn.Close(ctx)
	name := "tasker_test_" + randomHex()
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		stmt += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("storagetest: %s: %v", stmt, err)
	}
	t.Cleanup(func() {
		conn := connect(t)
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("storagetest: drop database %s: %v", name, err)
		}
	})
	return databaseURL(t, name)
}

// templateReady records that this process has made sure the template
// exists, so later tests skip the lock.
var templateReady atomic.Bool

// templateName returns the name of the migrated template database for the
// current schema, creating it if needed. The name carries a hash of the
// schema, so a schema change gets a new template instead of a stale one.
func templateName(t testing.TB) string {
	t.Helper()
	name := "tasker_tmpl_" + schemaHash
	if templateReady.Load() {
		return name
	}
	ctx := context.Background()
	conn := connect(t)
	defer conn.Close(ctx)
	// Another test binary may be building the same template right now. The
	// lock is a session lock on this dedicated connection, released when
	// the connection closes.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		t.Fatalf("storagetest: template lock: %v", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatalf("storagetest: look up template: %v", err)
	}
	if !exists {
		buildTemplate(t, conn, name)
	}
	templateReady.Store(true)
	return name
}

// buildTemplate migrates a scratch database and renames it to name only when
// that succeeded, so a test binary killed halfway never leaves a
// half-migrated template behind for the others.
func buildTemplate(t testing.TB, conn *pgx.Conn, name string) {
	t.Helper()
	ctx := context.Background()
	scratch := pgx.Identifier{name + "_build"}.Sanitize()
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + scratch + " WITH (FORCE)",
		"CREATE DATABASE " + scratch,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("storagetest: %s: %v", stmt, err)
		}
	}
	db, err := storage.Open(ctx, databaseURL(t, name+"_build"), storage.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("storagetest: %v", err)
	}
	err = db.Migrate(ctx)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("storagetest: build template: %v", err)
	}
	stmt := "ALTER DATABASE " + scratch + " RENAME TO " + pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("storagetest: %s: %v", stmt, err)
	}
}

// schemaHash is a short hash of the PostgreSQL migrations built into the
// binary, so a new migration gets a new template instead of a stale one.
var schemaHash = hashMigrations()

func hashMigrations() string {
	ms, err := storage.EmbeddedMigrations(dialect.Postgres)
	if err != nil {
		panic("storagetest: " + err.Error())
	}
	h := sha256.New()
	for _, m := range ms {
		h.Write([]byte(m.Version + " " + m.Checksum + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// databaseURL is the base URL pointed at database name.
func databaseURL(t testing.TB, name string) string {
	t.Helper()
	u, err := url.Parse(baseURL())
	if err != nil {
		t.Fatalf("storagetest: TASKER_TEST_POSTGRES_URL is not a URL")
	}
	u.Path = "/" + name
	return u.String()
}

// redact drops the password from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(malformed URL)"
	}
	return u.Redacted()
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
