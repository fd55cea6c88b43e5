package storage

import (
	"database/sql"
	"errors"

	"entgo.io/ent/dialect"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/taskerhq/tasker/ent"
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
)

// storageError carries a sentinel alongside the driver error it was made
// from, so callers match the sentinel and logs keep the driver's detail.
type storageError struct {
	kind error
	err  error
}

func (e *storageError) Error() string   { return e.kind.Error() + ": " + e.err.Error() }
func (e *storageError) Unwrap() []error { return []error{e.kind, e.err} }

// InterpretError maps a driver or ent error to the sentinel it stands for,
// returning an error that wraps both. Errors that stand for none of them,
// nil, and errors already interpreted are returned unchanged.
func (db *DB) InterpretError(err error) error {
	var done *storageError
	switch {
	case err == nil, errors.As(err, &done):
		return err
	case ent.IsNotFound(err), errors.Is(err, sql.ErrNoRows):
		return &storageError{kind: ErrNotFound, err: err}
	}
	var kind error
	if db.Dialect == dialect.Postgres {
		kind = interpretPostgresError(err)
	} else {
		kind = interpretSQLiteError(err)
	}
	if kind == nil {
		return err
	}
	return &storageError{kind: kind, err: err}
}

// interpretPostgresError returns the sentinel for a pgx error, or nil.
func interpretPostgresError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return nil
	}
	switch pgErr.Code {
	case "23505": // unique_violation
		return ErrUniqueViolation
	case "23503": // foreign_key_violation
		return ErrForeignKeyViolation
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return ErrSerialization
	}
	return nil
}

// interpretSQLiteError returns the sentinel for a modernc.org/sqlite error,
// or nil. The driver turns on extended result codes, so constraint failures
// say which constraint. SQLITE_BUSY is deliberately not ErrSerialization:
// the single writer connection is what keeps it from happening, and retrying
// would hide a broken setup.
func interpretSQLiteError(err error) error {
	var sqliteErr *sqlite.Error
	if !errors.As(err, &sqliteErr) {
		return nil
	}
	switch sqliteErr.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return ErrUniqueViolation
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return ErrForeignKeyViolation
	}
	return nil
}
