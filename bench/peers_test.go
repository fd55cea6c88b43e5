package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestParseRiverBench reads the closing line of `river bench`, from
// output captured from real runs of River's CLI (testdata) and from
// variations of it.
func TestParseRiverBench(t *testing.T) {
	t.Parallel()
	captured := func(name string) string {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		return string(raw)
	}
	const total = "bench: total jobs worked [      53760 ], total jobs inserted [     130000 ], overall job/sec [     9566.7 ], running 5.619489143s\n"
	for _, tc := range []struct {
		name    string
		out     string
		want    riverSummary
		wantErr string
	}{
		{
			name: "captured --duration 5s",
			out:  captured("river_bench_duration_v0.47.0.txt"),
			want: riverSummary{jobsPerSec: 9566.7, worked: 53760, inserted: 130000, running: 5619489143 * time.Nanosecond},
		},
		{
			name: "captured --num-total-jobs 20000",
			out:  captured("river_bench_burndown_v0.47.0.txt"),
			want: riverSummary{jobsPerSec: 11093.4, worked: 20000, inserted: 20000, running: 1802865972 * time.Nanosecond},
		},
		{
			name: "only the closing line, no newline",
			out:  strings.TrimSuffix(total, "\n"),
			want: riverSummary{jobsPerSec: 9566.7, worked: 53760, inserted: 130000, running: 5619489143 * time.Nanosecond},
		},
		{
			name: "log lines around it, CRLF, tight brackets, no running",
			out: "time=2026-12-02T04:05:00Z level=INFO msg=\"Available job count\" num_jobs=74000\r\n" +
				"bench: total jobs worked [12], total jobs inserted [75012], overall job/sec [6.5]\r\n" +
				"time=2026-12-02T04:05:01Z level=INFO msg=stopped\r\n",
			want: riverSummary{jobsPerSec: 6.5, worked: 12, inserted: 75012},
		},
		{
			name: "the last closing line counts",
			out:  strings.ReplaceAll(total, "9566.7", "1.0") + total,
			want: riverSummary{jobsPerSec: 9566.7, worked: 53760, inserted: 130000, running: 5619489143 * time.Nanosecond},
		},
		{
			name:    "no closing line: interrupted before the summary",
			out:     "bench: jobs worked [          0 ], inserted [      75000 ], job/sec [        0.0 ] [0s]\n",
			wantErr: "river bench printed no \"total jobs worked … overall job/sec [ N ]\" line; its output ended with:\n  bench: jobs worked [          0 ]",
		},
		{
			name:    "nothing at all",
			out:     "",
			wantErr: "its output ended with:\n  (nothing)",
		},
		{
			name:    "a rate that is no number",
			out:     strings.ReplaceAll(total, "9566.7", "NaN"),
			wantErr: `river bench: overall job/sec "NaN" is not a number`,
		},
		{
			name:    "a rate that is garbage",
			out:     strings.ReplaceAll(total, "9566.7", "9,566.7"),
			wantErr: `overall job/sec "9,566.7" is not a number`,
		},
		{
			name:    "no job worked",
			out:     "bench: total jobs worked [          0 ], total jobs inserted [      75000 ], overall job/sec [       -0.0 ], running -2562047h47m16.854775808s\n",
			wantErr: "river bench worked no jobs: bench: total jobs worked [          0 ]",
		},
		{
			name:    "a changed format",
			out:     "bench: total jobs worked 53760, overall jobs/s 9566.7\n",
			wantErr: "printed no \"total jobs worked",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseRiverBench(tc.out)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseCompare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"river"}, []string{"river"}, ""},
		{[]string{"River", " river"}, []string{"river"}, ""},
		{[]string{"temporal"}, nil, `--compare: unknown peer "temporal"; known: river`},
		{[]string{"river", ""}, nil, `--compare: unknown peer ""`},
	} {
		got, err := parseCompare(tc.in)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

// fakeRiver is an executable file standing for River's CLI: the flag
// checks look for it, nothing runs it.
func fakeRiver(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "river")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	return path
}

// TestBenchCompareFlags: --compare's mistakes are usage errors (exit 2 in
// the tasker binary) that say what to give, found before anything runs.
func TestBenchCompareFlags(t *testing.T) {
	t.Parallel()
	const pg = "postgres://postgres:postgres@127.0.0.1:1/postgres"
	river := fakeRiver(t)
	notExec := filepath.Join(t.TempDir(), "river")
	require.NoError(t, os.WriteFile(notExec, nil, 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compare", "river"}, "--compare river needs a PostgreSQL server: give --database postgres://…"},
		{[]string{"burndown", "--compare", "river", "--river-bin", river}, "--compare river needs a PostgreSQL server"},
		{[]string{"--compare", "river", "--database", "bench.db"}, "--database: want a postgres:// URL"},
		{[]string{"--compare", "pgbench", "--database", pg}, `--compare: unknown peer "pgbench"; known: river`},
		{[]string{"--compare", "river,nope", "--database", pg}, `--compare: unknown peer "nope"`},
		{[]string{"diamond", "--compare", "river", "--database", pg, "--river-bin", river}, "--compare river compares with burndown: name it among the scenarios"},
		{[]string{"--compare", "river", "--database", pg, "--target", "127.0.0.1:1", "--river-bin", river}, "not with --target"},
		{[]string{"burndown", "--compare", "river", "--database", pg, "--river-bin", river, "--river-duration", "1s"}, "--river-duration must be at least 2s"},
		{[]string{"burndown", "--compare", "river", "--database", pg, "--river-bin", "/nonexistent/river"}, "--river-bin /nonexistent/river: stat /nonexistent/river: no such file or directory; `make bench-peers` builds River's CLI"},
		{[]string{"burndown", "--compare", "river", "--database", pg, "--river-bin", notExec}, "not an executable file"},
		{[]string{"burndown", "--river-bin", river}, "--river-bin is for --compare river"},
	} {
		cmd := Command()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		err := cmd.Execute()
		require.ErrorContains(t, err, tc.want, tc.args)
		require.ErrorAs(t, err, new(UsageError), tc.args)
	}
}

// TestBenchCompareRiverOnPath: without --river-bin, river is looked up on
// PATH, and its absence says how to get it.
func TestBenchCompareRiverOnPath(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	f := benchFlags{workers: 1, concurrency: 1, creators: 1, createBatch: 1, subscribers: 1, fanoutWidth: 1, auth: []string{authNone},
		sqliteSynchronous: "normal", database: "postgres://127.0.0.1:1/postgres", compare: []string{"river"}, riverDuration: 20 * time.Second}
	_, err := f.validate([]string{"burndown"})
	require.ErrorContains(t, err, "--compare river: no river binary on PATH: `make bench-peers` builds River's CLI")

	require.NoError(t, os.Rename(fakeRiver(t), filepath.Join(dir, "river")))
	scenarios, err := f.validate(nil)
	require.NoError(t, err)
	require.Contains(t, scenarios, "burndown")
	require.Equal(t, filepath.Join(dir, "river"), f.riverPath)
	require.Equal(t, []string{"river"}, f.peers)
}

// TestCompareReport: the burndown lines get their ratio to the peer's
// jobs/s, in JSON and in the table's "÷ river" column; a failed peer gives
// no ratio.
func TestCompareReport(t *testing.T) {
	t.Parallel()
	cpu, db := 1.5, 1.25
	burndown := &benchResult{Scenario: "burndown", Database: "postgres", StepsPerSec: 600, TasksPerSec: 600, ServerCPUMsPerStep: &cpu, DBCPUMsPerStep: &db}
	token := &benchResult{Scenario: "burndown", Database: "postgres", Auth: authToken, StepsPerSec: 450, TasksPerSec: 450}
	rcpu, rdb := 0.2, 0.3
	river := &benchResult{Scenario: peerRiver, Peer: peerRiver, PeerVersion: "v0.47.0", Variant: "bench --duration 20s", Database: "postgres",
		JobsPerSec: 9600, StepsPerSec: 9600, TasksPerSec: 9600, ServerCPUMsPerStep: &rcpu, DBCPUMsPerStep: &rdb, Notes: "River's own benchmark"}
	compareWithPeers([]*benchResult{burndown, token}, []*benchResult{river})
	require.Equal(t, map[string]float64{"river": 0.063}, burndown.RatioToPeer)
	require.Equal(t, map[string]float64{"river": 0.047}, token.RatioToPeer)
	require.Nil(t, river.RatioToPeer)

	line, err := json.Marshal(burndown)
	require.NoError(t, err)
	require.Contains(t, string(line), `"ratio_to_peer":{"river":0.063}`)
	line, err = json.Marshal(river)
	require.NoError(t, err)
	require.Contains(t, string(line), `"peer":"river","peer_version":"v0.47.0","jobs_per_sec":9600`)

	var out bytes.Buffer
	printTable(&out, []*benchResult{burndown, token, river})
	table := out.String()
	lines := strings.Split(table, "\n")
	require.Contains(t, lines[0], "÷ river")
	require.Regexp(t, `^burndown\s+postgres\s+600\s+600\s+-\s+1.50 \+ db 1.25\s+-\s+0.063\s*$`, lines[1])
	require.Regexp(t, `^burndown \[auth token\]\s+postgres\s+450\s+450\s+.*0.047\s*$`, lines[2])
	require.Regexp(t, `^river v0.47.0 \(bench --duration 20s\)\s+postgres\s+9,600 jobs/s\s+-\s+-\s+0.20 \+ db 0.30\s+-\s*$`, lines[3])
	require.Contains(t, table, "÷ river: burndown 600 steps/s ÷ river 9,600 jobs/s = 0.063")
	require.Contains(t, table, "÷ river: burndown [auth token] 450 steps/s ÷ river 9,600 jobs/s = 0.047")

	// A failed river run: no ratio, no column.
	plain := &benchResult{Scenario: "burndown", Database: "postgres", StepsPerSec: 600}
	compareWithPeers([]*benchResult{plain}, []*benchResult{{Scenario: peerRiver, Peer: peerRiver, Error: "river bench: exit status 1"}})
	require.Nil(t, plain.RatioToPeer)
	out.Reset()
	printTable(&out, []*benchResult{plain, {Scenario: peerRiver, Peer: peerRiver, Database: "postgres", Error: "x"}})
	require.NotContains(t, out.String(), "÷")
	require.Contains(t, out.String(), "FAILED")
}
