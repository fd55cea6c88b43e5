package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/taskerhq/tasker/ent"
)

const postgresName = dialect.Postgres

// postgres is the Dialect of PostgreSQL: many writers at once under READ
// COMMITTED, so writers lock rows, claims skip locked tasks, and events are
// numbered after commit by the sequencer.
type postgres struct{}

var _ Dialect = postgres{}

func (postgres) Name() string { return postgresName }

// noKeyUpdate is FOR NO KEY UPDATE rather than FOR UPDATE: the lock an
// UPDATE of non-key columns takes anyway, which does not block inserts of
// rows that reference the locked one (transitions, child tasks).
func noKeyUpdate(o *entsql.LockOptions) { o.Strength = entsql.LockNoKeyUpdate }

func (postgres) LockForWrite(s *entsql.Selector) { s.ForUpdate(noKeyUpdate) }

// claimedTasks names the joined tasks: FOR ... OF must use the name the
// query gives the table, and the join would otherwise call it t1.
const claimedTasks = "claimed_tasks"

func (postgres) LockTasksOfSteps(s *entsql.Selector, taskColumn string) {
	t := entsql.Table("tasks").As(claimedTasks)
	s.Join(t).On(s.C(taskColumn), t.C("id"))
	s.ForUpdate(noKeyUpdate, entsql.WithLockTables(claimedTasks), entsql.WithLockAction(entsql.SkipLocked))
}

// ClaimCandidates reads four times what is wanted: concurrent claimers skip
// each other's locked tasks, and a claim that found every candidate taken
// would come back empty.
func (postgres) ClaimCandidates(max int) int { return 4 * max }

func (postgres) ConcurrentWriters() bool { return true }

func (postgres) Replicated() bool { return true }

func (postgres) NextSequence(context.Context, *ent.Tx) (int64, error) { return 0, nil }

// SnapshotRead is REPEATABLE READ: READ COMMITTED gives each statement a
// snapshot of its own.
func (postgres) SnapshotRead() *sql.TxOptions {
	return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
}

func (postgres) BinaryCollation() string { return ` COLLATE "C"` }

func openPostgres(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// The error would quote the URL, password included.
		return nil, errors.New("storage: malformed PostgreSQL URL")
	}
	location := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.User != nil {
		location = (&url.URL{Scheme: u.Scheme, User: url.User(u.User.Username()), Host: u.Host, Path: u.Path}).String()
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("storage: %w", err)
	}
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = 20
	}
	pool := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(_ context.Context, conn *pgx.Conn) error {
		// pgx returns timestamptz in time.Local; SQLite returns UTC. Make
		// both dialects hand back the same times.
		conn.TypeMap().RegisterType(&pgtype.Type{
			Name:  "timestamptz",
			OID:   pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		return nil
	}))
	pool.SetMaxOpenConns(maxConns)
	pool.SetMaxIdleConns(maxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("storage: connect to %s: %w", location, err)
	}
	client := ent.NewClient(ent.Driver(countingDriver{entsql.OpenDB(dialect.Postgres, pool)}))
	return &DB{
		Dialect:  dialect.Postgres,
		Client:   client,
		Reader:   client,
		Writer:   pool,
		ReadDB:   pool,
		Location: location,
	}, nil
}

// interpretPostgresError returns the sentinel for a pgx error, or nil.
// A connection attempt that failed is ErrUnavailable unless the server
// refused it for a reason that waiting will not fix, such as a wrong
// password or a missing database: that is a setup error to report as it is.
func interpretPostgresError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return postgresState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || errors.Is(err, pgconn.ErrConnClosed) {
		return ErrUnavailable
	}
	return nil
}

// postgresState returns the sentinel for a SQLSTATE, or nil.
func postgresState(code string) error {
	switch code {
	case "23505": // unique_violation
		return ErrUniqueViolation
	case "23503": // foreign_key_violation
		return ErrForeignKeyViolation
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return ErrSerialization
	case "57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now: starting up or in recovery
		"53300": // too_many_connections
		return ErrUnavailable
	}
	if strings.HasPrefix(code, "08") { // class 08: connection exception
		return ErrUnavailable
	}
	return nil
}
