package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/fault"
)

// Sentinels for the storage outcomes the engine branches on, whatever the
// dialect. Errors from InterpretError wrap one of them and the original
// error, so errors.Is works for both.
var (
	// ErrNotFound: the row does not exist (ent.IsNotFound or sql.ErrNoRows).
	ErrNotFound = errors.New("storage: not found")
	// ErrUniqueViolation: a unique key or index refused the write, e.g. a
	// duplicate identity hash or idempotency key.
	ErrUniqueViolation = errors.New("storage: unique violation")
	// ErrForeignKeyViolation: the write references a row that does not exist
	// or removes one that is still referenced.
	ErrForeignKeyViolation = errors.New("storage: foreign key violation")
	// ErrSerialization: the transaction lost a serialization conflict or a
	// deadlock and may succeed if run again; Tx does so.
	ErrSerialization = errors.New("storage: serialization failure")
	// ErrUnavailable: the database could not be reached or refused to
	// serve for now (connection refused or dropped, server shutting down or
	// out of connections, SQLite file locked by another process); the same
	// call may succeed later. Errors of this kind also carry a
	// fault.Unavailable with a retry delay, so clients are told to try
	// again instead of seeing an internal error.
	ErrUnavailable = errors.New("storage: database unavailable")
)

// unavailableRetryAfter is the retry delay sent to clients while the
// database is unavailable: long enough not to hammer a recovering server,
// short enough that a restart of a few seconds costs little.
const unavailableRetryAfter = time.Second

// storageError carries a sentinel alongside the driver error it was made
// from, so callers match the sentinel and logs keep the driver's detail.
// For ErrUnavailable it also carries the domain error the server answers
// with, so the driver's detail stays in the logs and out of the client's
// message.
type storageError struct {
	kind  error
	err   error
	fault *fault.Error // nil but for ErrUnavailable
}

func newStorageError(kind, err error) *storageError {
	e := &storageError{kind: kind, err: err}
	if errors.Is(kind, ErrUnavailable) {
		// One per error rather than a shared value: a caller may add to
		// what it finds.
		e.fault = fault.Unavailablef(unavailableRetryAfter, "the database is unavailable; try again")
	}
	return e
}

func (e *storageError) Error() string { return e.kind.Error() + ": " + e.err.Error() }

func (e *storageError) Unwrap() []error {
	if e.fault != nil {
		return []error{e.kind, e.fault, e.err}
	}
	return []error{e.kind, e.err}
}

// InterpretError maps a driver or ent error to the sentinel it stands for,
// returning an error that wraps both. Errors that stand for none of them,
// nil, and errors already interpreted are returned unchanged. The end of the
// caller's context keeps its own meaning: a call cancelled or out of time
// while talking to the database is that, not an unavailable database.
func (db *DB) InterpretError(err error) error {
	var done *storageError
	switch {
	case err == nil, errors.As(err, &done),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case ent.IsNotFound(err), errors.Is(err, sql.ErrNoRows):
		return newStorageError(ErrNotFound, err)
	}
	var kind error
	if db.Dialect == dialect.Postgres {
		kind = interpretPostgresError(err)
	} else {
		kind = interpretSQLiteError(err)
	}
	if kind == nil && connectionLost(err) {
		kind = ErrUnavailable
	}
	if kind == nil {
		return err
	}
	return newStorageError(kind, err)
}

// connectionLost reports errors that say the connection to the database
// failed rather than the statement: whatever the dialect, these mean the
// database is out of reach for now.
func connectionLost(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		// The server went away in the middle of a message.
		errors.Is(err, io.ErrUnexpectedEOF) ||
		// Dial failures, timeouts of the socket (not of the caller's
		// context, handled before) and the rest of the network's
		// failures.
		errors.As(err, &opErr)
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
