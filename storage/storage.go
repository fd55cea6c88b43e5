package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

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

// GroupCommits reports, on SQLite, how many transactions the group
// committer has committed and how many callers' Tx functions they carried;
// the second over the first is the mean group size. Both are 0 on
// PostgreSQL, which has no group commit.
func (db *DB) GroupCommits() (commits, functions int64) {
	if db.group == nil {
		return 0, 0
	}
	return db.group.commits.Load(), db.group.committedFns.Load()
}

// Pools returns the statistics of the database's connection pools by
// name: "writer" and "reader" on SQLite, "pool" on PostgreSQL, where both
// are one pool.
func (db *DB) Pools() map[string]sql.DBStats {
	if db.Writer == db.ReadDB {
		return map[string]sql.DBStats{"pool": db.Writer.Stats()}
	}
	return map[string]sql.DBStats{"writer": db.Writer.Stats(), "reader": db.ReadDB.Stats()}
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
//
// When ctx's span is recording, the call has a span of its own, its child
// (see TxName and txspan.go).
func (db *DB) Tx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		return db.tracedTx(ctx, span, fn)
	}
	_, err := db.txAttempts(ctx, fn)
	return err
}

// txAttempts is Tx without its span; it also returns how many times it
// ran fn's transaction.
func (db *DB) txAttempts(ctx context.Context, fn func(tx *ent.Tx) error) (int, error) {
	for attempt := 1; ; attempt++ {
		err := db.InterpretError(db.tx(ctx, fn))
		if err == nil || !errors.Is(err, ErrSerialization) || attempt == maxTxAttempts {
			return attempt, err
		}
		// Exponential backoff with full jitter, so the transactions that
		// collided do not collide again in lockstep.
		wait := time.Duration(rand.Int64N(int64(5*time.Millisecond) << attempt))
		select {
		case <-ctx.Done():
			return attempt, err
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
