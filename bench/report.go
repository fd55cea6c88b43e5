package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// benchResult is one line of results. Latency fields are milliseconds and
// present only where they apply; --json prints it as is.
type benchResult struct {
	Scenario string `json:"scenario"`
	// Variant tells apart the lines of one scenario (linear4: serial and
	// concurrent).
	Variant    string `json:"variant,omitempty"`
	Database   string `json:"database"`
	Durability string `json:"durability"`
	// Server is child (a `tasker serve` process the bench started),
	// in-process or target.
	Server string `json:"server"`
	// Auth is the server's --auth: none, or token (every call carries a
	// token, checked for scope and namespace).
	Auth string `json:"auth,omitempty"`

	StepsPerSec  float64 `json:"steps_per_sec"`
	TasksPerSec  float64 `json:"tasks_per_sec"`
	CreatePerSec float64 `json:"create_per_sec,omitempty"`
	// CreateCPUMsPerTask is the server CPU time of creating the tasks up
	// front (burndown), per task.
	CreateCPUMsPerTask *float64 `json:"create_cpu_ms_per_task,omitempty"`
	Tasks              int      `json:"tasks"`
	Steps              int      `json:"steps"`
	DurationSec        float64  `json:"duration_sec"`

	// Latency names what P50/P95/P99 measure.
	Latency string   `json:"latency,omitempty"`
	P50     *float64 `json:"p50_ms,omitempty"`
	P95     *float64 `json:"p95_ms,omitempty"`
	P99     *float64 `json:"p99_ms,omitempty"`

	StageP50        *float64 `json:"stage_p50_ms,omitempty"`
	StageP95        *float64 `json:"stage_p95_ms,omitempty"`
	StageP99        *float64 `json:"stage_p99_ms,omitempty"`
	ClaimToClaimP50 *float64 `json:"claim_to_claim_p50_ms,omitempty"`
	ClaimToClaimP95 *float64 `json:"claim_to_claim_p95_ms,omitempty"`
	ClaimToClaimP99 *float64 `json:"claim_to_claim_p99_ms,omitempty"`

	TimeToFinishMs *float64 `json:"time_to_finish_ms,omitempty"`

	// events: what each subscriber received, and whether every one saw
	// every event exactly once, in order, without gaps.
	Subscribers         int   `json:"subscribers,omitempty"`
	EventsPerSubscriber int64 `json:"events_per_subscriber,omitempty"`
	ExactlyOnce         *bool `json:"exactly_once,omitempty"`

	// capacity: what was stored and held while claims were timed.
	TasksStored int `json:"tasks_stored,omitempty"`
	InFlight    int `json:"in_flight,omitempty"`

	// ServerCPUSec is the CPU time the server process used during the
	// measured phase; ServerCPUMsPerStep divides it by the steps run, the
	// figure least moved by other load on the machine.
	ServerCPUSec       *float64 `json:"server_cpu_sec,omitempty"`
	ServerCPUMsPerStep *float64 `json:"server_cpu_ms_per_step,omitempty"`
	// DBCPUMsPerStep is the CPU time of the PostgreSQL backends serving
	// the bench database per step, when PostgreSQL runs on this machine.
	DBCPUMsPerStep *float64 `json:"db_cpu_ms_per_step,omitempty"`

	// Peer names the system of a --compare line (river), whose own
	// benchmark measured it; PeerVersion is that system's version.
	// JobsPerSec is its own figure (River: overall jobs/s); a job is the
	// counterpart of a single-step burndown task, so StepsPerSec and
	// TasksPerSec repeat it. On such a line ServerCPU* are the peer
	// process's CPU (it inserts and works its jobs itself).
	Peer        string  `json:"peer,omitempty"`
	PeerVersion string  `json:"peer_version,omitempty"`
	JobsPerSec  float64 `json:"jobs_per_sec,omitempty"`
	// RatioToPeer is, on a burndown line of a --compare run, its
	// steps/s divided by each peer's jobs/s, by peer.
	RatioToPeer map[string]float64 `json:"ratio_to_peer,omitempty"`

	ServerPeakRSSMB *float64 `json:"server_peak_rss_mb,omitempty"`
	ServerRSSMB     *float64 `json:"server_rss_mb,omitempty"`

	Workers     int            `json:"workers"`
	Concurrency int            `json:"concurrency"`
	Params      map[string]any `json:"params,omitempty"`
	GoVersion   string         `json:"go_version"`
	CPUCount    int            `json:"cpu_count"`
	GOMAXPROCS  int            `json:"gomaxprocs"`
	// Load1 is the machine's one-minute load average at the end, so a run
	// on a busy machine says so.
	Load1   *float64 `json:"load1,omitempty"`
	Date    string   `json:"date"`
	Skipped string   `json:"skipped,omitempty"`
	Notes   string   `json:"notes,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// percentiles returns the nearest-rank p50, p95 and p99 of samples (which
// it sorts), or nils when there are none.
func percentiles(samples []float64) (p50, p95, p99 *float64) {
	if len(samples) == 0 {
		return nil, nil, nil
	}
	slices.Sort(samples)
	at := func(p float64) *float64 {
		i := int(math.Ceil(p*float64(len(samples)))) - 1
		v := round2(samples[min(max(i, 0), len(samples)-1)])
		return &v
	}
	return at(0.50), at(0.95), at(0.99)
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// printTable writes the results as an aligned table.
func printTable(w io.Writer, results []*benchResult) {
	if len(results) == 0 {
		return
	}
	// One column per compared peer, only in a --compare run.
	var peers []string
	for _, r := range results {
		for p := range r.RatioToPeer {
			if !slices.Contains(peers, p) {
				peers = append(peers, p)
			}
		}
	}
	slices.Sort(peers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "scenario\tdatabase\tsteps/s\ttasks/s\tlatency p50 / p95 / p99 (ms)\tserver CPU ms/step\tpeak RSS MB\t"
	for _, p := range peers {
		header += "÷ " + p + "\t"
	}
	fmt.Fprintln(tw, header)
	for _, r := range results {
		name := r.Scenario
		if r.Peer != "" {
			name = strings.TrimSpace(r.Peer + " " + r.PeerVersion)
		}
		if r.Variant != "" {
			name += " (" + r.Variant + ")"
		}
		if r.Auth == authToken {
			name += " [auth token]"
		}
		switch {
		case r.Error != "":
			fmt.Fprintf(tw, "%s\t%s\t\t\tFAILED (see above)\t\t\t%s\n", name, r.Database, strings.Repeat("\t", len(peers)))
			continue
		case r.Skipped != "":
			fmt.Fprintf(tw, "%s\t%s\t\t\tskipped: %s\t\t\t%s\n", name, r.Database, r.Skipped, strings.Repeat("\t", len(peers)))
			continue
		}
		cpu, rss := "-", "-"
		if r.ServerCPUMsPerStep != nil {
			cpu = fmt.Sprintf("%.2f", *r.ServerCPUMsPerStep)
		}
		if r.DBCPUMsPerStep != nil {
			cpu += fmt.Sprintf(" + db %.2f", *r.DBCPUMsPerStep)
		}
		if r.ServerPeakRSSMB != nil {
			rss = fmt.Sprintf("%.0f", *r.ServerPeakRSSMB)
		}
		var lat []string
		if r.P50 != nil {
			lat = append(lat, fmt.Sprintf("%s %s", r.Latency, triple(r.P50, r.P95, r.P99)))
		}
		if r.StageP50 != nil {
			lat = append(lat, "stage "+triple(r.StageP50, r.StageP95, r.StageP99))
		}
		if r.ClaimToClaimP50 != nil {
			lat = append(lat, "claim→claim "+triple(r.ClaimToClaimP50, r.ClaimToClaimP95, r.ClaimToClaimP99))
		}
		latency := strings.Join(lat, "; ")
		if latency == "" {
			latency = "-"
		}
		steps, tasks := thousands(r.StepsPerSec), thousands(r.TasksPerSec)
		if r.Peer != "" {
			steps, tasks = thousands(r.JobsPerSec)+" jobs/s", "-"
		}
		ratios := ""
		for _, p := range peers {
			if v, ok := r.RatioToPeer[p]; ok {
				ratios += fmt.Sprintf("%.3f", v)
			}
			ratios += "\t"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, r.Database, steps, tasks, latency, cpu, rss, ratios)
	}
	_ = tw.Flush()
	var notes []string
	for _, r := range results {
		if r.Notes != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", r.Scenario, r.Notes))
		}
	}
	for _, r := range results {
		for _, p := range peers {
			if v, ok := r.RatioToPeer[p]; ok {
				notes = append(notes, fmt.Sprintf("  ÷ %s: burndown%s %s steps/s ÷ %s %s jobs/s = %.3f",
					p, authSuffix(r), thousands(r.StepsPerSec), p, thousands(peerRate(results, p)), v))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, strings.Join(notes, "\n"))
	}
	if r := results[0]; r.GoVersion != "" {
		fmt.Fprintf(w, "  %s, %d CPUs, durability: %s\n", r.GoVersion, r.CPUCount, r.Durability)
	}
}

// authSuffix marks a line measured with tokens.
func authSuffix(r *benchResult) string {
	if r.Auth == authToken {
		return " [auth token]"
	}
	return ""
}

// peerRate is the jobs/s of peer's line among results.
func peerRate(results []*benchResult, peer string) float64 {
	for _, r := range results {
		if r.Peer == peer && r.Error == "" {
			return r.JobsPerSec
		}
	}
	return 0
}

func triple(a, b, c *float64) string {
	f := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", *v)
	}
	return f(a) + " / " + f(b) + " / " + f(c)
}

// thousands formats a rate without decimals and with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	if v < 100 {
		s = fmt.Sprintf("%.1f", v)
	}
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

// benchProgress draws one line on stderr, redrawn in place, when enabled:
// the scenario, its phase, a bar of done out of total and the rate.
type benchProgress struct {
	scenario string
	enabled  bool
	w        io.Writer

	mu    sync.Mutex
	phase string
	total int64
	start time.Time
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newBenchProgress(scenario string, enabled bool, w io.Writer) *benchProgress {
	p := &benchProgress{scenario: scenario, enabled: enabled, w: w, stop: make(chan struct{}), start: time.Now()}
	if enabled {
		p.wg.Go(p.loop)
	}
	return p
}

// begin starts a phase of total units (0 when unknown).
func (p *benchProgress) begin(phase string, total int) {
	p.mu.Lock()
	p.phase, p.total, p.start = phase, int64(total), time.Now()
	p.done.Store(0)
	p.mu.Unlock()
}

func (p *benchProgress) add(n int) { p.done.Add(int64(n)) }

func (p *benchProgress) loop() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *benchProgress) draw() {
	p.mu.Lock()
	phase, total, start := p.phase, p.total, p.start
	p.mu.Unlock()
	done := p.done.Load()
	elapsed := time.Since(start)
	rate := float64(done) / max(elapsed.Seconds(), 1e-9)
	line := fmt.Sprintf("%-9s %-24s %d", p.scenario, phase, done)
	if total > 0 {
		const width = 30
		frac := min(float64(done)/float64(total), 1)
		filled := int(frac * width)
		line = fmt.Sprintf("%-9s %-24s [%s%s] %3.0f%% %d/%d", p.scenario, phase,
			strings.Repeat("█", filled), strings.Repeat("░", width-filled), 100*frac, done, total)
	}
	fmt.Fprintf(p.w, "\r\033[K%s  %s/s  %s", line, thousands(rate), elapsed.Truncate(100*time.Millisecond))
}

// finish clears the line; the progress draws nothing afterwards.
func (p *benchProgress) finish() {
	if !p.enabled {
		return
	}
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.wg.Wait()
}
