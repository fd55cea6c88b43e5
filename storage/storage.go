package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"

	"github.com/taskerhq/tasker/ent"
)

// Options are the optional settings of Open; the zero value is a sensible
// default for both dialects.
type Options struct {
	// Synchronous is SQLite's synchronous mode: "NORMAL" (the default) loses
	// no committed transaction when the process crashes; "FULL" also survives
	// power loss, at the cost of an fsync per commit. Ignored on PostgreSQL,
	// where synchronous_commit is the server's setting.
	Synchronous string
	// BusyTimeout bounds how long a SQLite connection waits for a lock held by
	// another process, such as a CLI migration; default 5s. Writers of this
	// process never wait on it: they queue for the single writer connection.
	BusyTimeout time.Duration
	// ReadConns is the size of the SQLite reader pool; default
	// max(4, GOMAXPROCS).
	ReadConns int
	// MaxConns is the size of the PostgreSQL pool; default 20. Long-lived
	// users such as LISTEN and the sequencer each hold one connection of it.
	MaxConns int
}

// DB is an open database. On SQLite, Client and Writer are the single writer
// connection, and Reader and ReadDB the reader pool; on PostgreSQL both pairs
// are the same pool. Never use Client or Writer inside a Tx callback on
// SQLite: the callback already holds the only writer connection, and the call
// would wait for it forever.
type DB struct {
	// Dialect is ent's dialect name, dialect.SQLite or dialect.Postgres, for
	// code that needs per-dialect SQL.
	Dialect string
	// Client runs transactions and writes.
	Client *ent.Client
	// Reader runs reads outside transactions, so they never queue behind
	// SQLite's writer.
	Reader *ent.Client
	// Writer is the raw pool behind Client, for per-dialect SQL such as
	// claiming.
	Writer *sql.DB
	// ReadDB is the raw pool behind Reader.
	ReadDB *sql.DB
	// Location says where the database is, safe to log: the SQLite file path,
	// or the PostgreSQL URL without password or query parameters.
	Location string

	// group runs Tx on SQLite (group commit); nil on PostgreSQL, whose
	// backends commit concurrently by themselves.
	group *groupCommitter
}

// Open opens the database at rawURL: postgres:// or postgresql:// URLs select
// PostgreSQL; anything else is SQLite: sqlite:///abs/path.db,
// sqlite://rel.db, file:x.db or a plain path. Open does not migrate; call
// Migrate.
func Open(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	if strings.HasPrefix(rawURL, "postgres://") || strings.HasPrefix(rawURL, "postgresql://") {
		return openPostgres(ctx, rawURL, opts)
	}
	return openSQLite(ctx, rawURL, opts, stmtCacheSize)
}

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
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, pool)))
	return &DB{
		Dialect:  dialect.Postgres,
		Client:   client,
		Reader:   client,
		Writer:   pool,
		ReadDB:   pool,
		Location: location,
	}, nil
}

// openSQLite opens the SQLite pools, whose connections each cache up to
// stmtCache prepared statements; 0 turns the cache off.
func openSQLite(ctx context.Context, rawURL string, opts Options, stmtCache int) (*DB, error) {
	path, err := sqlitePath(rawURL)
	if err != nil {
		return nil, err
	}
	synchronous := strings.ToUpper(opts.Synchronous)
	switch synchronous {
	case "":
		synchronous = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return nil, fmt.Errorf("storage: SQLite synchronous mode %q is not NORMAL or FULL", opts.Synchronous)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	readConns := opts.ReadConns
	if readConns <= 0 {
		readConns = max(4, runtime.GOMAXPROCS(0))
	}

	// DSN parameters rather than statements after Open, so that every
	// connection the pools open gets them. Times are written in SQLite's
	// own format and converted to UTC, so text comparison is time order.
	params := func(pragmas ...string) string {
		q := url.Values{
			"_time_format": {"sqlite"},
			"_timezone":    {"UTC"},
			"_pragma": append([]string{
				fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()),
				"foreign_keys(1)",
			}, pragmas...),
		}
		return q.Encode()
	}

	// sql.OpenDB with a connector of our own, rather than sql.Open, so the
	// statement cache needs no global driver registration.
	openPool := func(dsn string) (*sql.DB, error) {
		connector, err := sqlite.NewConnector(dsn)
		if err != nil {
			return nil, err
		}
		if stmtCache > 0 {
			connector = newStmtCacheConnector(connector, stmtCache)
		}
		return sql.OpenDB(connector), nil
	}

	writer, err := openPool(path + "?" + params("journal_mode(wal)", "synchronous("+synchronous+")") + "&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	// One connection: SQLite has one writer, and queueing here is what keeps
	// writers from failing with SQLITE_BUSY. BEGIN IMMEDIATE takes the write
	// lock up front, so a writer in another process makes us wait for
	// busy_timeout instead of failing on the upgrade from read to write.
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// Connect the writer first: it switches the file to WAL, a persistent
	// setting the readers then find in place.
	if err := writer.PingContext(ctx); err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}

	reader, err := openPool(path + "?" + params("query_only(1)"))
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	reader.SetMaxOpenConns(readConns)
	reader.SetMaxIdleConns(readConns)
	if err := reader.PingContext(ctx); err != nil {
		_ = reader.Close()
		_ = writer.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}

	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.SQLite, writer)))
	return &DB{
		Dialect:  dialect.SQLite,
		Client:   client,
		Reader:   ent.NewClient(ent.Driver(entsql.OpenDB(dialect.SQLite, reader))),
		Writer:   writer,
		ReadDB:   reader,
		Location: path,
		group:    newGroupCommitter(client),
	}, nil
}

// sqlitePath extracts the file path from the SQLite URL forms Open accepts.
// Connection settings come from Options only, so query parameters are
// refused rather than half-honoured.
func sqlitePath(rawURL string) (string, error) {
	path := rawURL
	switch {
	case strings.HasPrefix(path, "sqlite://"):
		path = strings.TrimPrefix(path, "sqlite://")
	case strings.HasPrefix(path, "file:"):
		path = strings.TrimPrefix(path, "file:")
	}
	switch {
	case path == "":
		return "", errors.New("storage: empty SQLite path")
	case strings.Contains(path, "?"):
		return "", fmt.Errorf("storage: SQLite URL %q: query parameters are not supported; use Options", rawURL)
	case strings.Contains(path, ":memory:"), strings.Contains(path, "mode=memory"):
		// The writer and reader pools would each get their own database.
		return "", fmt.Errorf("storage: SQLite URL %q: in-memory databases are not supported; use a file", rawURL)
	}
	return path, nil
}

// Close closes the pools, the readers first so that the writer, as the last
// connection, checkpoints the SQLite WAL into the database file.
func (db *DB) Close() error {
	if db.group != nil {
		db.group.close()
	}
	if db.Reader == db.Client {
		return db.Client.Close()
	}
	return errors.Join(db.Reader.Close(), db.Client.Close())
}

// maxTxAttempts bounds the retries of Tx: a serialization failure or
// deadlock that survives this many attempts is contention to report, not to
// hide.
const maxTxAttempts = 5

// Tx runs fn in a transaction on Client, commits if fn returns nil and rolls
// back otherwise, and returns once that is done. On a serialization failure
// or deadlock (PostgreSQL SQLSTATE 40001, 40P01) it runs fn again, up to
// maxTxAttempts times in all, so fn must have no effects outside the
// transaction. On SQLite, concurrent calls share one transaction and one
// commit, each fn in a savepoint of its own (group commit); a fn there may
// also run again when the shared transaction fails. The error returned has
// been through InterpretError.
func (db *DB) Tx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := db.InterpretError(db.tx(ctx, fn))
		if err == nil || !errors.Is(err, ErrSerialization) || attempt == maxTxAttempts {
			return err
		}
		// Exponential backoff with full jitter, so the transactions that
		// collided do not collide again in lockstep.
		wait := time.Duration(rand.Int64N(int64(5*time.Millisecond) << attempt))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (db *DB) tx(ctx context.Context, fn func(tx *ent.Tx) error) (err error) {
	if db.group != nil {
		return db.group.Tx(ctx, fn)
	}
	tx, err := db.Client.Tx(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return fmt.Errorf("%w (rollback: %w)", err, rerr)
		}
		return err
	}
	return tx.Commit()
}
