package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

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

// claim claims the one ready step of handler for the test's worker.
func claim(t *testing.T, srv *servertest.Server, handler string) *taskerv1.ClaimedStep {
	t.Helper()
	client := taskerv1.NewStepServiceClient(srv.Conn)
	var got *taskerv1.ClaimedStep
	require.Eventually(t, func() bool {
		resp, err := client.ClaimSteps(context.Background(), &taskerv1.ClaimStepsRequest{
			WorkerId: "cli-test", MaxSteps: 1,
			Handlers: []*taskerv1.HandlerRef{{Namespace: "demo", Handler: handler}},
		})
		require.NoError(t, err)
		if len(resp.GetSteps()) == 0 {
			return false
		}
		got = resp.GetSteps()[0]
		return true
	}, 10*time.Second, 20*time.Millisecond)
	return got
}

// failA claims the task's step a and fails it for good, then waits for the
// task to be in error.
func failA(t *testing.T, srv *servertest.Server, taskID string) {
	t.Helper()
	s := claim(t, srv, "demo_echo")
	require.Equal(t, "a", s.GetStepName())
	require.Equal(t, taskID, s.GetTaskId())
	_, err := taskerv1.NewStepServiceClient(srv.Conn).FailStep(context.Background(), &taskerv1.FailStepRequest{
		StepId: s.GetStepId(), LeaseToken: s.GetLeaseToken(), NonRetryable: true,
		Error: &taskerv1.StepError{Message: "boom", Type: "test"},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return taskState(t, srv, taskID) == taskerv1.TaskState_TASK_STATE_ERROR },
		10*time.Second, 20*time.Millisecond)
}

func taskState(t *testing.T, srv *servertest.Server, id string) taskerv1.TaskState {
	t.Helper()
	resp, err := taskerv1.NewTaskServiceClient(srv.Conn).GetTask(context.Background(), &taskerv1.GetTaskRequest{Id: id})
	require.NoError(t, err)
	return resp.GetTask().GetState()
}

// TestCLIOperations: retry and resolve a failed task and step, and watch a
// task to its end; each command reports the new state.
func TestCLIOperations(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := servertest.Start(t, db, servertest.Options{Logger: slog.New(slog.DiscardHandler)})
	cli := cliRun{t: t, addr: srv.Addr}
	cli.ok("template", "apply", filepath.Join("..", "..", "examples", "templates", "diamond.yaml"))
	create := func() string {
		id := uuidRE.FindString(cli.ok("task", "create", "demo", "diamond", "-o", "json"))
		require.NotEmpty(t, id)
		return id
	}

	// A failed step retried, then its failed task retried, then resolved.
	id := create()
	failA(t, srv, id)
	out, errOut, code := cli.run("step", "get", stepIDs(t, srv, id)["a"], "-o", "table")
	require.Zero(t, code, errOut)
	require.Contains(t, out, "boom (attempt 1, test)")
	golden(t, "step_retry.txt", cli.ok("step", "retry", stepIDs(t, srv, id)["a"], "--reason", "again", "-o", "table"))
	failA(t, srv, id)
	golden(t, "task_retry.txt", cli.ok("task", "retry", id, "-o", "table"))
	failA(t, srv, id)
	golden(t, "task_resolve.txt", cli.ok("task", "resolve", id, "--reason", "done by hand", "-o", "table"))
	require.Equal(t, taskerv1.TaskState_TASK_STATE_RESOLVED_MANUALLY, taskState(t, srv, id))

	// A failed step resolved with the result its children see.
	id = create()
	failA(t, srv, id)
	golden(t, "step_resolve.txt", cli.ok("step", "resolve", stepIDs(t, srv, id)["a"], "--result", `{"message":"by hand"}`, "-o", "table"))
	out = cli.ok("step", "get", stepIDs(t, srv, id)["a"], "-o", "json")
	require.Contains(t, out, `"message": "by hand"`)
	cli.ok("task", "cancel", id) // its steps b and c are ready: not to be claimed below

	// Watch follows a task until it completes, and exits 0.
	id = create()
	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, code := cli.run("task", "watch", id, "--heartbeat", "100ms")
		done <- result{out, errOut, code}
	}()
	// a, then b and c, then d.
	for _, h := range []string{"demo_echo", "demo_echo", "demo_sleep", "demo_echo"} {
		s := claim(t, srv, h)
		require.Equal(t, id, s.GetTaskId())
		_, err := taskerv1.NewStepServiceClient(srv.Conn).CompleteStep(context.Background(), &taskerv1.CompleteStepRequest{
			StepId: s.GetStepId(), LeaseToken: s.GetLeaseToken(),
		})
		require.NoError(t, err)
	}
	r := <-done
	require.Zero(t, r.code, r.errOut)
	require.Contains(t, r.out, `"type":"task.completed"`)
	require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, taskState(t, srv, id))
}

// TestCLIErrors: every command reports errors one way (code, message,
// fields, correlation id) and exits 2 for usage errors, 3 for not found
// and 1 for the rest.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "sqlite")
	srv := servertest.Start(t, db, servertest.Options{Logger: slog.New(slog.DiscardHandler)})
	cli := cliRun{t: t, addr: srv.Addr}
	cli.ok("template", "apply", filepath.Join("..", "..", "examples", "templates", "diamond.yaml"))

	cases := []struct {
		name string
		args []string
		code int
	}{
		{"task_get_not_found", []string{"task", "get", "01a23406-b553-7be1-85f6-a071b5fe0712"}, exitNotFound},
		{"task_create_no_template", []string{"task", "create", "demo", "nope"}, exitNotFound},
		{"task_create_bad_context", []string{"task", "create", "demo", "diamond", "--context", "[1]"}, exitUsage},
		{"task_create_bad_run_at", []string{"task", "create", "demo", "diamond", "--run-at", "soon"}, exitUsage},
		{"task_list_bad_state", []string{"task", "list", "--state", "bogus"}, exitUsage},
		{"task_get_no_id", []string{"task", "get"}, exitUsage},
		{"bad_output", []string{"task", "list", "-o", "xml"}, exitUsage},
		{"unknown_flag", []string{"step", "list", "--nope"}, exitUsage},
		{"task_get_bad_id", []string{"task", "get", "not-an-id"}, exitError},
		{"template_get_not_found", []string{"template", "get", "demo", "nope"}, exitNotFound},
		{"graph_bad_format", []string{"task", "graph", "x", "--format", "png"}, exitUsage},
	}
	for _, tc := range cases {
		_, errOut, code := cli.run(append(tc.args, "--correlation-id", "cli-test-1")...)
		require.Equal(t, tc.code, code, "%s: %s", tc.name, errOut)
		golden(t, "error_"+tc.name+".txt", errOut)
	}

	_, errOut, code := cli.run("task", "list", "--correlation-id", "has space")
	require.Equal(t, exitUsage, code)
	golden(t, "error_bad_correlation_id.txt", errOut)

	// A refused state change names the reason and the state.
	id := uuidRE.FindString(cli.ok("task", "create", "demo", "diamond"))
	cli.ok("task", "cancel", id)
	_, errOut, code = cli.run("task", "cancel", id, "--correlation-id", "cli-test-2")
	require.Equal(t, exitError, code)
	golden(t, "error_task_cancel_cancelled.txt", errOut)
}

// TestBenchUsageErrors: a mistake in `tasker bench`'s flags exits 2
// before anything runs, and says what to give.
func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "burndown", "--compare", "river"},
			"tasker: --compare river needs a PostgreSQL server: give --database postgres://… (River runs on PostgreSQL only; its bench gets a database of its own there, beside burndown's)\n"},
		{[]string{"bench", "--compare", "temporal", "--database", "postgres://127.0.0.1:1/postgres"},
			"tasker: --compare: unknown peer \"temporal\"; known: river\n"},
		{[]string{"bench", "nope"}, "tasker: unknown scenario \"nope\"\n"},
	} {
		cmd := rootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		err := cmd.ExecuteContext(t.Context())
		require.Error(t, err, tc.args)
		require.Equal(t, exitUsage, exitCode(err), tc.args)
		var out bytes.Buffer
		printError(&out, err)
		require.Equal(t, tc.want, out.String())
	}
}

// TestVersion: --version and `version -o json` name the build.
func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := runTasker(t, "--version")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "tasker "), out)
	require.Contains(t, out, runtime.Version())
	out, err = runTasker(t, "version", "-o", "json")
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.Equal(t, runtime.Version(), v["goVersion"])
	require.Contains(t, v, "revision")
	require.Contains(t, v, "version")
}
