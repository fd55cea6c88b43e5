package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
)

// TestServeExportFile runs serve with --export-file, stops it right after
// a task was created (the file may not have its events yet), starts it
// again and creates another: the file ends up byte for byte what
// `tasker events export` reads from the log, every event once, in order.
func TestServeExportFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath, out := filepath.Join(dir, "tasker.db"), filepath.Join(dir, "events.jsonl")
	start := func() (cliRun, func()) {
		var lc net.ListenConfig
		lis, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := lis.Addr().String()
		require.NoError(t, lis.Close())
		ctx, cancel := context.WithCancel(t.Context())
		cmd := serveCommand(events.NewRegistry(slog.New(slog.DiscardHandler)))
		cmd.SetArgs([]string{"--database", dbPath, "--grpc-addr", addr, "--admin-addr", "", "--export-file", out,
			"--log-level", "error", "--shutdown-timeout", "2s"})
		cmd.SetOut(os.Stderr)
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		cli := cliRun{t: t, addr: addr}
		require.Eventually(t, func() bool {
			_, _, code := cli.run("template", "list")
			return code == 0
		}, 30*time.Second, 20*time.Millisecond)
		return cli, func() {
			cancel()
			require.NoError(t, <-done)
		}
	}
	cli, stop := start()
	cli.ok("template", "apply", filepath.Join("..", "..", "examples", "templates", "diamond.yaml"))
	cli.ok("task", "create", "demo", "diamond")
	stop()

	cli, stop = start()
	defer stop()
	cli.ok("task", "create", "demo", "diamond")
	var want string
	require.Eventually(t, func() bool {
		want = cli.ok("events", "export", "--format", "json")
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		return string(got) == want
	}, 30*time.Second, 50*time.Millisecond, "the file never matched the log")
	require.Contains(t, want, `"type":"task.created"`)
}
