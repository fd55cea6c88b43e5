package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
)

// sqliteDialect is the Dialect of SQLite: one writer connection whose
// BEGIN IMMEDIATE excludes every other writer, so nothing is locked row by
// row, and events are numbered in the transaction that appends them.
type sqliteDialect struct{}

var _ Dialect = sqliteDialect{}

func (sqliteDialect) Name() string { return dialect.SQLite }

func (sqliteDialect) LockForWrite(*entsql.Selector) {}

func (sqliteDialect) LockTasksOfSteps(*entsql.Selector, string) {}

func (sqliteDialect) ClaimCandidates(max int) int { return max }

func (sqliteDialect) ConcurrentWriters() bool { return false }

func (sqliteDialect) Replicated() bool { return false }

// NextSequence is the head's sequence plus one: the single writer
// connection serialises every writing transaction, so max+1 is dense and no
// other commit can take it.
func (sqliteDialect) NextSequence(ctx context.Context, tx *ent.Tx) (int64, error) {
	var rows []struct {
		Max sql.NullInt64 `json:"max"`
	}
	err := tx.Event.Query().Aggregate(ent.As(ent.Max(event.FieldSequence), "max")).Scan(ctx, &rows)
	if err != nil {
		return 0, fmt.Errorf("events: read head sequence: %w", err)
	}
	if len(rows) == 0 {
		return 1, nil
	}
	return rows[0].Max.Int64 + 1, nil
}

// SnapshotRead needs no isolation level: SQLite's read transactions are
// snapshots already (WAL).
func (sqliteDialect) SnapshotRead() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

func (sqliteDialect) BinaryCollation() string { return "" }

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

	// temp_store(2): the savepoint sub-journals of group commit (storage's
	// one writer runs each fn in a savepoint) stay in memory instead of
	// spilling to a temporary file, a write syscall per page a fn first
	// touches. They only undo a savepoint; crash recovery is the WAL's.
	writer, err := openPool(path + "?" + params("journal_mode(wal)", "synchronous("+synchronous+")", "temp_store(2)") + "&_txlock=immediate")
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

	client := ent.NewClient(ent.Driver(countingDriver{entsql.OpenDB(dialect.SQLite, writer)}))
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

// interpretSQLiteError returns the sentinel for a modernc.org/sqlite error,
// or nil. The driver turns on extended result codes, so constraint failures
// say which constraint.
//
// SQLITE_BUSY is ErrUnavailable, not ErrSerialization: within this process
// the single writer connection keeps it from happening, so it means another
// process (a CLI migration, a backup) held the file past busy_timeout, and
// the caller may try again once it is done; Tx must not retry it at once.
// SQLITE_IOERR is ErrUnavailable too, the operating system having failed a
// read, write, lock or sync that may succeed later, except the two extended
// codes that report damaged data, which trying again cannot fix.
func interpretSQLiteError(err error) error {
	var sqliteErr *sqlite.Error
	if !errors.As(err, &sqliteErr) {
		return nil
	}
	code := sqliteErr.Code()
	switch code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return ErrUniqueViolation
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return ErrForeignKeyViolation
	case sqlite3.SQLITE_IOERR_CORRUPTFS, sqlite3.SQLITE_IOERR_DATA:
		return nil
	}
	switch code & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_IOERR:
		return ErrUnavailable
	}
	return nil
}
