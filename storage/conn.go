package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// errNotPgx reports a PostgreSQL pool whose driver is not pgx's stdlib.
var errNotPgx = errors.New("storage: the PostgreSQL pool does not use pgx")

// DedicatedConn opens a PostgreSQL connection of its own, outside the pool,
// for what must live on one session: a leader's advisory lock and LISTEN. A
// session lock or LISTEN on a pooled connection would follow that
// connection back into the pool and to whoever takes it next.
//
// The settings are copied from a connection of the pool, so the dedicated
// connection goes where the pool goes, with the same credentials and TLS,
// without keeping the URL around. application names the connection in
// pg_stat_activity. Close it with CloseDedicated.
func (db *DB) DedicatedConn(ctx context.Context, application string) (*pgx.Conn, error) {
	pooled, err := db.Writer.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: borrow a connection for its settings: %w", err)
	}
	var cfg *pgx.ConnConfig
	err = pooled.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("%w (driver connection %T)", errNotPgx, dc)
		}
		cfg = c.Conn().Config() // a copy
		return nil
	})
	_ = pooled.Close() // back to the pool
	if err != nil {
		return nil, err
	}
	// pgx installs each connection's notification buffer into the config
	// it connects with, so the copy still delivers to the pooled
	// connection; a nil handler makes pgx install this connection's own.
	cfg.OnNotification = nil
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = application
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("storage: connect %s: %w", application, err)
	}
	return conn, nil
}

// CloseDedicated closes a dedicated connection, which ends its session and
// so releases its advisory locks and LISTENs. It uses a context of its own:
// the caller's has usually ended, and closing must still say goodbye to the
// server rather than leave the session to time out.
func CloseDedicated(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
