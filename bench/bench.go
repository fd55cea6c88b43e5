package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
)

// benchFlags are the settings of `tasker bench`. A zero size means the
// scenario's default (see benchDefaults).
type benchFlags struct {
	database          string
	target            string
	json              bool
	tasks             int
	workers           int
	concurrency       int
	inflight          int
	subscribers       int
	slowSubscribers   int
	fanoutTasks       int
	fanoutWidth       int
	serialTasks       int
	capacityTasks     int
	capacityInFlight  int
	capacityClaims    int
	creators          int
	createBatch       int
	sqliteSynchronous string
	keep              bool
	inProcess         bool
	cpuProfile        string
	memProfile        string
	progress          bool
	timeout           time.Duration
	// auth lists the --auth modes each scenario runs under, in order.
	auth  []string
	token string
	// workerCmds are the --worker-cmd values; external their parsed form.
	workerCmds []string
	external   []externalWorker
	// compare are the --compare values; peers their parsed form, and
	// riverPath the river binary found for them.
	compare       []string
	peers         []string
	riverBin      string
	riverPath     string
	riverDuration time.Duration
}

// UsageError is a mistake in the flags or arguments of `tasker bench`:
// nothing was run.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// benchScenario is one named measurement.
type benchScenario struct {
	name, about string
	run         func(ctx context.Context, b *benchRun) ([]*benchResult, error)
}

// benchScenarios are the scenarios in the order `tasker bench` runs them.
var benchScenarios = []benchScenario{
	{"burndown", "create N single-step tasks (BatchCreateTasks, --create-batch a call), then work them down with W worker connections", runBurndown},
	{"linear4", "tasks of 4 sequential steps, one at a time and concurrently: enqueue→claim and claim→claim latency", runLinear4},
	{"diamond", "N tasks of A → (B, C) → D with a bounded number in flight: steps/s and task latency", runDiamond},
	{"http_diamond", "diamond tasks whose 4 steps are HTTP steps the server runs against a local no-op HTTP service: steps/s", runHTTPDiamond},
	{"fanout", "tasks of 1 → 100 → 1: time to finish and steps/s", runFanout},
	{"events", "S subscribers follow Subscribe while a diamond run happens: delivery lag, exactly-once proof", runEvents},
	{"capacity", "many tasks stored, a tenth of them in flight: server RSS and claim latency", runCapacity},
}

// Command is `tasker bench`: the scenarios, their flags and the report. A
// child server is started from the running executable, which must be the
// tasker binary.
func Command() *cobra.Command {
	var f benchFlags
	names := make([]string, len(benchScenarios))
	var about strings.Builder
	for i, s := range benchScenarios {
		names[i] = s.name
		fmt.Fprintf(&about, "  %-9s %s\n", s.name, s.about)
	}
	cmd := &cobra.Command{
		Use:   "bench [scenario...]",
		Short: "Measure throughput, latency and memory through the real gRPC API",
		Long: "Run benchmark scenarios (all of them when none is named) through the real gRPC API, with workers built on the\n" +
			"Go SDK over loopback connections:\n\n" + about.String() + "\n" +
			"By default every scenario gets a fresh SQLite database in a temporary directory and its own `tasker serve`\n" +
			"child process (so the server's peak RSS is its own). --database postgres://… creates a fresh database\n" +
			"tasker_bench_<random> per scenario on that server and drops it afterwards (unless --keep). --target host:port\n" +
			"benchmarks a running server instead. --in-process runs the server inside this process, so --cpuprofile\n" +
			"covers both sides (server RSS is then not reported).\n\n" +
			"Latencies come from the server's own event times (ListEvents after the run), except claim latency\n" +
			"(capacity: the ClaimSteps round trip) and delivery lag (events: receipt time minus event time, one clock).\n" +
			"A progress line goes to stderr when it is a terminal; the table goes to stdout, or to stderr with --json,\n" +
			"which prints one JSON object per result line on stdout.\n\n" +
			"--compare river (with a PostgreSQL --database) runs River's own benchmark right after burndown, while no\n" +
			"Tasker server runs: `river migrate-up` and `river bench --duration 20s` (--river-duration) on a database\n" +
			"tasker_bench_river_<random> of its own on the same server, dropped afterwards unless --keep. The report gets\n" +
			"a river row (its overall jobs/s, and CPU ms/job of the river process + its backends) and, on the burndown\n" +
			"rows, burndown steps/s ÷ river jobs/s (table column \"÷ river\", JSON ratio_to_peer). The river binary is\n" +
			"--river-bin or the first on PATH; `make bench-peers` builds the pinned version into .tools/bin and runs this.",
		ValidArgs: names,
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench(cmd.Context(), f, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.database, "database", "", "PostgreSQL server URL to create the bench databases on (postgres://…); empty for SQLite in a temp dir")
	fl.StringVar(&f.target, "target", "", "benchmark the running server at host:port instead of starting one")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per result on stdout (the table goes to stderr)")
	fl.IntVar(&f.tasks, "tasks", 0, "tasks per scenario for burndown, linear4 (concurrent), diamond and events; 0 for each scenario's default")
	fl.IntVar(&f.workers, "workers", 4, "worker connections (one Go SDK worker each)")
	fl.IntVar(&f.concurrency, "concurrency", 32, "steps each worker runs at once")
	fl.IntVar(&f.inflight, "inflight", 0, "tasks in flight at once in linear4 (concurrent), diamond and events; 0 for workers×concurrency")
	fl.IntVar(&f.subscribers, "subscribers", 8, "Subscribe streams in the events scenario")
	fl.IntVar(&f.slowSubscribers, "slow-subscribers", 0, "extra Subscribe streams in the events scenario that read nothing until the load is over, then everything")
	fl.IntVar(&f.fanoutTasks, "fanout-tasks", 0, "tasks in the fanout scenario; 0 for the default")
	fl.IntVar(&f.fanoutWidth, "fanout-width", 100, "middle steps of a fanout task")
	fl.IntVar(&f.serialTasks, "serial-tasks", 0, "tasks run one at a time in linear4; 0 for the default")
	fl.IntVar(&f.capacityTasks, "capacity-tasks", 0, "tasks stored in the capacity scenario; 0 for the default (100,000)")
	fl.IntVar(&f.capacityInFlight, "capacity-inflight", 0, "claimed steps held in the capacity scenario; 0 for a tenth of --capacity-tasks")
	fl.IntVar(&f.capacityClaims, "capacity-claims", 0, "claims timed in the capacity scenario; 0 for the default")
	fl.IntVar(&f.creators, "creators", 32, "concurrent CreateTask (burndown: BatchCreateTasks) callers when tasks are created up front")
	fl.IntVar(&f.createBatch, "create-batch", 100, "tasks per BatchCreateTasks call when burndown and capacity create their tasks (1 to 100); "+
		"1 creates them with one CreateTask call each, as they did before batching (create rates comparable with older runs; a --target without BatchCreateTasks)")
	fl.StringVar(&f.sqliteSynchronous, "sqlite-synchronous", "normal", "SQLite durability of the started server: normal or full")
	fl.BoolVar(&f.keep, "keep", false, "keep the bench databases (SQLite files or PostgreSQL databases) and print where they are")
	fl.BoolVar(&f.inProcess, "in-process", false, "run the server inside this process (for --cpuprofile of both sides; no server RSS)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to this file")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a heap profile of this process to this file at the end")
	fl.BoolVar(&f.progress, "progress", false, "show progress on stderr even when it is not a terminal")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up on a scenario after this long")
	fl.StringSliceVar(&f.auth, "auth", []string{authNone}, "run each scenario with the server's --auth none, token, or both (none,token) one after the other; "+
		"with token the bench creates the tokens (workers get steps:work on the bench namespace only)")
	fl.StringArrayVar(&f.workerCmds, "worker-cmd", nil, "NAME=COMMAND: the diamond scenario also runs with --workers processes of COMMAND (sh -c) as its workers, "+
		"each serving TASKER_BENCH_NAMESPACE/TASKER_BENCH_HANDLER at TASKER_ADDR with TASKER_BENCH_CONCURRENCY slots; repeatable (BENCHMARKS.md)")
	fl.StringSliceVar(&f.compare, "compare", nil, "run a peer's own benchmark after burndown and report burndown's ratio to it; only river (needs a PostgreSQL --database)")
	fl.StringVar(&f.riverBin, "river-bin", "", "the river binary for --compare river (github.com/riverqueue/river/cmd/river); empty for the first river on PATH")
	fl.DurationVar(&f.riverDuration, "river-duration", 20*time.Second, "how long river bench runs for --compare river (at least 2s)")
	fl.StringVar(&f.token, "token", "", "token for every call to --target (needs every scope but admin on the bench namespace, or admin) [TASKER_TOKEN]")
	return cmd
}

func (f *benchFlags) validate(args []string) ([]string, error) {
	if f.target != "" && f.inProcess {
		return nil, errors.New("--target and --in-process exclude each other")
	}
	if f.database != "" && !isPostgresURL(f.database) {
		return nil, fmt.Errorf("--database: want a postgres:// URL (SQLite is the default and needs no flag), got %q", redactURL(f.database))
	}
	for _, v := range []struct {
		name string
		n    int
		min  int
	}{
		{"--workers", f.workers, 1}, {"--concurrency", f.concurrency, 1}, {"--creators", f.creators, 1},
		{"--create-batch", f.createBatch, 1},
		{"--tasks", f.tasks, 0}, {"--inflight", f.inflight, 0}, {"--subscribers", f.subscribers, 1}, {"--slow-subscribers", f.slowSubscribers, 0},
		{"--fanout-tasks", f.fanoutTasks, 0}, {"--fanout-width", f.fanoutWidth, 1}, {"--serial-tasks", f.serialTasks, 0},
		{"--capacity-tasks", f.capacityTasks, 0}, {"--capacity-inflight", f.capacityInFlight, 0}, {"--capacity-claims", f.capacityClaims, 0},
	} {
		if v.n < v.min {
			return nil, fmt.Errorf("%s must be at least %d, got %d", v.name, v.min, v.n)
		}
	}
	if f.createBatch > maxCreateBatch {
		return nil, fmt.Errorf("--create-batch must be at most %d (a BatchCreateTasks call's limit), got %d", maxCreateBatch, f.createBatch)
	}
	if f.capacityTasks > 0 && f.capacityInFlight > f.capacityTasks {
		return nil, errors.New("--capacity-inflight must not exceed --capacity-tasks")
	}
	for _, a := range f.auth {
		if a != authNone && a != authToken {
			return nil, fmt.Errorf("--auth: want none, token or none,token; got %q", a)
		}
	}
	if len(f.auth) == 0 {
		return nil, errors.New("--auth: give none, token or none,token")
	}
	if f.target != "" && (len(f.auth) != 1 || f.auth[0] != authNone) {
		return nil, errors.New("--auth applies to servers the bench starts; give --target's token with --token")
	}
	if f.token != "" && f.target == "" {
		return nil, errors.New("--token is for --target; a server the bench starts gets its tokens from --auth token")
	}
	if f.target != "" && f.token == "" {
		// Read here rather than as the flag's default, so a TASKER_TOKEN
		// in the environment does not break runs without --target.
		f.token = os.Getenv("TASKER_TOKEN")
	}
	external, err := parseWorkerCmds(f.workerCmds)
	if err != nil {
		return nil, err
	}
	f.external = external
	switch strings.ToLower(f.sqliteSynchronous) {
	case "normal", "full":
	default:
		return nil, fmt.Errorf("--sqlite-synchronous: want normal or full, got %q", f.sqliteSynchronous)
	}
	if len(args) == 0 {
		for _, s := range benchScenarios {
			args = append(args, s.name)
		}
	}
	for _, a := range args {
		if !slices.ContainsFunc(benchScenarios, func(s benchScenario) bool { return s.name == a }) {
			return nil, fmt.Errorf("unknown scenario %q", a)
		}
	}
	if err := f.validateCompare(args); err != nil {
		return nil, err
	}
	return args, nil
}

// validateCompare checks the --compare flags against the rest and finds
// the peers' binaries, before anything runs.
func (f *benchFlags) validateCompare(scenarios []string) error {
	peers, err := parseCompare(f.compare)
	if err != nil {
		return err
	}
	f.peers = peers
	if len(peers) == 0 {
		if f.riverBin != "" {
			return errors.New("--river-bin is for --compare river")
		}
		return nil
	}
	what := "--compare " + strings.Join(peers, ",")
	switch {
	case f.database == "":
		return fmt.Errorf("%s needs a PostgreSQL server: give --database postgres://… (River runs on PostgreSQL only; "+
			"its bench gets a database of its own there, beside burndown's)", what)
	case f.target != "":
		return fmt.Errorf("%s compares with a server the bench starts, not with --target", what)
	case !slices.Contains(scenarios, "burndown"):
		return fmt.Errorf("%s compares with burndown: name it among the scenarios (tasker bench burndown %s)", what, what)
	}
	if slices.Contains(peers, peerRiver) {
		if f.riverDuration < 2*time.Second {
			return fmt.Errorf("--river-duration must be at least 2s (River reports every 2s), got %s", f.riverDuration)
		}
		path, err := findRiver(f.riverBin)
		if err != nil {
			return err
		}
		f.riverPath = path
	}
	return nil
}

func bench(ctx context.Context, f benchFlags, args []string, stdout, stderr io.Writer) error {
	scenarios, err := f.validate(args)
	if err != nil {
		return UsageError{err}
	}
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	showProgress := f.progress || isTerminal(stderr)
	tableOut := stdout
	if f.json {
		tableOut = stderr
	}
	emit := func(lines []*benchResult) error {
		if !f.json {
			return nil
		}
		for _, r := range lines {
			if r.Error != "" {
				continue
			}
			line, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", line)
		}
		return nil
	}
	var all []*benchResult
	var failed []string
	for _, name := range scenarios {
		// burndown's lines wait for the peers' results, which set their
		// ratios; every other line is printed as it comes.
		compared := name == "burndown" && len(f.peers) > 0
		var lines []*benchResult
		for _, mode := range f.auth {
			results, err := runScenario(ctx, f, name, mode, showProgress, stderr)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(stderr, "bench %s (auth %s): %v\n", name, mode, err)
				failed = append(failed, name)
				results = []*benchResult{{Scenario: name, Auth: mode, Error: err.Error()}}
			}
			lines = append(lines, results...)
			if !compared {
				if err := emit(results); err != nil {
					return err
				}
			}
		}
		if compared {
			// Right after burndown, whose server has stopped: the peers
			// run on the same machine at nearly the same time, alone.
			peers, peersFailed := runPeers(ctx, f, showProgress, stderr)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			compareWithPeers(lines, peers)
			lines = append(lines, peers...)
			failed = append(failed, peersFailed...)
			if err := emit(lines); err != nil {
				return err
			}
		}
		all = append(all, lines...)
	}
	printTable(tableOut, all)
	if f.memProfile != "" {
		out, err := os.Create(f.memProfile)
		if err != nil {
			return fmt.Errorf("--memprofile: %w", err)
		}
		defer out.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(out, 0); err != nil {
			return fmt.Errorf("--memprofile: %w", err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// runScenario starts a server (or connects to the target), runs one
// scenario against it and stamps the results with what they were measured
// on.
func runScenario(ctx context.Context, f benchFlags, name, authMode string, showProgress bool, stderr io.Writer) ([]*benchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var run func(context.Context, *benchRun) ([]*benchResult, error)
	for _, s := range benchScenarios {
		if s.name == name {
			run = s.run
		}
	}
	srv, err := startBenchServer(ctx, f, name, authMode, stderr)
	if err != nil {
		return nil, err
	}
	defer srv.stop(stderr)
	b, err := newBenchRun(ctx, f, name, srv, showProgress, stderr)
	if err != nil {
		return nil, err
	}
	defer b.close()
	results, err := run(ctx, b)
	b.progress.finish()
	if err != nil {
		return nil, err
	}
	peak, current := srv.rss()
	for _, r := range results {
		r.Database = srv.database
		r.Durability = srv.durability
		r.Server = srv.mode
		r.Auth = authMode
		r.GoVersion = runtime.Version()
		r.CPUCount = runtime.NumCPU()
		r.GOMAXPROCS = runtime.GOMAXPROCS(0)
		r.Workers = f.workers
		r.Concurrency = f.concurrency
		r.ServerPeakRSSMB = peak
		r.ServerRSSMB = current
		r.Load1 = loadAverage()
		r.Date = time.Now().UTC().Format(time.RFC3339)
	}
	return results, nil
}

// isTerminal reports whether w is a terminal, where a progress line may
// redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
