package main

import (
	"log/slog"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// durationRE matches the durations of a stats report, which differ
// between runs: 12ms and 1.5s in tables, "0.012345s" in JSON.
var durationRE = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s)\b`)

// TestStatsCommand reports on a namespace where one task failed its first
// step for good, as a table and as JSON, and refuses a window too long.
func TestStatsCommand(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := servertest.Start(t, db, servertest.Options{Logger: slog.New(slog.DiscardHandler)})
	cli := cliRun{t: t, addr: srv.Addr}
	cli.ok("template", "apply", filepath.Join("..", "..", "examples", "templates", "diamond.yaml"))
	id := uuidRE.FindString(cli.ok("task", "create", "demo", "diamond", "-o", "json"))
	require.NotEmpty(t, id)
	failA(t, srv, id)

	norm := func(s string) string { return durationRE.ReplaceAllString(normalise(s), "<dur>") }
	// Column widths follow the durations: compare the table with its
	// padding collapsed.
	table := regexp.MustCompile(` {2,}`).ReplaceAllString(norm(cli.ok("stats", "--namespace", "demo", "--since", "1h", "-o", "table")), "  ")
	golden(t, "stats.txt", table)
	golden(t, "stats.json", norm(cli.ok("stats", "--namespace", "demo", "--since", "1h")))

	_, errOut, code := cli.run("stats", "--namespace", "demo", "--since", "1000h", "--correlation-id", "corr-1")
	require.Equal(t, exitError, code)
	golden(t, "error_stats_window.txt", errOut)
	_, errOut, code = cli.run("stats", "--since", "1h")
	require.Equal(t, exitUsage, code, errOut)
}
