package storage_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/namespace"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a namespace and a template to hang tasks on.
type fixture struct {
	ns   *ent.Namespace
	tmpl *ent.TaskTemplate
}

func setup(t *testing.T, db *storage.DB) fixture {
	t.Helper()
	ctx := t.Context()
	ns, err := db.Client.Namespace.Create().SetName("billing").Save(ctx)
	require.NoError(t, err)
	tmpl, err := db.Client.TaskTemplate.Create().
		SetNamespace(ns).
		SetName("invoice").
		SetVersion("1.0.0").
		SetMaxAttempts(3).
		SetBackoffInitialMs(100).
		SetBackoffMultiplier(2).
		SetBackoffMaxMs(10_000).
		SetBackoffJitter(0.1).
		SetLeaseDurationMs(30_000).
		SetExecutionTimeoutMs(0).
		SetContentHash("abc").
		Save(ctx)
	require.NoError(t, err)
	return fixture{ns: ns, tmpl: tmpl}
}

func createTask(t *testing.T, c *ent.Client, f fixture, mutate func(*ent.TaskCreate)) (*ent.Task, error) {
	t.Helper()
	create := c.Task.Create().
		SetTemplate(f.tmpl).
		SetNamespace(f.ns.Name).
		SetTemplateName(f.tmpl.Name).
		SetTemplateVersion(f.tmpl.Version).
		SetContext(json.RawMessage(`{"amount": 42}`)).
		SetCorrelationID("corr-1")
	if mutate != nil {
		mutate(create)
	}
	return create.Save(t.Context())
}

func createStep(t *testing.T, c *ent.Client, tk *ent.Task, name string, position int, parents ...*ent.Step) *ent.Step {
	t.Helper()
	s, err := c.Step.Create().
		SetTask(tk).
		SetNamespace(tk.Namespace).
		SetName(name).
		SetHandler("h_" + name).
		SetConfig(json.RawMessage(`{}`)).
		SetMaxAttempts(3).
		SetBackoffInitialMs(100).
		SetBackoffMultiplier(2).
		SetBackoffMaxMs(10_000).
		SetBackoffJitter(0.1).
		SetLeaseDurationMs(30_000).
		SetExecutionTimeoutMs(0).
		SetPendingParents(len(parents)).
		SetPosition(position).
		AddParents(parents...).
		Save(t.Context())
	require.NoError(t, err)
	return s
}

func TestOpenAndMigrate(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		require.NoError(t, db.Ready(ctx))

		// Migrating again changes nothing: the partial and descending
		// indexes read back from the database as they were declared.
		require.NoError(t, db.Migrate(ctx))
		plan, err := db.SchemaDrift(ctx)
		require.NoError(t, err)
		require.Empty(t, plan, "migrating again would change the schema")

		info, err := db.DurabilityInfo(ctx)
		require.NoError(t, err)
		if db.Dialect == dialect.Postgres {
			require.Contains(t, info, "synchronous_commit=")
		} else {
			require.Equal(t, "sqlite journal_mode=wal synchronous=NORMAL", info)
		}
	})
}

// TestRoundTrip writes a task with a small DAG through Client and reads it
// back through Reader: ids are time-ordered, times are UTC, JSON survives,
// and deleting the task takes its steps, edges and transitions with it.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		f := setup(t, db)
		runAt := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.FixedZone("CET", 3600))
		tk, err := createTask(t, db.Client, f, func(c *ent.TaskCreate) {
			c.SetTags(map[string]string{"team": "a"}).SetRunAt(runAt)
		})
		require.NoError(t, err)

		a := createStep(t, db.Client, tk, "a", 0)
		b := createStep(t, db.Client, tk, "b", 1)
		c := createStep(t, db.Client, tk, "c", 2, a, b)
		require.Negative(t, bytes.Compare(a.ID[:], b.ID[:]), "UUIDv7 ids are in creation order")
		require.Negative(t, bytes.Compare(b.ID[:], c.ID[:]), "UUIDv7 ids are in creation order")
		_, err = db.Client.TaskTransition.Create().SetTask(tk).SetToState("pending").Save(ctx)
		require.NoError(t, err)
		_, err = db.Client.StepTransition.Create().SetStep(c).SetTaskID(tk.ID).SetToState("pending").Save(ctx)
		require.NoError(t, err)

		got, err := db.Reader.Task.Query().Where(task.ID(tk.ID)).WithSteps(func(q *ent.StepQuery) {
			q.Order(ent.Asc(step.FieldPosition))
		}).Only(ctx)
		require.NoError(t, err)
		require.JSONEq(t, `{"amount": 42}`, string(got.Context))
		require.Equal(t, map[string]string{"team": "a"}, got.Tags)
		require.Equal(t, time.UTC, got.CreatedAt.Location())
		require.Equal(t, tk.CreatedAt, got.CreatedAt)
		require.True(t, runAt.Equal(*got.RunAt))
		require.Equal(t, time.UTC, got.RunAt.Location())
		require.Len(t, got.Edges.Steps, 3)
		require.Nil(t, got.Edges.Steps[0].Result, "no result yet reads as nil")

		parents, err := db.Reader.Step.Query().Where(step.ID(c.ID)).QueryParents().IDs(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []uuid.UUID{a.ID, b.ID}, parents)

		// Times bound as parameters compare in time order on both dialects.
		due, err := db.Reader.Task.Query().Where(task.RunAtLT(runAt.Add(time.Microsecond))).Count(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, due)
		due, err = db.Reader.Task.Query().Where(task.RunAtLT(runAt)).Count(ctx)
		require.NoError(t, err)
		require.Zero(t, due)

		require.NoError(t, db.Client.Task.DeleteOneID(tk.ID).Exec(ctx))
		for name, n := range map[string]func() (int, error){
			"steps":            func() (int, error) { return db.Reader.Step.Query().Count(ctx) },
			"step_edges":       func() (int, error) { return db.Reader.StepDependency.Query().Count(ctx) },
			"task_transitions": func() (int, error) { return db.Reader.TaskTransition.Query().Count(ctx) },
			"step_transitions": func() (int, error) { return db.Reader.StepTransition.Query().Count(ctx) },
		} {
			count, err := n()
			require.NoError(t, err)
			require.Zero(t, count, "%s left after deleting the task", name)
		}
	})
}

func TestSQLitePragmas(t *testing.T) {
	t.Parallel()
	for _, sync := range []string{"", "normal", "FULL"} {
		t.Run("synchronous="+sync, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "t.db"), storage.Options{Synchronous: sync})
			require.NoError(t, err)
			defer func() { require.NoError(t, db.Close()) }()

			want := map[string]int{"": 1, "normal": 1, "FULL": 2}[sync]
			pragma := func(pool interface {
				QueryRowContext(context.Context, string, ...any) *sql.Row
			}, name string) string {
				var v string
				require.NoError(t, pool.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v))
				return v
			}
			require.Equal(t, "wal", pragma(db.Writer, "journal_mode"))
			require.Equal(t, fmt.Sprint(want), pragma(db.Writer, "synchronous"))
			require.Equal(t, "1", pragma(db.Writer, "foreign_keys"))
			require.Equal(t, "5000", pragma(db.Writer, "busy_timeout"))
			require.Equal(t, "0", pragma(db.Writer, "query_only"))
			require.Equal(t, "wal", pragma(db.ReadDB, "journal_mode"))
			require.Equal(t, "1", pragma(db.ReadDB, "query_only"))
			require.Equal(t, 1, db.Writer.Stats().MaxOpenConnections)
			require.Greater(t, db.ReadDB.Stats().MaxOpenConnections, 1)

			_, err = db.ReadDB.ExecContext(ctx, "CREATE TABLE x (id integer)")
			require.Error(t, err, "the reader pool is read-only")
		})
	}
}

// TestSQLiteConcurrentWriters hammers the single writer connection from many
// goroutines, with readers alongside: no write may fail with SQLITE_BUSY.
func TestSQLiteConcurrentWriters(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	ctx := t.Context()
	const writers, txs = 8, 50

	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*txs)
	for w := range writers {
		wg.Go(func() {
			for i := range txs {
				errs <- db.Tx(ctx, func(tx *ent.Tx) error {
					if _, err := tx.Namespace.Create().SetName(fmt.Sprintf("ns-%d-%d", w, i)).Save(ctx); err != nil {
						return err
					}
					_, err := tx.Namespace.Query().Count(ctx)
					return err
				})
			}
		})
		wg.Go(func() {
			for range txs {
				_, err := db.Reader.Namespace.Query().Count(ctx)
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	n, err := db.Reader.Namespace.Query().Count(ctx)
	require.NoError(t, err)
	require.Equal(t, writers*txs, n)
}

func TestInterpretError(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		f := setup(t, db)

		_, err := db.Client.Namespace.Create().SetName("billing").Save(ctx)
		require.Error(t, err)
		ierr := db.InterpretError(err)
		require.ErrorIs(t, ierr, storage.ErrUniqueViolation)
		require.ErrorIs(t, ierr, err, "the original error stays reachable")
		require.True(t, ent.IsConstraintError(ierr))
		require.Same(t, ierr, db.InterpretError(ierr), "interpreting twice changes nothing")

		err = db.Tx(ctx, func(tx *ent.Tx) error {
			_, err := tx.Namespace.Create().SetName("billing").Save(ctx)
			return err
		})
		require.ErrorIs(t, err, storage.ErrUniqueViolation, "Tx interprets")

		_, err = db.Client.TaskTemplate.Create().
			SetNamespaceID(f.ns.ID + 1000).SetName("x").SetVersion("1.0.0").
			SetMaxAttempts(1).SetBackoffInitialMs(1).SetBackoffMultiplier(1).SetBackoffMaxMs(1).
			SetBackoffJitter(0).SetLeaseDurationMs(1).SetExecutionTimeoutMs(0).SetContentHash("h").
			Save(ctx)
		require.ErrorIs(t, db.InterpretError(err), storage.ErrForeignKeyViolation)

		_, err = db.Reader.Namespace.Get(ctx, f.ns.ID+1000)
		require.ErrorIs(t, db.InterpretError(err), storage.ErrNotFound)
		_, err = db.Reader.Namespace.Query().Where(namespace.Name("nope")).Only(ctx)
		require.ErrorIs(t, db.InterpretError(err), storage.ErrNotFound)

		plain := errors.New("plain")
		require.Same(t, plain, db.InterpretError(plain))
		require.NoError(t, db.InterpretError(nil))
	})
}

// TestDeduplicationIndexes checks the partial unique indexes the engine's
// deduplication relies on, on both dialects.
func TestDeduplicationIndexes(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		f := setup(t, db)
		withHash := func(c *ent.TaskCreate) { c.SetIdentityHash("h1") }

		first, err := createTask(t, db.Client, f, withHash)
		require.NoError(t, err)
		_, err = createTask(t, db.Client, f, withHash)
		require.ErrorIs(t, db.InterpretError(err), storage.ErrUniqueViolation, "two unfinished tasks with one identity")

		// Once finished, the same identity may run again.
		require.NoError(t, db.Client.Task.UpdateOne(first).SetState(task.StateComplete).SetFinishedAt(time.Now()).Exec(ctx))
		_, err = createTask(t, db.Client, f, withHash)
		require.NoError(t, err)

		// Idempotency keys are unique per namespace; tasks without one are not constrained.
		withKey := func(c *ent.TaskCreate) { c.SetIdempotencyKey("k1") }
		_, err = createTask(t, db.Client, f, withKey)
		require.NoError(t, err)
		_, err = createTask(t, db.Client, f, withKey)
		require.ErrorIs(t, db.InterpretError(err), storage.ErrUniqueViolation)
		_, err = createTask(t, db.Client, f, nil)
		require.NoError(t, err)
		_, err = createTask(t, db.Client, f, nil)
		require.NoError(t, err)
	})
}

func TestTx(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		boom := errors.New("boom")
		attempts := 0
		err := db.Tx(ctx, func(tx *ent.Tx) error {
			attempts++
			if _, err := tx.Namespace.Create().SetName("rolled-back").Save(ctx); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Equal(t, 1, attempts, "an error that is not a serialization failure is not retried")
		n, err := db.Reader.Namespace.Query().Count(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "rolled back")

		require.Panics(t, func() {
			_ = db.Tx(ctx, func(tx *ent.Tx) error { panic("boom") })
		})
		require.NoError(t, db.Tx(ctx, func(tx *ent.Tx) error {
			return tx.Namespace.Create().SetName("after-panic").Exec(ctx)
		}), "a panic releases the connection")
	})
}

func TestTxRetriesSerializationFailure(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := t.Context()

	attempts := 0
	err := db.Tx(ctx, func(tx *ent.Tx) error {
		attempts++
		if err := tx.Namespace.Create().SetName(fmt.Sprintf("try-%d", attempts)).Exec(ctx); err != nil {
			return err
		}
		if attempts < 3 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, attempts)
	names, err := db.Reader.Namespace.Query().Select(namespace.FieldName).Strings(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"try-3"}, names, "failed attempts rolled back")

	attempts = 0
	err = db.Tx(ctx, func(tx *ent.Tx) error {
		attempts++
		return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
	})
	require.ErrorIs(t, err, storage.ErrSerialization)
	require.Equal(t, 5, attempts, "retries are bounded")
}

// TestMigrateConcurrently starts two "replicas" on one fresh PostgreSQL
// database at once: the advisory lock makes one wait for the other, and
// both succeed.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := storagetest.PostgresURL(t)
	ctx := t.Context()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		db, err := storage.Open(ctx, url, storage.Options{MaxConns: 4})
		require.NoError(t, err)
		defer func() { require.NoError(t, db.Close()) }()
		wg.Go(func() { errs[i] = db.Migrate(ctx) })
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])

	db, err := storage.Open(ctx, url, storage.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	require.NoError(t, db.Ready(ctx))
	var held int
	require.NoError(t, db.ReadDB.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&held))
	require.Zero(t, held, "the migration lock was released")
}

func TestReady(t *testing.T) {
	t.Parallel()
	for _, d := range storagetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			url := filepath.Join(t.TempDir(), "t.db")
			if d == "postgres" {
				url = storagetest.PostgresURL(t)
			}
			db, err := storage.Open(ctx, url, storage.Options{})
			require.NoError(t, err)
			defer func() { require.NoError(t, db.Close()) }()

			require.ErrorIs(t, db.Ready(ctx), storage.ErrNotMigrated)
			require.NoError(t, db.Migrate(ctx))
			require.NoError(t, db.Ready(ctx))
		})
	}
}

func TestOpenURLs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	for _, url := range []string{
		"sqlite://" + filepath.Join(dir, "a.db"),
		"file:" + filepath.Join(dir, "b.db"),
		filepath.Join(dir, "c.db"),
	} {
		db, err := storage.Open(ctx, url, storage.Options{})
		require.NoError(t, err, url)
		require.Equal(t, dialect.SQLite, db.Dialect)
		require.True(t, strings.HasPrefix(db.Location, dir), db.Location)
		require.NoError(t, db.Close())
	}
	for _, url := range []string{
		":memory:",
		"file::memory:?cache=shared",
		"sqlite://" + filepath.Join(dir, "d.db") + "?_pragma=foreign_keys(0)",
		"",
	} {
		_, err := storage.Open(ctx, url, storage.Options{})
		require.Error(t, err, url)
	}
	_, err := storage.Open(ctx, filepath.Join(dir, "e.db"), storage.Options{Synchronous: "OFF"})
	require.ErrorContains(t, err, "synchronous")

	// The location of a PostgreSQL database never shows the password, even
	// when the connection fails.
	_, err = storage.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=1", storage.Options{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}

// TestInsertRows writes more rows than one statement may bind (split into
// several INSERTs), binds times and strings as ent does, and refuses a row
// of the wrong width without writing anything.
func TestInsertRows(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		at := time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)
		const n = 10_001 // three columns: two statements of at most 10,000 rows
		rows := make([][]any, n)
		for i := range rows {
			rows[i] = []any{fmt.Sprintf("ns-%05d", i), "bulk", at}
		}
		columns := []string{namespace.FieldName, namespace.FieldDescription, namespace.FieldCreatedAt}
		require.NoError(t, db.Tx(ctx, func(tx *ent.Tx) error {
			return storage.InsertRows(ctx, tx, db.SQL(), namespace.Table, columns, rows)
		}))
		got, err := db.Reader.Namespace.Query().Where(namespace.Description("bulk")).Count(ctx)
		require.NoError(t, err)
		require.Equal(t, n, got)
		last, err := db.Reader.Namespace.Query().Where(namespace.Name(fmt.Sprintf("ns-%05d", n-1))).Only(ctx)
		require.NoError(t, err)
		require.True(t, at.Equal(last.CreatedAt), "time as bound: %v", last.CreatedAt)

		err = db.Tx(ctx, func(tx *ent.Tx) error {
			return storage.InsertRows(ctx, tx, db.SQL(), namespace.Table, columns, [][]any{{"short", "row"}})
		})
		require.ErrorContains(t, err, "a row of 2 values for 3 columns")
		exists, err := db.Reader.Namespace.Query().Where(namespace.Name("short")).Exist(ctx)
		require.NoError(t, err)
		require.False(t, exists)
	})
}

// TestInterpretUnavailable: errors that say the database is out of reach
// become ErrUnavailable with a fault.Unavailable and a retry delay; the
// caller's own cancellation and errors that waiting will not fix stay what
// they are.
func TestInterpretUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pg := storagetest.Open(t, "postgres")
	lite := storagetest.Open(t, "sqlite")

	// Real connection failures: nothing listens on the port, and a server
	// that refuses the database named.
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := lis.Addr().String()
	require.NoError(t, lis.Close())
	_, refused := pgx.Connect(ctx, "postgres://postgres@"+closedAddr+"/x?sslmode=disable&connect_timeout=5")
	require.Error(t, refused)
	var noDB error
	var conn *pgx.Conn
	conn, noDB = pgx.Connect(ctx, strings.Replace(storagetest.MigratedPostgresURL(t), "tasker_test_", "missing_", 1))
	require.Nil(t, conn)
	require.Error(t, noDB)

	unavailable := map[string]error{
		"refused connect":      refused,
		"connection refused":   &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		"connection reset":     fmt.Errorf("read: %w", syscall.ECONNRESET),
		"broken pipe":          fmt.Errorf("write: %w", syscall.EPIPE),
		"cut mid-message":      fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF),
		"bad connection":       driver.ErrBadConn,
		"pgx conn closed":      fmt.Errorf("query: %w", pgconn.ErrConnClosed),
		"08006":                &pgconn.PgError{Code: "08006", Message: "connection failure"},
		"57P01 admin shutdown": &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"},
		"57P02 crash shutdown": &pgconn.PgError{Code: "57P02"},
		"57P03 starting up":    &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"},
		"53300 too many":       &pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"},
	}
	for name, err := range unavailable {
		got := pg.InterpretError(err)
		require.ErrorIs(t, got, storage.ErrUnavailable, name)
		require.ErrorIs(t, got, err, "%s: the driver's error stays reachable", name)
		fe, ok := fault.As(got)
		require.True(t, ok, name)
		require.Equal(t, fault.Unavailable, fe.Code, name)
		require.Positive(t, fe.RetryAfter, name)
		require.NotContains(t, fe.Message, err.Error(), "%s: the driver's detail is not for clients", name)
	}

	stays := map[string]error{
		"missing database": noDB,
		"syntax error":     &pgconn.PgError{Code: "42601"},
		"cancelled":        fmt.Errorf("query: %w (%w)", context.Canceled, syscall.ECONNRESET),
		"deadline":         &net.OpError{Op: "read", Err: fmt.Errorf("timeout: %w", context.DeadlineExceeded)},
	}
	for name, err := range stays {
		got := pg.InterpretError(err)
		require.NotErrorIs(t, got, storage.ErrUnavailable, name)
		_, ok := fault.As(got)
		require.False(t, ok, name)
	}
	require.ErrorIs(t, lite.InterpretError(driver.ErrBadConn), storage.ErrUnavailable, "connection errors on either dialect")
}

// TestSQLiteBusyIsUnavailable: a write that waited busy_timeout for another
// process's lock on the file answers ErrUnavailable, and Tx does not retry
// it at once.
func TestSQLiteBusyIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "busy.db")
	db, err := storage.Open(ctx, path, storage.Options{BusyTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	require.NoError(t, db.Migrate(ctx))

	// Another process's writer, as far as SQLite can tell: a connection
	// outside db's pools that holds the write lock.
	other, err := storage.Open(ctx, path, storage.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, other.Close()) }()
	lock, err := other.Writer.Conn(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, lock.Close()) }()
	_, err = lock.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(t, err)
	defer func() { _, _ = lock.ExecContext(context.WithoutCancel(ctx), "ROLLBACK") }()

	attempts := 0
	err = db.Tx(ctx, func(tx *ent.Tx) error {
		attempts++
		return tx.Namespace.Create().SetName("blocked").Exec(ctx)
	})
	require.ErrorIs(t, err, storage.ErrUnavailable)
	require.Equal(t, fault.Unavailable, fault.CodeOf(err))
	require.LessOrEqual(t, attempts, 1)
}
