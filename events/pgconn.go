package events

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/taskerhq/tasker/storage"
)

// dedicatedConn opens the session-bound connection the sequencer and the
// listener need (storage.DB.DedicatedConn says why it is not pooled).
func dedicatedConn(ctx context.Context, db *storage.DB, application string) (*pgx.Conn, error) {
	return db.DedicatedConn(ctx, application)
}

// closeConn ends a dedicated connection's session.
func closeConn(conn *pgx.Conn) { storage.CloseDedicated(conn) }
