package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/storage"
)

func runTasker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

// TestMigrateCommand: `tasker migrate` applies every migration once and says
// so, --status lists them, and serve refuses a database migrated by a newer
// binary, or with --migrate=false one that lacks migrations, before it
// listens.
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tasker.db")
	ms, err := storage.EmbeddedMigrations("sqlite3")
	require.NoError(t, err)

	out, err := runTasker(t, "serve", "--database", path, "--migrate=false", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	require.ErrorIs(t, err, storage.ErrNotMigrated, out)

	out, err = runTasker(t, "migrate", "--status", "--database", path)
	require.NoError(t, err)
	require.Contains(t, out, ms.Head()+"  pending")

	out, err = runTasker(t, "migrate", "--database", path)
	require.NoError(t, err)
	require.Contains(t, out, "applied "+ms.Head())
	out, err = runTasker(t, "migrate", "--database", path)
	require.NoError(t, err)
	require.Contains(t, out, "(0 migrations applied now)")

	out, err = runTasker(t, "migrate", "--status", "--database", path)
	require.NoError(t, err)
	require.Contains(t, out, ms.Head()+"  applied")

	// A newer binary's migration in the record.
	db, err := storage.Open(context.Background(), path, storage.Options{})
	require.NoError(t, err)
	_, err = db.MigrateTo(t.Context(), append(ms, storage.Migration{Version: "29991231235959", Name: "future", Checksum: "h1:x",
		Stmts: []string{"CREATE INDEX tasks_future_idx ON tasks (created_at)"}}))
	require.NoError(t, err)
	require.NoError(t, db.Close())

	out, err = runTasker(t, "serve", "--database", path, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	require.ErrorIs(t, err, storage.ErrSchemaNewer, out)
	require.ErrorContains(t, err, "29991231235959")
	_, err = runTasker(t, "migrate", "--status", "--database", path)
	require.ErrorIs(t, err, storage.ErrSchemaNewer)
}
