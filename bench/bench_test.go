package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tinyBench are sizes small enough for a test: the point is that every
// scenario runs through the real API end to end and reports what it says.
var tinyBench = []string{
	"--tasks", "12", "--serial-tasks", "3", "--workers", "2", "--concurrency", "4", "--subscribers", "2",
	"--fanout-tasks", "2", "--fanout-width", "5",
	"--capacity-tasks", "60", "--capacity-inflight", "20", "--capacity-claims", "10", "--creators", "4",
}

// TestBenchInProcess runs every scenario against a server in this process
// on SQLite and checks the JSON lines.
func TestBenchInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := Command()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(append([]string{"--in-process", "--json"}, tinyBench...))
	require.NoError(t, cmd.ExecuteContext(ctx), stderr.String())

	seen := map[string]int{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r benchResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		seen[r.Scenario]++
		require.Equal(t, "sqlite", r.Database)
		require.Equal(t, serverInProcess, r.Server)
		require.Contains(t, r.Durability, "synchronous=NORMAL")
		require.NotEmpty(t, r.GoVersion)
		require.Positive(t, r.CPUCount)
		require.Nil(t, r.ServerPeakRSSMB, "in-process: the RSS would include the bench")
		if r.Skipped != "" {
			continue
		}
		require.Positive(t, r.StepsPerSec, r.Scenario)
		require.Positive(t, r.TasksPerSec, r.Scenario)
		switch r.Scenario {
		case "linear4":
			require.NotNil(t, r.StageP50)
			require.NotNil(t, r.StageP99)
			require.NotNil(t, r.ClaimToClaimP50)
			require.LessOrEqual(t, *r.StageP50, *r.StageP99)
		case "events":
			require.NotNil(t, r.ExactlyOnce)
			require.True(t, *r.ExactlyOnce)
			require.Positive(t, r.EventsPerSubscriber)
			require.NotNil(t, r.P50)
		case "capacity":
			require.Equal(t, 60, r.TasksStored)
			require.Equal(t, 20, r.InFlight)
			require.NotNil(t, r.P99)
		case "diamond", "fanout", "http_diamond":
			require.NotNil(t, r.P50, r.Scenario)
		}
	}
	require.Equal(t, map[string]int{"burndown": 1, "linear4": 2, "diamond": 1, "http_diamond": 1, "fanout": 1, "events": 1, "capacity": 1}, seen)
	require.Contains(t, stderr.String(), "steps/s", "the table goes to stderr with --json")
}

// buildBinary builds the tasker binary, which runs the bench and, as its
// child, the server.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tasker")
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../cmd/tasker").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// TestBenchChildServer runs the built binary, which starts `tasker serve`
// as a child process, and reports the child's peak RSS; each scenario runs
// without and with tokens.
func TestBenchChildServer(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"bench", "burndown", "diamond", "--json", "--auth", "none,token"}, tinyBench...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	require.Len(t, lines, 4)
	auths := map[string]int{}
	for _, line := range lines {
		var r benchResult
		require.NoError(t, json.Unmarshal(line, &r))
		auths[r.Auth]++
		require.Positive(t, r.StepsPerSec)
		require.Equal(t, serverChild, r.Server)
		require.NotNil(t, r.ServerPeakRSSMB)
		require.Greater(t, *r.ServerPeakRSSMB, 5.0)
	}
	require.Equal(t, map[string]int{authNone: 2, authToken: 2}, auths)
}

func TestBenchFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown scenario "nope"`},
		{[]string{"--database", "x.db"}, "want a postgres:// URL"},
		{[]string{"--target", "127.0.0.1:1", "--in-process"}, "exclude each other"},
		{[]string{"--workers", "0"}, "--workers must be at least 1"},
		{[]string{"--capacity-tasks", "10", "--capacity-inflight", "20"}, "must not exceed"},
		{[]string{"--auth", "maybe"}, `--auth: want none, token or none,token; got "maybe"`},
		{[]string{"--target", "127.0.0.1:1", "--auth", "token"}, "give --target's token with --token"},
		{[]string{"--token", "tasker_x"}, "--token is for --target"},
		{[]string{"--worker-cmd", "python"}, `--worker-cmd: want NAME=COMMAND, got "python"`},
		{[]string{"--worker-cmd", "py= "}, "want NAME=COMMAND"},
		{[]string{"--worker-cmd", "py=a", "--worker-cmd", "py=b"}, "--worker-cmd: py given twice"},
	} {
		cmd := Command()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		require.ErrorContains(t, cmd.Execute(), tc.want, tc.args)
	}
}
