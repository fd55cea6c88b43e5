package storage

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// stmtCacheSize is how many prepared statements each SQLite connection
// keeps. ent generates a few hundred distinct statements at most, and each
// prepared statement holds only its compiled program.
const stmtCacheSize = 256

// stmtCacheConnector opens SQLite connections that keep the statements they
// run prepared, so that SQLite parses and plans each distinct SQL text once
// per connection rather than once per execution. It wraps the connector of
// modernc.org/sqlite and is used through sql.OpenDB, so nothing is
// registered globally.
type stmtCacheConnector struct {
	inner driver.Connector
	size  int
	stats stmtCacheStats
}

// stmtCacheStats counts what the caches of one pool did, for tests and
// benchmarks.
type stmtCacheStats struct {
	hits      atomic.Int64 // a cached statement ran
	misses    atomic.Int64 // a statement was prepared and cached
	bypasses  atomic.Int64 // the SQL text is not cacheable and ran uncached
	busy      atomic.Int64 // the cached statement had open rows, so a one-off ran
	evictions atomic.Int64 // a statement left the cache to respect the bound
	drops     atomic.Int64 // a statement left the cache after an error
	closes    atomic.Int64 // a cached statement was finalized
}

// newStmtCacheConnector wraps inner with caches of size statements per
// connection.
func newStmtCacheConnector(inner driver.Connector, size int) *stmtCacheConnector {
	return &stmtCacheConnector{inner: inner, size: max(size, 1)}
}

// Connect implements driver.Connector.
func (c *stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	inner, ok := dc.(sqliteConn)
	if !ok {
		// The wrapper implements these interfaces unconditionally, so it
		// would change how database/sql drives a connection that lacks one.
		_ = dc.Close()
		return nil, fmt.Errorf("storage: SQLite connection %T lacks an interface the statement cache forwards", dc)
	}
	return &cachingConn{
		inner:   inner,
		size:    c.size,
		stats:   &c.stats,
		entries: make(map[string]*list.Element),
		lru:     list.New(),
	}, nil
}

// Driver implements driver.Connector. It is modernc.org/sqlite's own
// driver, so (*sql.DB).Driver reports the same value as with sql.Open.
func (c *stmtCacheConnector) Driver() driver.Driver { return c.inner.Driver() }

// sqliteConn is the set of interfaces every modernc.org/sqlite connection
// implements and database/sql uses; cachingConn implements each of them,
// mostly by forwarding. The driver does not implement NamedValueChecker,
// and cachingConn does not either: database/sql converts arguments the same
// way with or without the cache.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteStmt is what a statement must implement to be cached: every
// modernc.org/sqlite statement does.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// cachedStmt is one entry of a connection's cache.
type cachedStmt struct {
	query string
	stmt  sqliteStmt
	// rows are the open rows of the statement's running query, nil when
	// the statement is free. A busy statement is never run again, nor
	// evicted, until its rows close: closing them resets it.
	rows *cachingRows
}

// cachingConn is a SQLite connection with a bounded LRU cache of prepared
// statements keyed by their exact SQL text.
//
// It has no lock: database/sql uses a driver connection from one goroutine
// at a time and closes rows under the same per-connection lock as it runs
// statements, so the cache is never used concurrently.
type cachingConn struct {
	inner   sqliteConn
	size    int
	stats   *stmtCacheStats
	entries map[string]*list.Element // of *cachedStmt
	lru     *list.List               // most recently used first
	closed  bool
}

var (
	_ sqliteConn                            = (*cachingConn)(nil)
	_ driver.Connector                      = (*stmtCacheConnector)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*cachingRows)(nil)
	_ driver.RowsColumnTypeLength           = (*cachingRows)(nil)
	_ driver.RowsColumnTypeNullable         = (*cachingRows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*cachingRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*cachingRows)(nil)
	_ driver.RowsNextResultSet              = (*cachingRows)(nil)
)

// cacheable reports whether query may be cached: a single SELECT, INSERT,
// UPDATE, DELETE, REPLACE, WITH or VALUES statement, which is what ent
// sends. Scripts of several statements (migrations) are not cached, since
// the driver re-parses them on every run anyway; nor are PRAGMA, DDL or
// transaction control, which run rarely and would only take room, and some
// PRAGMAs of which do their work when prepared rather than when run. A text
// holding a ';' before its end counts as a script: a ';' inside a string
// literal or comment makes the statement bypass the cache needlessly, never
// wrongly; so does a leading comment.
func cacheable(query string) bool {
	q := strings.TrimRight(query, "; \t\r\n")
	if strings.IndexByte(q, ';') >= 0 {
		return false
	}
	q = strings.TrimLeft(q, " \t\r\n(")
	end := 0
	for end < len(q) && (q[end]|0x20 >= 'a' && q[end]|0x20 <= 'z') {
		end++
	}
	switch kw := q[:end]; {
	case strings.EqualFold(kw, "SELECT"), strings.EqualFold(kw, "INSERT"),
		strings.EqualFold(kw, "UPDATE"), strings.EqualFold(kw, "DELETE"),
		strings.EqualFold(kw, "REPLACE"), strings.EqualFold(kw, "WITH"),
		strings.EqualFold(kw, "VALUES"):
		return true
	}
	return false
}

// ExecContext implements driver.ExecerContext through the cache.
func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, err := c.acquire(ctx, query)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return c.inner.ExecContext(ctx, query, args)
	}
	res, err := e.stmt.ExecContext(ctx, args)
	c.release(e, err)
	return res, err
}

// QueryContext implements driver.QueryerContext through the cache.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	e, err := c.acquire(ctx, query)
	if err != nil {
		return nil, err
	}
	if e == nil {
		// The driver's own one-off statement, finalized when its rows close.
		return c.inner.QueryContext(ctx, query, args)
	}
	rows, err := e.stmt.QueryContext(ctx, args)
	if err != nil {
		c.release(e, err)
		return nil, err
	}
	e.rows = &cachingRows{Rows: rows, conn: c, entry: e}
	return e.rows, nil
}

// acquire returns the free cached statement for query, preparing and
// caching it on a miss, or nil when query is to run without the cache: it
// is not cacheable, or its statement is busy with open rows.
func (c *cachingConn) acquire(ctx context.Context, query string) (*cachedStmt, error) {
	if c.closed {
		return nil, driver.ErrBadConn
	}
	if el, ok := c.entries[query]; ok {
		e := el.Value.(*cachedStmt)
		if e.rows != nil {
			c.stats.busy.Add(1)
			return nil, nil
		}
		c.lru.MoveToFront(el)
		c.stats.hits.Add(1)
		return e, nil
	}
	if !cacheable(query) {
		c.stats.bypasses.Add(1)
		return nil, nil
	}
	ds, err := c.inner.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(sqliteStmt)
	if !ok {
		_ = ds.Close()
		c.stats.bypasses.Add(1)
		return nil, nil
	}
	c.stats.misses.Add(1)
	e := &cachedStmt{query: query, stmt: st}
	c.entries[query] = c.lru.PushFront(e)
	c.evict()
	return e, nil
}

// evict closes the least recently used free statements until the cache is
// within its bound. Busy statements are skipped, and they are always among
// the most recently used, so the cache exceeds its bound only while more
// queries than it holds have their rows open at once.
func (c *cachingConn) evict() {
	for el := c.lru.Back(); el != nil && c.lru.Len() > c.size; {
		prev := el.Prev()
		if e := el.Value.(*cachedStmt); e.rows == nil {
			c.remove(el)
			c.stats.evictions.Add(1)
		}
		el = prev
	}
}

// release marks e free after it ran with the outcome err. A statement whose
// run failed is dropped from the cache, unless the failure is a constraint
// violation, which says nothing about the statement or the connection: an
// interrupted or failed statement, or one of a connection gone bad, is never
// run again, and the next use prepares the query afresh.
func (c *cachingConn) release(e *cachedStmt, err error) {
	e.rows = nil
	if err == nil || c.closed || isConstraintError(err) {
		return
	}
	if el, ok := c.entries[e.query]; ok && el.Value == e {
		c.remove(el)
		c.stats.drops.Add(1)
	}
}

// remove takes el out of the cache and finalizes its statement, which must
// be free.
func (c *cachingConn) remove(el *list.Element) {
	e := c.lru.Remove(el).(*cachedStmt)
	delete(c.entries, e.query)
	_ = e.stmt.Close() // finalizing a reset statement returns its last error, already reported
	c.stats.closes.Add(1)
}

// isConstraintError reports whether err is SQLite's SQLITE_CONSTRAINT, of
// any kind.
func isConstraintError(err error) bool {
	var sqliteErr *sqlite.Error
	return errors.As(err, &sqliteErr) && sqliteErr.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// Close finalizes every cached statement, closing any rows still open on
// one first, then closes the connection.
func (c *cachingConn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*cachedStmt)
		if e.rows != nil {
			// database/sql closes rows before their connection; this is
			// only a guard against finalizing a statement they still use.
			errs = append(errs, e.rows.closeInner())
			e.rows = nil
		}
		errs = append(errs, e.stmt.Close())
		c.stats.closes.Add(1)
	}
	c.entries = nil
	c.lru.Init()
	errs = append(errs, c.inner.Close())
	return errors.Join(errs...)
}

// Unwrap returns the driver's connection, which modernc.org/sqlite's
// connection-level functions such as sqlite.Limit look for.
func (c *cachingConn) Unwrap() driver.Conn { return c.inner }

// Prepare implements driver.Conn. Explicitly prepared statements belong to
// the caller and bypass the cache.
func (c *cachingConn) Prepare(query string) (driver.Stmt, error) { return c.inner.Prepare(query) }

// PrepareContext implements driver.ConnPrepareContext, bypassing the cache.
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.inner.PrepareContext(ctx, query)
}

// Begin implements driver.Conn as the driver does, without the deprecated
// method: database/sql calls BeginTx.
func (c *cachingConn) Begin() (driver.Tx, error) {
	return c.inner.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx implements driver.ConnBeginTx. The driver's transactions run
// BEGIN (IMMEDIATE, per _txlock), COMMIT and ROLLBACK on the connection
// itself, outside the cache.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner.BeginTx(ctx, opts)
}

// Ping implements driver.Pinger.
func (c *cachingConn) Ping(ctx context.Context) error { return c.inner.Ping(ctx) }

// ResetSession implements driver.SessionResetter.
func (c *cachingConn) ResetSession(ctx context.Context) error { return c.inner.ResetSession(ctx) }

// IsValid implements driver.Validator.
func (c *cachingConn) IsValid() bool { return !c.closed && c.inner.IsValid() }

// cachingRows are the rows of a cached statement; closing them frees the
// statement for its next run.
type cachingRows struct {
	driver.Rows
	conn  *cachingConn
	entry *cachedStmt
	err   error // the first error of Next other than io.EOF
	done  bool  // closed, by Close or by the connection's Close
}

// Next implements driver.Rows, remembering a failure for Close.
func (r *cachingRows) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err != nil && !errors.Is(err, io.EOF) && r.err == nil {
		r.err = err
	}
	return err
}

// Close implements driver.Rows: it resets the statement and frees it.
func (r *cachingRows) Close() error {
	if r.done {
		return nil
	}
	err := r.closeInner()
	outcome := r.err
	if outcome == nil {
		outcome = err
	}
	r.conn.release(r.entry, outcome)
	return err
}

func (r *cachingRows) closeInner() error {
	r.done = true
	return r.Rows.Close()
}

// The methods of the optional rows interfaces forward to the driver's rows,
// falling back on what database/sql assumes of rows that lack the method,
// so that it treats the rows the same with or without the cache.

// HasNextResultSet implements driver.RowsNextResultSet.
func (r *cachingRows) HasNextResultSet() bool {
	if x, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return x.HasNextResultSet()
	}
	return false
}

// NextResultSet implements driver.RowsNextResultSet.
func (r *cachingRows) NextResultSet() error {
	if x, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return x.NextResultSet()
	}
	return io.EOF
}

// ColumnTypeDatabaseTypeName implements driver.RowsColumnTypeDatabaseTypeName.
func (r *cachingRows) ColumnTypeDatabaseTypeName(index int) string {
	if x, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return x.ColumnTypeDatabaseTypeName(index)
	}
	return ""
}

// ColumnTypeLength implements driver.RowsColumnTypeLength.
func (r *cachingRows) ColumnTypeLength(index int) (int64, bool) {
	if x, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return x.ColumnTypeLength(index)
	}
	return 0, false
}

// ColumnTypeNullable implements driver.RowsColumnTypeNullable.
func (r *cachingRows) ColumnTypeNullable(index int) (nullable, ok bool) {
	if x, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return x.ColumnTypeNullable(index)
	}
	return false, false
}

// ColumnTypePrecisionScale implements driver.RowsColumnTypePrecisionScale.
func (r *cachingRows) ColumnTypePrecisionScale(index int) (precision, scale int64, ok bool) {
	if x, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return x.ColumnTypePrecisionScale(index)
	}
	return 0, 0, false
}

// ColumnTypeScanType implements driver.RowsColumnTypeScanType.
func (r *cachingRows) ColumnTypeScanType(index int) reflect.Type {
	if x, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return x.ColumnTypeScanType(index)
	}
	return reflect.TypeFor[any]()
}
