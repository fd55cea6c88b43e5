package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage/storagetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
)

// normalise replaces what differs between runs (ids and times) with
// placeholders, so output compares with a golden file.
func normalise(s string) string {
	return timeRE.ReplaceAllString(uuidRE.ReplaceAllString(s, "<id>"), "<time>")
}

// golden compares got, normalised, with testdata/name; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	got = normalise(got)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/tasker -run %s -update to create it", t.Name())
	require.Equal(t, string(want), got, "testdata/%s (go test -update rewrites it)", name)
}

// cliRun runs tasker in-process against addr and returns stdout, and
// stderr as printError writes it for a failed command.
type cliRun struct {
	t    *testing.T
	addr string
}

func (c cliRun) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := rootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(`{"from":"stdin"}`))
	if args[0] != "template" || args[1] != "validate" { // offline
		args = append(args, "--addr", c.addr)
	}
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(c.t.Context()); err != nil {
		printError(&errOut, err)
		return out.String(), errOut.String(), exitCode(err)
	}
	return out.String(), errOut.String(), 0
}

// ok runs a command that must succeed and returns its stdout.
func (c cliRun) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	require.Zero(c.t, code, "tasker %s: %s", strings.Join(args, " "), errOut)
	return out
}

// TestCLI drives every task, step, template, handler and event command
// against a real server and compares their table and JSON output with
// golden files.
func TestCLI(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := servertest.Start(t, db, servertest.Options{Logger: slog.New(slog.DiscardHandler)})
	cli := cliRun{t: t, addr: srv.Addr}
	tpl := filepath.Join("..", "..", "examples", "templates", "diamond.yaml")

	// Templates: validate offline, diff, apply, list, get, diff again.
	golden(t, "template_validate.txt", cli.ok("template", "validate", tpl))
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("namespace: Demo\nname: x\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: h\n    depends_on: [zz]\n"), 0o600))
	_, errOut, code := cli.run("template", "validate", bad)
	require.Equal(t, exitError, code)
	golden(t, "template_validate_bad.txt", strings.ReplaceAll(errOut, bad, "bad.yaml"))
	golden(t, "template_diff_new.txt", cli.ok("template", "diff", tpl, "-o", "table"))
	golden(t, "template_apply.txt", cli.ok("template", "apply", tpl, "-o", "table"))
	golden(t, "template_list.txt", cli.ok("template", "list", "-o", "table"))
	golden(t, "template_list.json", cli.ok("template", "list"))
	golden(t, "template_get.yaml", cli.ok("template", "get", "demo", "diamond", "-o", "table"))
	golden(t, "template_diff_unchanged.txt", cli.ok("template", "diff", tpl))
	changed := filepath.Join(t.TempDir(), "changed.yaml")
	data, err := os.ReadFile(tpl)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(changed, bytes.Replace(data, []byte("message: joined"), []byte("message: merged"), 1), 0o600))
	out := cli.ok("template", "diff", changed)
	golden(t, "template_diff.txt", strings.ReplaceAll(out, changed, "changed.yaml"))

	// Tasks.
	created := cli.ok("task", "create", "demo", "diamond", "--context", `{"order":42}`, "--idempotency-key", "k1",
		"--priority", "3", "--correlation-id", "order-42", "-o", "json")
	golden(t, "task_create.json", created)
	id := uuidRE.FindString(created)
	require.NotEmpty(t, id)
	ctxFile := filepath.Join(t.TempDir(), "ctx.json")
	require.NoError(t, os.WriteFile(ctxFile, []byte(`{"order": 42}`), 0o600))
	out = cli.ok("task", "create", "demo", "diamond", "--context", "@"+ctxFile, "--idempotency-key", "k1", "--priority", "3", "-o", "table")
	require.Contains(t, out, "duplicate")
	require.Contains(t, out, id)
	out = cli.ok("task", "create", "demo", "diamond", "--context", "-", "--run-at", "1h", "-o", "yaml")
	require.Contains(t, out, "from: stdin")
	require.NotContains(t, out, id)
	golden(t, "task_get.txt", cli.ok("task", "get", id, "-o", "table"))
	golden(t, "task_get.json", cli.ok("task", "get", id))
	require.Contains(t, cli.ok("task", "get", id, "-o", "yaml"), "templateName: diamond")
	golden(t, "task_list.txt", cli.ok("task", "list", "--namespace", "demo", "--state", "pending", "-o", "table"))
	golden(t, "task_list.json", cli.ok("task", "list", "--namespace", "demo", "--state", "pending", "--state", "in_progress"))
	golden(t, "task_graph.txt", cli.ok("task", "graph", id, "-o", "table"))
	require.Contains(t, cli.ok("task", "graph", id, "--format", "dot"), "digraph")
	require.Contains(t, cli.ok("task", "graph", id, "--format", "mermaid"), "flowchart")

	// Steps.
	golden(t, "step_list.txt", cli.ok("step", "list", "--task", id, "-o", "table"))
	golden(t, "step_list.json", cli.ok("step", "list", "--task", id))
	steps := stepIDs(t, srv, id)
	golden(t, "step_get.txt", cli.ok("step", "get", steps["d"], "-o", "table"))
	golden(t, "step_cancel.txt", cli.ok("step", "cancel", steps["d"], "--reason", "not needed", "-o", "table"))

	// Cancel, then watch: the task has finished cancelled, so watch prints
	// its events and exits 1.
	golden(t, "task_cancel.txt", cli.ok("task", "cancel", id, "--reason", "test", "-o", "table"))
	out, errOut, code = cli.run("task", "watch", id)
	require.Equal(t, exitError, code, errOut)
	require.Contains(t, errOut, "finished cancelled")
	require.Contains(t, out, `"type":"task.created"`)
	require.Contains(t, out, `"type":"task.cancelled"`)

	// Handlers and event types.
	golden(t, "handler_list.txt", cli.ok("handler", "list", "--namespace", "demo", "-o", "table"))
	golden(t, "event_types.json", cli.ok("event", "types"))
}

// stepIDs maps a task's step names to their ids.
func stepIDs(t *testing.T, srv *servertest.Server, taskID string) map[string]string {
	t.Helper()
	resp, err := taskerv1.NewStepServiceClient(srv.Conn).ListSteps(context.Background(), &taskerv1.ListStepsRequest{TaskId: taskID})
	require.NoError(t, err)
	ids := map[string]string{}
	for _, s := range resp.GetSteps() {
		ids[s.GetName()] = s.GetId()
	}
	return ids
}
