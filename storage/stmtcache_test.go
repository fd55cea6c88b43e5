package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// cacheStats returns the statement cache statistics of pool, which all its
// connections share.
func cacheStats(t testing.TB, pool *sql.DB) *stmtCacheStats {
	t.Helper()
	var stats *stmtCacheStats
	withCachingConn(t, pool, func(c *cachingConn) { stats = c.stats })
	return stats
}

// withCachingConn runs fn on a connection of pool.
func withCachingConn(t testing.TB, pool *sql.DB, fn func(c *cachingConn)) {
	t.Helper()
	conn, err := pool.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	onCachingConn(t, conn, fn)
}

// onCachingConn runs fn on conn's driver connection.
func onCachingConn(t testing.TB, conn *sql.Conn, fn func(c *cachingConn)) {
	t.Helper()
	require.NoError(t, conn.Raw(func(dc any) error {
		c, ok := dc.(*cachingConn)
		if !ok {
			return fmt.Errorf("driver connection %T", dc)
		}
		fn(c)
		return nil
	}))
}

// snapshot is a copy of stmtCacheStats, for comparing.
type snapshot struct {
	hits, misses, bypasses, busy, evictions, drops, closes int64
}

func (s *stmtCacheStats) snapshot() snapshot {
	return snapshot{
		hits:      s.hits.Load(),
		misses:    s.misses.Load(),
		bypasses:  s.bypasses.Load(),
		busy:      s.busy.Load(),
		evictions: s.evictions.Load(),
		drops:     s.drops.Load(),
		closes:    s.closes.Load(),
	}
}

func (s snapshot) minus(o snapshot) snapshot {
	return snapshot{
		hits:      s.hits - o.hits,
		misses:    s.misses - o.misses,
		bypasses:  s.bypasses - o.bypasses,
		busy:      s.busy - o.busy,
		evictions: s.evictions - o.evictions,
		drops:     s.drops - o.drops,
		closes:    s.closes - o.closes,
	}
}

// openTestSQLite opens a SQLite database in a temporary directory with
// caches of size statements per connection (0: no cache) and the table
// items. When the test ends it closes the database and, with a cache,
// checks that every statement the caches prepared has been finalized.
func openTestSQLite(t testing.TB, size int, opts Options) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := openSQLite(ctx, filepath.Join(t.TempDir(), "cache.db"), opts, size)
	require.NoError(t, err)
	var stats []*stmtCacheStats
	if size > 0 {
		stats = []*stmtCacheStats{cacheStats(t, db.Writer), cacheStats(t, db.ReadDB)}
	}
	t.Cleanup(func() {
		require.NoError(t, db.Close())
		for _, s := range stats {
			require.Equal(t, s.misses.Load(), s.closes.Load(), "statements prepared and finalized")
		}
	})
	_, err = db.Writer.ExecContext(ctx, `
		CREATE TABLE items (
			id INTEGER PRIMARY KEY,
			name TEXT NOT NULL UNIQUE,
			n INTEGER NOT NULL,
			at DATETIME
		);
		CREATE INDEX items_n ON items (n)`)
	require.NoError(t, err)
	return db
}

func TestCacheable(t *testing.T) {
	t.Parallel()
	for query, want := range map[string]bool{
		"SELECT 1":                             true,
		"select 1;":                            true,
		"  \n\tINSERT INTO x VALUES (?) ; \n":  true,
		"UPDATE x SET a = ?":                   true,
		"DELETE FROM x":                        true,
		"REPLACE INTO x VALUES (1)":            true,
		"WITH a AS (SELECT 1) SELECT * FROM a": true,
		"(SELECT 1) UNION (SELECT 2)":          true,
		"VALUES (1), (2)":                      true,
		"SELECT 1; SELECT 2":                   false,
		"INSERT INTO x VALUES (1); INSERT INTO x VALUES (2);": false,
		"SELECT ';'":                           false, // needlessly, but harmlessly
		"PRAGMA foreign_keys":                  false,
		"BEGIN IMMEDIATE":                      false,
		"COMMIT":                               false,
		"ROLLBACK":                             false,
		"SAVEPOINT a":                          false,
		"CREATE TABLE x (a int)":               false,
		"-- comment\nSELECT 1":                 false,
		"":                                     false,
		";":                                    false,
		"SELECTED":                             false,
		"ALTER TABLE x ADD COLUMN b TEXT":      false,
		"EXPLAIN QUERY PLAN SELECT 1":          false,
		"ATTACH DATABASE 'x.db' AS x":          false,
		"INSERT INTO x VALUES (1) RETURNING a": true,
	} {
		require.Equal(t, want, cacheable(query), "%q", query)
	}
}

func TestStmtCacheHits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openTestSQLite(t, stmtCacheSize, Options{})
	stats := cacheStats(t, db.Writer)
	before := stats.snapshot()

	const runs = 10
	for i := range runs {
		_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n) VALUES (?, ?)", fmt.Sprint("item-", i), i)
		require.NoError(t, err)
	}
	for i := range runs {
		var name string
		require.NoError(t, db.Writer.QueryRowContext(ctx, "SELECT name FROM items WHERE n = ?", i).Scan(&name))
		require.Equal(t, fmt.Sprint("item-", i), name)
	}
	got := stats.snapshot().minus(before)
	require.Equal(t, snapshot{hits: 2 * (runs - 1), misses: 2}, got)

	// A script and a PRAGMA run uncached, and still work.
	_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n) VALUES ('a', 100); INSERT INTO items (name, n) VALUES ('b', 101)")
	require.NoError(t, err)
	var fk int
	require.NoError(t, db.Writer.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk))
	require.Equal(t, 1, fk)
	var count int
	require.NoError(t, db.Writer.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&count))
	require.Equal(t, runs+2, count)
	got = stats.snapshot().minus(before)
	require.Equal(t, int64(2), got.bypasses)
	require.Equal(t, int64(3), got.misses)

	// The reader pool caches too, and sees the writer's rows.
	readStats := cacheStats(t, db.ReadDB)
	readBefore := readStats.snapshot()
	for range runs {
		require.NoError(t, db.ReadDB.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&count))
		require.Equal(t, runs+2, count)
	}
	got = readStats.snapshot().minus(readBefore)
	require.Equal(t, int64(runs), got.hits+got.misses)
	require.Positive(t, got.hits)
}

// TestStmtCacheNestedQuery runs a query again, on the same connection, while
// the rows of its first run are open: the second run must not reuse the
// busy statement, and both must read their own results.
func TestStmtCacheNestedQuery(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openTestSQLite(t, stmtCacheSize, Options{})
	for i := range 10 {
		_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n) VALUES (?, ?)", fmt.Sprint("item-", i), i%2)
		require.NoError(t, err)
	}
	stats := cacheStats(t, db.Writer)
	conn, err := db.Writer.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()

	const query = "SELECT name FROM items WHERE n = ? ORDER BY id"
	names := func(rows *sql.Rows) []string {
		t.Helper()
		var out []string
		for rows.Next() {
			var name string
			require.NoError(t, rows.Scan(&name))
			out = append(out, name)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		return out
	}
	before := stats.snapshot()
	outer, err := conn.QueryContext(ctx, query, 0)
	require.NoError(t, err)
	var outerNames []string
	for outer.Next() {
		var name string
		require.NoError(t, outer.Scan(&name))
		outerNames = append(outerNames, name)

		inner, err := conn.QueryContext(ctx, query, 1) //nolint:rowserrcheck,sqlclosecheck // names checks Err and closes
		require.NoError(t, err)
		require.Equal(t, []string{"item-1", "item-3", "item-5", "item-7", "item-9"}, names(inner))
		// The same text through Exec, while the statement is busy.
		_, err = conn.ExecContext(ctx, query, 1)
		require.NoError(t, err)
	}
	require.NoError(t, outer.Err())
	require.NoError(t, outer.Close()) //nolint:sqlclosecheck // closed here: the test checks what closing frees
	require.Equal(t, []string{"item-0", "item-2", "item-4", "item-6", "item-8"}, outerNames)
	got := stats.snapshot().minus(before)
	require.Equal(t, snapshot{misses: 1, busy: 10}, got)

	// Closed, the rows freed the statement for the next run.
	rows, err := conn.QueryContext(ctx, query, 1) //nolint:rowserrcheck,sqlclosecheck // names checks Err and closes
	require.NoError(t, err)
	require.Len(t, names(rows), 5)
	require.Equal(t, int64(1), stats.snapshot().minus(before).hits)
}

// TestStmtCacheEviction runs more distinct statements than the cache holds.
func TestStmtCacheEviction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const size = 4
	db := openTestSQLite(t, size, Options{})
	for i := range 10 {
		_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n) VALUES (?, ?)", fmt.Sprint("item-", i), i)
		require.NoError(t, err)
	}
	stats := cacheStats(t, db.Writer)
	// The writer pool has one connection: use it throughout.
	conn, err := db.Writer.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	cacheLen := func() (n int) {
		onCachingConn(t, conn, func(c *cachingConn) {
			require.Len(t, c.entries, c.lru.Len())
			n = c.lru.Len()
		})
		return n
	}
	require.LessOrEqual(t, cacheLen(), size)
	// Rows of a statement stay open while more statements than the cache
	// holds run: the busy statement must not be finalized under them.
	busy, err := conn.QueryContext(ctx, "SELECT n FROM items ORDER BY n")
	require.NoError(t, err)
	require.True(t, busy.Next())

	before := stats.snapshot()
	const distinct = 20
	for round := range 2 {
		for i := range distinct {
			var sum int
			query := fmt.Sprintf("SELECT n + %d FROM items WHERE n = ?", i)
			require.NoError(t, conn.QueryRowContext(ctx, query, i%10).Scan(&sum))
			require.Equal(t, i+i%10, sum, "round %d, query %d", round, i)
		}
	}
	got := stats.snapshot().minus(before)
	require.Equal(t, int64(2*distinct), got.misses, "each query was evicted before it ran again")
	require.Equal(t, size, cacheLen())
	// The cache held the busy SELECT and the INSERT, then took 40 more and
	// kept the busy one and the last three.
	require.Equal(t, int64(2+2*distinct-size), got.evictions)
	require.Equal(t, got.evictions, got.closes)

	var ns []int
	for {
		var n int
		require.NoError(t, busy.Scan(&n))
		ns = append(ns, n)
		if !busy.Next() {
			break
		}
	}
	require.NoError(t, busy.Err())
	require.NoError(t, busy.Close()) //nolint:sqlclosecheck // closed here: the test checks what closing frees
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ns)
	require.Equal(t, size, cacheLen())
}

// TestStmtCacheErrors: a constraint violation keeps the statement cached;
// other failures drop it, and the next run prepares it again.
func TestStmtCacheErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openTestSQLite(t, stmtCacheSize, Options{})
	stats := cacheStats(t, db.Writer)
	before := stats.snapshot()

	const insert = "INSERT INTO items (name, n) VALUES (?, ?)"
	_, err := db.Writer.ExecContext(ctx, insert, "a", 1)
	require.NoError(t, err)
	_, err = db.Writer.ExecContext(ctx, insert, "a", 2)
	require.ErrorIs(t, db.InterpretError(err), ErrUniqueViolation)
	_, err = db.Writer.ExecContext(ctx, insert, "b", 2)
	require.NoError(t, err)
	require.Equal(t, snapshot{hits: 2, misses: 1}, stats.snapshot().minus(before))

	// The same through a query, with the failure in Next: RETURNING.
	const returning = "INSERT INTO items (name, n) VALUES (?, ?) RETURNING id"
	var id int64
	err = db.Writer.QueryRowContext(ctx, returning, "a", 3).Scan(&id)
	require.ErrorIs(t, db.InterpretError(err), ErrUniqueViolation)
	require.NoError(t, db.Writer.QueryRowContext(ctx, returning, "c", 3).Scan(&id))
	require.Equal(t, int64(3), id)
	require.Equal(t, snapshot{hits: 3, misses: 2}, stats.snapshot().minus(before))

	// A failure of the statement itself drops it.
	const parse = "SELECT json(?)"
	var doc string
	require.Error(t, db.Writer.QueryRowContext(ctx, parse, "{not json").Scan(&doc))
	require.NoError(t, db.Writer.QueryRowContext(ctx, parse, `{"a":1}`).Scan(&doc))
	require.JSONEq(t, `{"a":1}`, doc)
	got := stats.snapshot().minus(before)
	require.Equal(t, int64(1), got.drops)
	require.Equal(t, int64(4), got.misses)

	// So does a canceled context.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	conn, err := db.Writer.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(canceled, insert, "d", 4)
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, conn.Close())
	require.Equal(t, int64(2), stats.snapshot().minus(before).drops)
	_, err = db.Writer.ExecContext(ctx, insert, "d", 4)
	require.NoError(t, err)
	var count int
	require.NoError(t, db.Writer.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&count))
	require.Equal(t, 4, count)
}

// TestStmtCacheTx: statements cached outside a transaction run inside one,
// a rollback undoes them, and transactions still begin IMMEDIATE.
func TestStmtCacheTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openTestSQLite(t, stmtCacheSize, Options{})
	stats := cacheStats(t, db.Writer)
	const insert = "INSERT INTO items (name, n) VALUES (?, ?)"
	const count = "SELECT count(*) FROM items"
	_, err := db.Writer.ExecContext(ctx, insert, "outside", 0)
	require.NoError(t, err)
	n := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) (n int) {
		require.NoError(t, q.QueryRowContext(ctx, count).Scan(&n))
		return n
	}
	require.Equal(t, 1, n(db.Writer))
	before := stats.snapshot()

	tx, err := db.Writer.BeginTx(ctx, nil)
	require.NoError(t, err)
	// The transaction took the write lock at BEGIN: another connection,
	// not waiting for locks, cannot begin one.
	other, err := sql.Open("sqlite", db.Location+"?_pragma=busy_timeout(0)&_txlock=immediate")
	require.NoError(t, err)
	defer other.Close()
	_, err = other.BeginTx(ctx, nil)
	var sqliteErr *sqlite.Error
	require.ErrorAs(t, err, &sqliteErr)
	require.Equal(t, sqlite3.SQLITE_BUSY, sqliteErr.Code()&0xff)

	for i := range 3 {
		_, err = tx.ExecContext(ctx, insert, fmt.Sprint("inside-", i), i)
		require.NoError(t, err)
	}
	require.Equal(t, 4, n(tx))
	require.NoError(t, tx.Rollback())
	require.Equal(t, 1, n(db.Writer))
	require.Equal(t, 1, n(db.ReadDB))
	require.Equal(t, snapshot{hits: 5}, stats.snapshot().minus(before))

	tx, err = db.Writer.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, insert, "committed", 1)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	require.Equal(t, 2, n(db.Writer))
	require.Equal(t, 2, n(db.ReadDB))
}

// TestStmtCacheBinding stores values of every type database/sql hands the
// driver, times above all, with and without the cache: both must store the
// same bytes and read back the same values.
func TestStmtCacheBinding(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	values := []any{
		time.Date(2024, 3, 31, 1, 59, 59, 123456789, time.UTC),
		time.Date(2024, 3, 31, 3, 0, 0, 1, berlin),
		time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", -7*3600-1800)),
		time.Time{},
		time.Now(),
		[]byte("bytes\x00with nul"),
		[]byte{},
		nil,
		int64(-1 << 62),
		3.25,
		true,
		false,
		"text",
		"",
	}
	type stored struct {
		typ, text string
		value     any
	}
	read := func(size int) []stored {
		db := openTestSQLite(t, size, Options{})
		// Each value twice, so the cache also binds it into a statement
		// it already ran.
		for i, v := range append(values, values...) {
			_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n, at) VALUES (?, ?, ?)", fmt.Sprint(i), i, v)
			require.NoError(t, err)
		}
		rows, err := db.ReadDB.QueryContext(ctx, "SELECT typeof(at), CAST(at AS TEXT), at FROM items ORDER BY n")
		require.NoError(t, err)
		defer rows.Close()
		var out []stored
		for rows.Next() {
			var s stored
			var text sql.NullString
			require.NoError(t, rows.Scan(&s.typ, &text, &s.value))
			s.text = text.String
			out = append(out, s)
		}
		require.NoError(t, rows.Err())
		if size > 0 {
			require.Positive(t, cacheStats(t, db.Writer).hits.Load())
		}
		return out
	}
	cached, uncached := read(stmtCacheSize), read(0)
	require.Len(t, cached, 2*len(values))
	for i := range uncached {
		require.Equal(t, uncached[i].typ, cached[i].typ, "value %d", i)
		require.Equal(t, uncached[i].text, cached[i].text, "value %d", i)
		require.Equal(t, uncached[i].value, cached[i].value, "value %d", i)
	}
	// Times are stored in SQLite's format, in UTC, and read back as UTC.
	require.Equal(t, "text", cached[1].typ)
	require.Equal(t, "2024-03-31 01:00:00.000000001+00:00", cached[1].text)
	require.Equal(t, time.Date(2024, 3, 31, 1, 0, 0, 1, time.UTC), cached[1].value)
}

// TestStmtCacheConcurrentReaders reads through the reader pool from many
// goroutines while the writer writes.
func TestStmtCacheConcurrentReaders(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openTestSQLite(t, stmtCacheSize, Options{ReadConns: 4})
	for i := range 100 {
		_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n) VALUES (?, ?)", fmt.Sprint("item-", i), i)
		require.NoError(t, err)
	}
	const readers, reads = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, readers+1)
	wg.Go(func() {
		for i := range reads {
			if _, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n) VALUES (?, ?)", fmt.Sprint("more-", i), 1000+i); err != nil {
				errs <- err
				return
			}
		}
	})
	for r := range readers {
		wg.Go(func() {
			for i := range reads {
				n := (r*reads + i) % 100
				var name string
				err := db.ReadDB.QueryRowContext(ctx, "SELECT name FROM items WHERE n = ?", n).Scan(&name)
				if err == nil && name != fmt.Sprint("item-", n) {
					err = fmt.Errorf("n = %d: got %q", n, name)
				}
				if err == nil {
					err = func() error {
						rows, err := db.ReadDB.QueryContext(ctx, "SELECT n FROM items WHERE n < ? ORDER BY n", 5)
						if err != nil {
							return err
						}
						defer rows.Close()
						var got []int
						for rows.Next() {
							var v int
							if err := rows.Scan(&v); err != nil {
								return err
							}
							got = append(got, v)
						}
						if err := rows.Err(); err != nil {
							return err
						}
						if !reflect.DeepEqual(got, []int{0, 1, 2, 3, 4}) {
							return fmt.Errorf("got %v", got)
						}
						return nil
					}()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	stats := cacheStats(t, db.ReadDB).snapshot()
	require.Equal(t, int64(2*readers*reads), stats.hits+stats.misses)
	require.LessOrEqual(t, stats.misses, int64(2*4), "two statements on each of at most 4 connections")
}

// TestStmtCacheInterfaces checks that the wrappers implement what the
// driver's connections and rows implement, which decides how database/sql
// drives them, and that the driver's own functions see through them.
func TestStmtCacheInterfaces(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	base, err := sqlite.NewConnector(path)
	require.NoError(t, err)
	inner, err := base.Connect(ctx)
	require.NoError(t, err)
	defer inner.Close()
	wrapped, err := newStmtCacheConnector(base, 8).Connect(ctx)
	require.NoError(t, err)
	defer wrapped.Close()

	implements := func(v any, ifaces []reflect.Type) (out []string) {
		for _, i := range ifaces {
			if reflect.TypeOf(v).Implements(i) {
				out = append(out, i.String())
			}
		}
		return out
	}
	connIfaces := []reflect.Type{
		reflect.TypeFor[driver.ConnBeginTx](),
		reflect.TypeFor[driver.ConnPrepareContext](),
		reflect.TypeFor[driver.ExecerContext](),
		reflect.TypeFor[driver.QueryerContext](),
		reflect.TypeFor[driver.Pinger](),
		reflect.TypeFor[driver.SessionResetter](),
		reflect.TypeFor[driver.Validator](),
		reflect.TypeFor[driver.NamedValueChecker](),
	}
	require.Equal(t, implements(inner, connIfaces), implements(wrapped, connIfaces))

	// Driver rows, and the wrapper of a cached statement's rows.
	innerRows, err := inner.(driver.QueryerContext).QueryContext(ctx, "SELECT 1", nil)
	require.NoError(t, err)
	defer innerRows.Close()
	wrappedRows, err := wrapped.(driver.QueryerContext).QueryContext(ctx, "SELECT 1", nil)
	require.NoError(t, err)
	require.IsType(t, &cachingRows{}, wrappedRows)
	defer wrappedRows.Close()
	rowsIfaces := []reflect.Type{
		reflect.TypeFor[driver.RowsColumnTypeDatabaseTypeName](),
		reflect.TypeFor[driver.RowsColumnTypeLength](),
		reflect.TypeFor[driver.RowsColumnTypeNullable](),
		reflect.TypeFor[driver.RowsColumnTypePrecisionScale](),
		reflect.TypeFor[driver.RowsColumnTypeScanType](),
		reflect.TypeFor[driver.RowsNextResultSet](),
	}
	require.Subset(t, implements(wrappedRows, rowsIfaces), implements(innerRows, rowsIfaces))

	// sqlite.Limit reaches the driver's connection through Unwrap.
	db := openTestSQLite(t, stmtCacheSize, Options{})
	conn, err := db.Writer.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, -1)
	require.NoError(t, err)

	// database/sql reports the same column types either way.
	columnTypes := func(size int) []*sql.ColumnType {
		db := openTestSQLite(t, size, Options{})
		_, err := db.Writer.ExecContext(ctx, "INSERT INTO items (name, n, at) VALUES ('a', 1, ?)", time.Now())
		require.NoError(t, err)
		rows, err := db.ReadDB.QueryContext(ctx, "SELECT id, name, n, at FROM items")
		require.NoError(t, err)
		defer rows.Close()
		types, err := rows.ColumnTypes()
		require.NoError(t, err)
		require.NoError(t, rows.Err())
		return types
	}
	require.Equal(t, columnTypes(0), columnTypes(stmtCacheSize))
}

// TestStmtCacheConnClose closes a connection whose cached statement still
// has open rows, which database/sql never does: the rows must be closed
// before their statement is finalized.
func TestStmtCacheConnClose(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base, err := sqlite.NewConnector(filepath.Join(t.TempDir(), "x.db"))
	require.NoError(t, err)
	connector := newStmtCacheConnector(base, 8)
	dc, err := connector.Connect(ctx)
	require.NoError(t, err)
	rows, err := dc.(driver.QueryerContext).QueryContext(ctx, "VALUES (1), (2)", nil)
	require.NoError(t, err)
	dest := make([]driver.Value, 1)
	require.NoError(t, rows.Next(dest))
	require.NoError(t, dc.Close())
	require.NoError(t, rows.Close())
	require.NoError(t, dc.Close())
	require.Equal(t, int64(1), connector.stats.closes.Load())
	_, err = dc.(driver.ExecerContext).ExecContext(ctx, "SELECT 1", nil)
	require.ErrorIs(t, err, driver.ErrBadConn)
}

// BenchmarkSQLiteStatementCache runs ent-style statements, a SELECT by an
// indexed column and an INSERT, with the statement cache on and off.
func BenchmarkSQLiteStatementCache(b *testing.B) {
	const schema = "CREATE TABLE `steps` (" +
		"`id` text NOT NULL PRIMARY KEY, `task_id` text NOT NULL, `name` text NOT NULL, " +
		"`status` text NOT NULL DEFAULT 'pending', `position` integer NOT NULL, `attempt` integer NOT NULL DEFAULT 0, " +
		"`output` json NULL, `lease_expires_at` datetime NULL, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL);" +
		"CREATE INDEX `step_task_id_status` ON `steps` (`task_id`, `status`);" +
		"CREATE INDEX `step_status_lease_expires_at` ON `steps` (`status`, `lease_expires_at`)"
	const query = "SELECT `steps`.`id`, `steps`.`task_id`, `steps`.`name`, `steps`.`status`, `steps`.`position`, " +
		"`steps`.`attempt`, `steps`.`output`, `steps`.`lease_expires_at`, `steps`.`created_at`, `steps`.`updated_at` " +
		"FROM `steps` WHERE `steps`.`task_id` = ? AND `steps`.`status` IN (?, ?) ORDER BY `steps`.`position` LIMIT ?"
	const insert = "INSERT INTO `steps` (`id`, `task_id`, `name`, `status`, `position`, `attempt`, `output`, " +
		"`lease_expires_at`, `created_at`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	now := time.Now()

	for _, mode := range []struct {
		name string
		size int
	}{{"cache=off", 0}, {"cache=on", stmtCacheSize}} {
		b.Run("select/"+mode.name, func(b *testing.B) {
			ctx := b.Context()
			db := openTestSQLite(b, mode.size, Options{})
			_, err := db.Writer.ExecContext(ctx, schema)
			require.NoError(b, err)
			for task := range 100 {
				for pos := range 10 {
					_, err := db.Writer.ExecContext(ctx, insert, fmt.Sprintf("s-%d-%d", task, pos), fmt.Sprint("t-", task),
						fmt.Sprint("step-", pos), []string{"pending", "running", "done"}[pos%3], pos, 0, []byte(`{"ok":true}`), nil, now, now)
					require.NoError(b, err)
				}
			}
			var (
				id, taskID, name, status string
				position, attempt        int
				output                   []byte
				lease                    sql.NullTime
				created, updated         time.Time
			)
			for i := 0; b.Loop(); i++ {
				rows, err := db.ReadDB.QueryContext(ctx, query, fmt.Sprint("t-", i%100), "pending", "running", 10)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					if err := rows.Scan(&id, &taskID, &name, &status, &position, &attempt, &output, &lease, &created, &updated); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if err := errors.Join(rows.Err(), rows.Close()); err != nil { //nolint:sqlclosecheck // closed each iteration of the benchmark loop
					b.Fatal(err)
				}
				if n != 7 {
					b.Fatalf("%d rows, want 7", n)
				}
			}
		})
		b.Run("insert/"+mode.name, func(b *testing.B) {
			ctx := b.Context()
			db := openTestSQLite(b, mode.size, Options{})
			_, err := db.Writer.ExecContext(ctx, schema)
			require.NoError(b, err)
			for i := 0; b.Loop(); i++ {
				_, err := db.Writer.ExecContext(ctx, insert, fmt.Sprint("s-", i), fmt.Sprint("t-", i/10),
					"step", "pending", i%10, 0, []byte(`{"ok":true}`), nil, now, now)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
