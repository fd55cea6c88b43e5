package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Peers are other systems' own benchmarks that --compare runs beside
// burndown, on the same PostgreSQL server, so the ratio of the two comes
// from one run on one machine rather than from figures of different days.
const peerRiver = "river"

// benchPeer is a system --compare runs: its name and how its own
// benchmark runs and reads.
type benchPeer struct {
	name string
	run  func(ctx context.Context, f benchFlags, showProgress bool, stderr io.Writer) (*benchResult, error)
}

// benchPeers are the peers --compare takes, in the order they run.
var benchPeers = []benchPeer{{peerRiver, runRiver}}

// parseCompare reads the --compare values (repeatable, comma lists),
// without repeats, in benchPeers order.
func parseCompare(values []string) ([]string, error) {
	var names []string
	for _, p := range benchPeers {
		names = append(names, p.name)
	}
	var out []string
	for _, v := range values {
		name := strings.ToLower(strings.TrimSpace(v))
		if !slices.Contains(names, name) {
			return nil, fmt.Errorf("--compare: unknown peer %q; known: %s", v, strings.Join(names, ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(names, a) - slices.Index(names, b) })
	return out, nil
}

// riverHowTo tells where a river binary comes from.
const riverHowTo = "`make bench-peers` builds River's CLI (github.com/riverqueue/river/cmd/river, RIVER_VERSION in the Makefile) " +
	"into .tools/bin/river and runs this comparison; or put a river binary on PATH or give --river-bin PATH"

// findRiver returns the river binary: --river-bin when given, else the
// first river on PATH.
func findRiver(flag string) (string, error) {
	if flag == "" {
		path, err := exec.LookPath("river")
		if err != nil {
			return "", fmt.Errorf("--compare river: no river binary on PATH: %s", riverHowTo)
		}
		return path, nil
	}
	st, err := os.Stat(flag)
	switch {
	case err != nil:
		return "", fmt.Errorf("--river-bin %s: %w; %s", flag, err, riverHowTo)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return "", fmt.Errorf("--river-bin %s: not an executable file; %s", flag, riverHowTo)
	}
	return flag, nil
}

// riverSummary is what the last line of `river bench` says.
type riverSummary struct {
	jobsPerSec float64
	worked     int64
	inserted   int64
	// running is from the client's start to the last job worked.
	running time.Duration
}

var (
	// The closing line of `river bench` (cmd/river/riverbench), e.g.
	// bench: total jobs worked [      53760 ], total jobs inserted [     130000 ], overall job/sec [     9566.7 ], running 5.619489143s
	riverTotalRE = regexp.MustCompile(`total jobs worked \[\s*(\d+)\s*\],\s*total jobs inserted \[\s*(\d+)\s*\],\s*overall job/sec \[\s*([^\s\]]+)\s*\](?:,\s*running\s+(\S+))?`)
	// One line every 2 seconds while it runs, e.g.
	// bench: jobs worked [      12860 ], inserted [      15000 ], job/sec [     6430.0 ] [2s]
	riverTickRE = regexp.MustCompile(`^bench: jobs worked \[\s*(\d+)\s*\]`)
)

// parseRiverBench reads the overall jobs/s from the output of `river
// bench`: its last "total jobs worked" line. A missing line, a rate that
// is not a positive number or no job worked is an error that quotes the
// output's end.
func parseRiverBench(out string) (riverSummary, error) {
	var last []string
	var lastLine string
	for line := range strings.Lines(out) {
		if m := riverTotalRE.FindStringSubmatch(line); m != nil {
			last, lastLine = m, strings.TrimSpace(line)
		}
	}
	if last == nil {
		return riverSummary{}, fmt.Errorf("river bench printed no \"total jobs worked … overall job/sec [ N ]\" line; its output ended with:\n%s", tailLines(out, 5))
	}
	var s riverSummary
	var err error
	if s.worked, err = strconv.ParseInt(last[1], 10, 64); err != nil {
		return riverSummary{}, fmt.Errorf("river bench: total jobs worked %q: %w", last[1], err)
	}
	if s.inserted, err = strconv.ParseInt(last[2], 10, 64); err != nil {
		return riverSummary{}, fmt.Errorf("river bench: total jobs inserted %q: %w", last[2], err)
	}
	s.jobsPerSec, err = strconv.ParseFloat(last[3], 64)
	if err != nil || math.IsNaN(s.jobsPerSec) || math.IsInf(s.jobsPerSec, 0) {
		return riverSummary{}, fmt.Errorf("river bench: overall job/sec %q is not a number: %s", last[3], lastLine)
	}
	if s.worked == 0 || s.jobsPerSec <= 0 {
		return riverSummary{}, fmt.Errorf("river bench worked no jobs: %s", lastLine)
	}
	if last[4] != "" {
		// Informative only: the rate is River's own.
		s.running, _ = time.ParseDuration(last[4])
	}
	return s, nil
}

// tailLines is the last n lines of s, indented, for error messages.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return "  (nothing)"
	}
	lines = lines[max(len(lines)-n, 0):]
	return "  " + strings.Join(lines, "\n  ")
}

// runPeers runs every --compare peer, one after the other, while no
// Tasker server runs; a peer that fails gives an error line.
func runPeers(ctx context.Context, f benchFlags, showProgress bool, stderr io.Writer) (results []*benchResult, failed []string) {
	for _, peer := range benchPeers {
		p := peer.name
		if !slices.Contains(f.peers, p) {
			continue
		}
		r, err := peer.run(ctx, f, showProgress, stderr)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(stderr, "bench %s: %v\n", p, err)
			}
			failed = append(failed, p)
			r = &benchResult{Scenario: p, Peer: p, Database: "postgres", Error: err.Error()}
		}
		results = append(results, r)
	}
	return results, failed
}

// compareWithPeers sets on each burndown line its steps/s divided by each
// peer's jobs/s.
func compareWithPeers(lines, peers []*benchResult) {
	for _, r := range lines {
		if r.Scenario != "burndown" || r.Error != "" || r.Skipped != "" {
			continue
		}
		for _, p := range peers {
			if p.Error != "" || p.JobsPerSec <= 0 {
				continue
			}
			if r.RatioToPeer == nil {
				r.RatioToPeer = map[string]float64{}
			}
			r.RatioToPeer[p.Peer] = round3(r.StepsPerSec / p.JobsPerSec)
		}
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// runRiver runs River's own benchmark, `river bench --duration D`, on a
// database of its own created for it on the --database server (migrated
// with `river migrate-up`), and reports its overall jobs/s. The CPU window
// opens at River's first progress line, once its client has started (the
// 75,000 jobs River inserts before are outside it), and closes at its
// summary line; it covers the river process (inserting, fetching,
// completing and working jobs) and the PostgreSQL backends serving its
// database, the same /proc reading as Tasker's server and backends.
func runRiver(ctx context.Context, f benchFlags, showProgress bool, stderr io.Writer) (*benchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, f.riverDuration+2*time.Minute)
	defer cancel()
	progress := newBenchProgress(peerRiver, showProgress, stderr)
	defer progress.finish()
	progress.begin("creating its database", 0)
	name := "tasker_bench_river_" + randomSuffix()
	dbURL, drop, err := createPGDatabase(ctx, f.database, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if f.keep {
			fmt.Fprintf(stderr, "bench: kept river database %s\n", name)
			return
		}
		if err := drop(); err != nil {
			fmt.Fprintf(stderr, "bench: clean up: %v\n", err)
		}
	}()
	durability := durabilityOf(ctx, dbURL, f.sqliteSynchronous)
	version, goVersion := riverVersion(ctx, f.riverPath)

	progress.begin("river migrate-up", 0)
	if out, err := exec.CommandContext(ctx, f.riverPath, "migrate-up", "--database-url", dbURL).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("river migrate-up: %w\n%s", err, tailLines(string(out), 10))
	}

	progress.begin("river bench "+f.riverDuration.String(), 0)
	cmd := exec.CommandContext(ctx, f.riverPath, "bench", "--database-url", dbURL, "--duration", f.riverDuration.String())
	// River prints its summary on SIGINT; a kill follows if it hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	cmd.SysProcAttr = childProcAttr()
	errTail := &lineTail{max: 20}
	cmd.Stderr = lineWriter{errTail}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start river bench: %w", err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	var out bytes.Buffer
	var cpuStart, cpuEnd, dbStart, dbEnd time.Duration
	cpuOK, dbOK, opened := false, false, false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if m := riverTickRE.FindStringSubmatch(line); m != nil {
			if !opened {
				opened = true
				cpuStart, cpuOK = procCPU(pid)
				dbStart, dbOK = pgBackendCPU(name)
			}
			if n, err := strconv.Atoi(m[1]); err == nil {
				progress.add(n)
			}
		}
		if opened && riverTotalRE.MatchString(line) {
			// River stops its client after this line: the process is
			// still there to read.
			end, ok := procCPU(pid)
			cpuEnd, cpuOK = end, cpuOK && ok
			dbe, ok := pgBackendCPU(name)
			dbEnd, dbOK = dbe, dbOK && ok
		}
	}
	werr := cmd.Wait()
	progress.finish()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("river bench: %w", ctx.Err())
	}
	if werr != nil {
		return nil, fmt.Errorf("river bench: %w\n%s", werr, errTail.String())
	}
	s, err := parseRiverBench(out.String())
	if err != nil {
		return nil, err
	}
	r := &benchResult{
		Scenario: peerRiver, Peer: peerRiver, PeerVersion: version,
		Variant:  "bench --duration " + f.riverDuration.String(),
		Database: "postgres", Durability: durability, Server: serverChild,
		JobsPerSec: round1(s.jobsPerSec), StepsPerSec: round1(s.jobsPerSec), TasksPerSec: round1(s.jobsPerSec),
		Tasks: int(s.worked), Steps: int(s.worked), DurationSec: round2(s.running.Seconds()),
		Params: map[string]any{"duration": f.riverDuration.String(), "jobs_inserted": s.inserted, "river_bin": f.riverPath},
		Notes: "River's own benchmark (one process inserting and working no-op jobs), run after burndown " +
			"on a fresh database of the same server; CPU ms/job: the river process + its backends",
		GoVersion: goVersion,
		// The child inherits this process's environment and cgroup.
		CPUCount:   runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Load1:      loadAverage(),
		Date:       time.Now().UTC().Format(time.RFC3339),
	}
	if cpuOK && cpuEnd >= cpuStart {
		sec := round2((cpuEnd - cpuStart).Seconds())
		per := round2(ms(cpuEnd-cpuStart) / float64(s.worked))
		r.ServerCPUSec, r.ServerCPUMsPerStep = &sec, &per
	}
	if dbOK && dbEnd >= dbStart {
		per := round2(ms(dbEnd-dbStart) / float64(s.worked))
		r.DBCPUMsPerStep = &per
	}
	return r, nil
}

// riverVersion is the River and Go versions `river version` names
// ("River version v0.47.0", "Built with go1.26.8"); empty where it cannot
// tell.
func riverVersion(ctx context.Context, bin string) (river, goVersion string) {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "", ""
	}
	if m := regexp.MustCompile(`(?m)^River version (\S+)`).FindSubmatch(out); m != nil {
		river = string(m[1])
	}
	if m := regexp.MustCompile(`(?m)^Built with (\S+)`).FindSubmatch(out); m != nil {
		goVersion = string(m[1])
	}
	return river, goVersion
}

// lineWriter feeds what a child writes to a lineTail, line by line.
type lineWriter struct{ t *lineTail }

func (w lineWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		w.t.add(strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}
