package engine

import (
	"cmp"
	"context"
	stdsql "database/sql"
	"fmt"
	"math"
	"slices"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/ent/tasktransition"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/registry"
)

// Bounds of a stats request.
const (
	// StatsSample is how many of the most recent attempts, and of the most
	// recent finished tasks, of a window the percentiles and the slowest
	// lists are computed over. Counts are exact whatever the window holds.
	StatsSample = 10_000
	// MaxStatsWindow is the longest window a stats request may cover.
	MaxStatsWindow = 31 * 24 * time.Hour
	// DefaultStatsWindow is the window when the request gives no start.
	DefaultStatsWindow = time.Hour
	// MaxSlowest bounds the slowest lists.
	MaxSlowest = 100
	// statsWorkersWithin is how recently a worker must have served a
	// handler for the handler to count as served.
	statsWorkersWithin = time.Minute
	// claimChunk is how many step ids one claim-time query looks up.
	claimChunk = 500
)

// StatsParams selects what Stats reports on.
type StatsParams struct {
	Namespace string
	// From and To bound the window [From, To); zero To is now, zero From
	// is To minus DefaultStatsWindow.
	From, To time.Time
	// Slowest is how many slowest tasks and steps to list; 0 means 10.
	Slowest int
}

// Percentiles summarises durations (nearest-rank percentiles).
type Percentiles struct {
	P50, P95, P99, Max time.Duration
	N                  int
}

// HandlerStats is one handler's attempts in the window.
type HandlerStats struct {
	Handler   string
	Attempts  int
	Completed int
	Failed    int
	Duration  Percentiles
}

// ErrorRate is Failed / Attempts, 0 without attempts.
func (h HandlerStats) ErrorRate() float64 {
	if h.Attempts == 0 {
		return 0
	}
	return float64(h.Failed) / float64(h.Attempts)
}

// SlowTask is a finished task and how long it took.
type SlowTask struct {
	TaskID       uuid.UUID
	TemplateName string
	State        TaskState
	Duration     time.Duration
	FinishedAt   time.Time
}

// SlowStep is one attempt and how long it took.
type SlowStep struct {
	StepID, TaskID uuid.UUID
	Name, Handler  string
	Attempt        int
	State          StepState
	Duration       time.Duration
	FinishedAt     time.Time
}

// Stats is what a namespace did in a window.
type Stats struct {
	Namespace        string
	From, To         time.Time
	TasksFinished    int
	StepAttempts     int
	TaskDuration     Percentiles
	Handlers         []HandlerStats
	SlowestTasks     []SlowTask
	SlowestSteps     []SlowStep
	TaskCounts       map[TaskState]int
	StepCounts       map[StepState]int
	UnservedHandlers []string
	Sampled          bool
	minutes          float64
}

// PerMinute returns n per minute of the window.
func (s *Stats) PerMinute(n int) float64 {
	if s.minutes <= 0 {
		return 0
	}
	return float64(n) / s.minutes
}

// attemptEnds are the moves out of in_progress that end an attempt with a
// report, a lease expiry or a timeout: not a release (the attempt is given
// back) and not a cancellation.
var attemptEnds = []string{string(StepComplete), string(StepError), string(StepWaitingForRetry)}

// taskFinishes are the moves that finish a task.
var taskFinishes = []string{string(TaskComplete), string(TaskError), string(TaskCancelled), string(TaskResolvedManually)}

// Stats reports on a namespace over a window, from the transition rows:
// every query reads an index range of the window (transitions by state
// and time, tasks and steps by namespace and time) and joins the rows it
// finds by primary key. Counts are exact; percentiles and the slowest
// lists are computed here over the most recent StatsSample attempts and
// finished tasks, which works alike on both databases (neither SQLite nor
// a portable SQL has percentile functions) and bounds the rows read.
func (e *Engine) Stats(ctx context.Context, p StatsParams) (*Stats, error) {
	if v := registry.CheckNamespace(p.Namespace); v != "" {
		return nil, fault.Invalid("namespace", "%s", v)
	}
	if p.To.IsZero() {
		p.To = e.now()
	}
	if p.From.IsZero() {
		p.From = p.To.Add(-DefaultStatsWindow)
	}
	if !p.From.Before(p.To) {
		return nil, fault.Invalid("end_time", "must be after start_time")
	}
	if p.To.Sub(p.From) > MaxStatsWindow {
		return nil, fault.Invalid("start_time", "the window must be at most %s", MaxStatsWindow)
	}
	if p.Slowest < 0 || p.Slowest > MaxSlowest {
		return nil, fault.Invalid("slowest_limit", "must be between 0 and %d", MaxSlowest)
	}
	if p.Slowest == 0 {
		p.Slowest = 10
	}
	s := &Stats{
		Namespace: p.Namespace, From: p.From.UTC(), To: p.To.UTC(),
		TaskCounts: map[TaskState]int{}, StepCounts: map[StepState]int{},
		minutes: p.To.Sub(p.From).Minutes(),
	}
	steps := []func(context.Context, *Stats, StatsParams) error{
		e.statsAttempts, e.statsTasks, e.statsCounts, e.statsUnserved,
	}
	for _, fn := range steps {
		if err := fn(ctx, s, p); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// statsAttempts counts the attempts that ended in the window per handler
// and outcome, and times the most recent ones.
func (e *Engine) statsAttempts(ctx context.Context, s *Stats, p StatsParams) error {
	d := sql.Dialect(e.db.Dialect)
	tr, st := sql.Table(steptransition.Table).As("t"), sql.Table(step.Table).As("s")
	window := func(sel *sql.Selector) *sql.Selector {
		return sel.From(tr).Join(st).On(st.C(step.FieldID), tr.C(steptransition.FieldStepID)).
			Where(sql.And(
				sql.EQ(tr.C(steptransition.FieldFromState), string(StepInProgress)),
				sql.GTE(tr.C(steptransition.FieldCreatedAt), p.From),
				sql.LT(tr.C(steptransition.FieldCreatedAt), p.To),
				sql.In(tr.C(steptransition.FieldToState), anys(attemptEnds)...),
				sql.P(func(b *sql.Builder) { unindexed(b, st.C(step.FieldNamespace), p.Namespace) }),
			))
	}
	byHandler := map[string]*HandlerStats{}
	handler := func(name string) *HandlerStats {
		h, ok := byHandler[name]
		if !ok {
			h = &HandlerStats{Handler: name}
			byHandler[name] = h
		}
		return h
	}
	agg := window(d.Select(st.C(step.FieldHandler), tr.C(steptransition.FieldToState), sql.Count("*"))).
		GroupBy(st.C(step.FieldHandler), tr.C(steptransition.FieldToState))
	err := e.query(ctx, agg, func(rows *stdsql.Rows) error {
		var name, to string
		var n int
		if err := rows.Scan(&name, &to, &n); err != nil {
			return err
		}
		h := handler(name)
		h.Attempts += n
		if to == string(StepComplete) {
			h.Completed += n
		} else {
			h.Failed += n
		}
		s.StepAttempts += n
		return nil
	})
	if err != nil {
		return err
	}

	sample := window(d.Select(tr.C(steptransition.FieldStepID), tr.C(steptransition.FieldTaskID),
		st.C(step.FieldName), st.C(step.FieldHandler), tr.C(steptransition.FieldToState),
		tr.C(steptransition.FieldAttempt), tr.C(steptransition.FieldCreatedAt))).
		OrderBy(sql.Desc(tr.C(steptransition.FieldCreatedAt))).Limit(StatsSample)
	var ended []SlowStep
	err = e.query(ctx, sample, func(rows *stdsql.Rows) error {
		var a SlowStep
		var to string
		if err := rows.Scan(&a.StepID, &a.TaskID, &a.Name, &a.Handler, &to, &a.Attempt, &a.FinishedAt); err != nil {
			return err
		}
		a.State, a.FinishedAt = StepState(to), a.FinishedAt.UTC()
		ended = append(ended, a)
		return nil
	})
	if err != nil {
		return err
	}
	if s.StepAttempts > len(ended) {
		s.Sampled = true
	}
	claims, err := e.claimTimes(ctx, ended, p.To)
	if err != nil {
		return err
	}
	durations := map[string][]time.Duration{}
	timed := ended[:0]
	for _, a := range ended {
		at, ok := claims[claimKey{a.StepID, a.Attempt}]
		if !ok {
			continue // claimed before retention removed the claim's row
		}
		a.Duration = a.FinishedAt.Sub(at)
		durations[a.Handler] = append(durations[a.Handler], a.Duration)
		timed = append(timed, a)
	}
	for name, ds := range durations {
		handler(name).Duration = percentiles(ds)
	}
	for _, h := range byHandler {
		s.Handlers = append(s.Handlers, *h)
	}
	slices.SortFunc(s.Handlers, func(a, b HandlerStats) int { return cmp.Compare(a.Handler, b.Handler) })
	slices.SortStableFunc(timed, func(a, b SlowStep) int {
		if c := cmp.Compare(b.Duration, a.Duration); c != 0 {
			return c
		}
		return cmp.Compare(a.StepID.String(), b.StepID.String())
	})
	s.SlowestSteps = slices.Clone(timed[:min(p.Slowest, len(timed))])
	return nil
}

type claimKey struct {
	step    uuid.UUID
	attempt int
}

// claimTimes returns when each attempt of ended was claimed: the latest
// claim of that step and attempt number (a release gives the number back)
// at or before the attempt ended, read through the (step_id, id) index.
func (e *Engine) claimTimes(ctx context.Context, ended []SlowStep, to time.Time) (map[claimKey]time.Time, error) {
	ends := make(map[claimKey]time.Time, len(ended))
	ids := make([]uuid.UUID, 0, len(ended))
	seen := map[uuid.UUID]bool{}
	for _, a := range ended {
		ends[claimKey{a.StepID, a.Attempt}] = a.FinishedAt
		if !seen[a.StepID] {
			seen[a.StepID] = true
			ids = append(ids, a.StepID)
		}
	}
	out := make(map[claimKey]time.Time, len(ended))
	for chunk := range slices.Chunk(ids, claimChunk) {
		rows, err := e.db.Reader.StepTransition.Query().
			Where(steptransition.StepIDIn(chunk...), steptransition.ToState(string(StepInProgress)),
				steptransition.CreatedAtLT(to)).
			Select(steptransition.FieldStepID, steptransition.FieldAttempt, steptransition.FieldCreatedAt).
			All(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			k := claimKey{r.StepID, r.Attempt}
			end, ok := ends[k]
			if !ok || r.CreatedAt.After(end) {
				continue
			}
			if prev, ok := out[k]; !ok || r.CreatedAt.After(prev) {
				out[k] = r.CreatedAt.UTC()
			}
		}
	}
	return out, nil
}

// statsTasks counts the tasks that finished in the window and times the
// most recent ones, from creation to the change that finished them.
func (e *Engine) statsTasks(ctx context.Context, s *Stats, p StatsParams) error {
	d := sql.Dialect(e.db.Dialect)
	tr, tk := sql.Table(tasktransition.Table).As("t"), sql.Table(task.Table).As("k")
	window := func(sel *sql.Selector) *sql.Selector {
		return sel.From(tr).Join(tk).On(tk.C(task.FieldID), tr.C(tasktransition.FieldTaskID)).
			Where(sql.And(
				sql.In(tr.C(tasktransition.FieldToState), anys(taskFinishes)...),
				sql.GTE(tr.C(tasktransition.FieldCreatedAt), p.From),
				sql.LT(tr.C(tasktransition.FieldCreatedAt), p.To),
				sql.P(func(b *sql.Builder) { unindexed(b, tk.C(task.FieldNamespace), p.Namespace) }),
			))
	}
	err := e.query(ctx, window(d.Select(sql.Count("*"))), func(rows *stdsql.Rows) error {
		return rows.Scan(&s.TasksFinished)
	})
	if err != nil {
		return err
	}
	sample := window(d.Select(tr.C(tasktransition.FieldTaskID), tk.C(task.FieldTemplateName),
		tr.C(tasktransition.FieldToState), tr.C(tasktransition.FieldCreatedAt), tk.C(task.FieldCreatedAt))).
		OrderBy(sql.Desc(tr.C(tasktransition.FieldCreatedAt))).Limit(StatsSample)
	var finished []SlowTask
	var durations []time.Duration
	err = e.query(ctx, sample, func(rows *stdsql.Rows) error {
		var t SlowTask
		var to string
		var created time.Time
		if err := rows.Scan(&t.TaskID, &t.TemplateName, &to, &t.FinishedAt, &created); err != nil {
			return err
		}
		t.State, t.FinishedAt = TaskState(to), t.FinishedAt.UTC()
		t.Duration = t.FinishedAt.Sub(created)
		finished = append(finished, t)
		durations = append(durations, t.Duration)
		return nil
	})
	if err != nil {
		return err
	}
	if s.TasksFinished > len(finished) {
		s.Sampled = true
	}
	s.TaskDuration = percentiles(durations)
	slices.SortStableFunc(finished, func(a, b SlowTask) int {
		if c := cmp.Compare(b.Duration, a.Duration); c != 0 {
			return c
		}
		return cmp.Compare(a.TaskID.String(), b.TaskID.String())
	})
	s.SlowestTasks = finished[:min(p.Slowest, len(finished))]
	return nil
}

// statsCounts counts the tasks and steps created in the window by their
// current state.
func (e *Engine) statsCounts(ctx context.Context, s *Stats, p StatsParams) error {
	var tasks []struct {
		State task.State `json:"state"`
		Count int        `json:"count"`
	}
	// Every state listed, so the (namespace, state, created_at) index is
	// read as one range per state.
	err := e.db.Reader.Task.Query().
		Where(task.Namespace(p.Namespace), task.StateIn(task.StatePending, task.StateInProgress, task.StateComplete,
			task.StateError, task.StateCancelled, task.StateResolvedManually),
			task.CreatedAtGTE(p.From), task.CreatedAtLT(p.To)).
		GroupBy(task.FieldState).Aggregate(ent.Count()).Scan(ctx, &tasks)
	if err != nil {
		return err
	}
	for _, r := range tasks {
		s.TaskCounts[TaskState(r.State)] = r.Count
	}
	var steps []struct {
		State step.State `json:"state"`
		Count int        `json:"count"`
	}
	err = e.db.Reader.Step.Query().
		Where(step.Namespace(p.Namespace), step.CreatedAtGTE(p.From), step.CreatedAtLT(p.To)).
		GroupBy(step.FieldState).Aggregate(ent.Count()).Scan(ctx, &steps)
	if err != nil {
		return err
	}
	for _, r := range steps {
		s.StepCounts[StepState(r.State)] = r.Count
	}
	return nil
}

// statsUnserved lists the handlers the namespace's templates use that no
// worker served within statsWorkersWithin.
func (e *Engine) statsUnserved(ctx context.Context, s *Stats, p StatsParams) error {
	hs, err := e.ListHandlers(ctx, p.Namespace, statsWorkersWithin)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if h.UsedByTemplates && len(h.Workers) == 0 {
			s.UnservedHandlers = append(s.UnservedHandlers, h.Handler)
		}
	}
	return nil
}

// unindexed writes the test column = value with the column concatenated
// to an empty string: the same test, in a form no index answers. The
// window's transitions are the rows to start from, which bounds the work
// by the window; SQLite, which keeps no statistics, would otherwise start
// from the namespace's index on the joined table (every step or task of
// the namespace, however old) and look up each one's transitions.
func unindexed(b *sql.Builder, column, value string) {
	b.WriteString(column).WriteString(" || '' = ").Arg(value)
}

// query runs sel on the reader pool and calls fn for each row.
func (e *Engine) query(ctx context.Context, sel *sql.Selector, fn func(*stdsql.Rows) error) error {
	q, args := sel.Query()
	rows, err := e.db.Reader.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
	}
	return rows.Err()
}

// percentiles returns the nearest-rank p50, p95 and p99 of ds, and the
// maximum; ds is sorted in place.
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(ds)))) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Percentiles{P50: rank(50), P95: rank(95), P99: rank(99), Max: ds[len(ds)-1], N: len(ds)}
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
