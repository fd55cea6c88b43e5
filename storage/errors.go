package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"entgo.io/ent/dialect"

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
