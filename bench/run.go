package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/worker"
)

// benchRun is what a scenario works with: clients of one server, the
// namespace its templates live in, and the progress line.
type benchRun struct {
	f        benchFlags
	srv      *benchServer
	ns       string
	conns    []*grpc.ClientConn
	tasks    taskerv1.TaskServiceClient
	steps    taskerv1.StepServiceClient
	events   taskerv1.EventServiceClient
	registry taskerv1.RegistryServiceClient
	progress *benchProgress
	stderr   io.Writer
}

func newBenchRun(ctx context.Context, f benchFlags, scenario string, srv *benchServer, showProgress bool, stderr io.Writer) (*benchRun, error) {
	b := &benchRun{f: f, srv: srv, ns: benchNamespace, progress: newBenchProgress(scenario, showProgress, stderr), stderr: stderr}
	if srv.mode == serverTarget {
		// A shared server: keep this run's templates and events apart.
		b.ns = "bench-" + randomSuffix()
	}
	conn, err := b.dial()
	if err != nil {
		return nil, err
	}
	b.tasks = taskerv1.NewTaskServiceClient(conn)
	b.steps = taskerv1.NewStepServiceClient(conn)
	b.events = taskerv1.NewEventServiceClient(conn)
	b.registry = taskerv1.NewRegistryServiceClient(conn)
	// Wait until the server answers, so start-up is not measured.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := b.events.ListEvents(wctx, &taskerv1.ListEventsRequest{PageSize: 1}, grpc.WaitForReady(true)); err != nil {
		b.close()
		return nil, fmt.Errorf("server at %s does not answer: %w", srv.addr, err)
	}
	return b, nil
}

// cpuWindow measures the server CPU time of a measured phase, reported
// per step: a figure that, unlike rates, hardly moves with whatever else
// the machine runs. It measures nothing unless the bench started the
// server as a child process.
//
// On a local PostgreSQL it also measures the CPU time of the backends
// serving the bench database.
type cpuWindow struct {
	srv            *benchServer
	start, end     time.Duration
	ok             bool
	dbStart, dbEnd time.Duration
	dbOK           bool
}

func (b *benchRun) startCPU() *cpuWindow {
	w := &cpuWindow{srv: b.srv}
	w.start, w.ok = b.srv.cpu()
	w.dbStart, w.dbOK = b.srv.dbCPU()
	return w
}

// stop ends the phase.
func (w *cpuWindow) stop() {
	end, ok := w.srv.cpu()
	w.end, w.ok = end, w.ok && ok
	dbEnd, dbOK := w.srv.dbCPU()
	w.dbEnd, w.dbOK = dbEnd, w.dbOK && dbOK
}

// perUnit is the server CPU time of the phase per unit of work, in
// milliseconds, or nil when it was not measured.
func (w *cpuWindow) perUnit(units int) *float64 {
	if !w.ok || units == 0 {
		return nil
	}
	per := round2(ms(w.end-w.start) / float64(units))
	return &per
}

// stamp sets r's CPU figures from the phase.
func (w *cpuWindow) stamp(r *benchResult) {
	if r.Steps == 0 {
		return
	}
	if w.ok {
		sec := round2((w.end - w.start).Seconds())
		per := round2(ms(w.end-w.start) / float64(r.Steps))
		r.ServerCPUSec, r.ServerCPUMsPerStep = &sec, &per
	}
	if w.dbOK {
		per := round2(ms(w.dbEnd-w.dbStart) / float64(r.Steps))
		r.DBCPUMsPerStep = &per
	}
}

// dial opens a connection of its own to the server: every worker and
// subscriber gets one, as separate processes would.
func (b *benchRun) dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return b.dialWith(b.srv.driverToken, opts...)
}

// dialWith is dial with token on every call ("" for none).
func (b *benchRun) dialWith(token string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, worker.WithToken(token))
	}
	conn, err := grpc.NewClient(b.srv.addr, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", b.srv.addr, err)
	}
	b.conns = append(b.conns, conn)
	return conn, nil
}

func (b *benchRun) close() {
	for _, c := range b.conns {
		_ = c.Close()
	}
}

// size is n when set, else def.
func size(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// inflight is how many tasks a bounded scenario keeps in flight.
func (b *benchRun) inflight() int {
	return size(b.f.inflight, b.f.workers*b.f.concurrency)
}

// The handler every bench step is served by.
const benchHandler = "noop"

// register stores a template of steps given as name → parents, in the
// order of names, and returns its name.
func (b *benchRun) register(ctx context.Context, name string, lease time.Duration, names []string, deps map[string][]string) (string, error) {
	tpl := &taskerv1.TaskTemplate{
		Namespace: b.ns, Name: name, Version: "1.0.0",
		Description:   "tasker bench",
		LeaseDuration: durationpb.New(lease),
	}
	for _, n := range names {
		tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{Name: n, Handler: benchHandler, DependsOn: deps[n]})
	}
	_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
	if err != nil {
		return "", fmt.Errorf("register template %s: %w", name, err)
	}
	return name, nil
}

// createTask creates one task of template and returns its id.
func (b *benchRun) createTask(ctx context.Context, template string) (string, error) {
	resp, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: b.ns, Name: template, Initiator: "tasker bench"})
	if err != nil {
		return "", fmt.Errorf("create %s task: %w", template, err)
	}
	return resp.GetTask().GetId(), nil
}

// createMany creates n tasks of template with callers concurrent
// CreateTask calls, as fast as the server takes them.
func (b *benchRun) createMany(ctx context.Context, template string, n, callers int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := b.createTask(ctx, template); err != nil {
					errs[i] = err
					return
				}
				b.progress.add(1)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxCreateBatch is the most entries a BatchCreateTasks call takes.
const maxCreateBatch = 100

// createBatched creates n tasks of template in BatchCreateTasks calls of
// batch entries, at most callers calls at once; a batch of 1 is
// createMany's one CreateTask call per task.
func (b *benchRun) createBatched(ctx context.Context, template string, n, callers, batch int) error {
	if batch <= 1 {
		return b.createMany(ctx, template, n, callers)
	}
	calls := (n + batch - 1) / batch
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, min(callers, calls))
	for i := range errs {
		wg.Go(func() {
			for c := int(next.Add(1)) - 1; c < calls; c = int(next.Add(1)) - 1 {
				req := &taskerv1.BatchCreateTasksRequest{Tasks: make([]*taskerv1.CreateTaskRequest, min(batch, n-c*batch))}
				for j := range req.Tasks {
					req.Tasks[j] = &taskerv1.CreateTaskRequest{Namespace: b.ns, Name: template, Initiator: "tasker bench"}
				}
				resp, err := b.tasks.BatchCreateTasks(ctx, req)
				if err != nil {
					errs[i] = fmt.Errorf("create %s tasks: %w", template, err)
					return
				}
				for _, o := range resp.GetOutcomes() {
					if r := o.GetResult(); r.GetCode() != 0 {
						errs[i] = fmt.Errorf("create %s task: %s: %s", template, codes.Code(r.GetCode()), r.GetMessage())
						return
					}
				}
				b.progress.add(len(req.Tasks))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startWorkers runs --workers Go SDK workers, each on its own connection
// with --concurrency slots, serving the bench handler; onStep sees every
// step before it completes. stop ends them and waits.
func (b *benchRun) startWorkers(ctx context.Context, onStep func(*worker.Step)) (stop func() error, err error) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make([]error, b.f.workers)
	handler := func(_ context.Context, s *worker.Step) (map[string]any, error) {
		if onStep != nil {
			onStep(s)
		}
		return map[string]any{"ok": true}, nil
	}
	for i := range b.f.workers {
		conn, err := b.dialWith(b.srv.workerToken)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		w := worker.New(conn, fmt.Sprintf("bench-w%d", i), worker.Options{
			Concurrency:     b.f.concurrency,
			ClaimWait:       5 * time.Second,
			ShutdownTimeout: 5 * time.Second,
			Logger:          slog.New(slog.DiscardHandler),
		})
		w.MustRegister(b.ns, benchHandler, handler)
		wg.Go(func() { errs[i] = w.Run(wctx) })
	}
	return func() error {
		cancel()
		wg.Wait()
		return errors.Join(errs...)
	}, nil
}

// boundedLoad creates tasks keeping at most a number of them in flight: a
// slot frees when the handler of the task's final step runs (the workers'
// onStep calls release), a closed loop like callers that wait for their
// tasks.
type boundedLoad struct {
	slots chan struct{}
}

func newBoundedLoad(limit int) *boundedLoad {
	return &boundedLoad{slots: make(chan struct{}, limit)}
}

// release frees the slot of a task whose final step is running.
func (l *boundedLoad) release() {
	select {
	case <-l.slots:
	default:
	}
}

// run creates n tasks of template, each after taking a slot.
func (l *boundedLoad) run(ctx context.Context, b *benchRun, template string, n int) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range n {
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed {
			break
		}
		wg.Go(func() {
			if _, err := b.createTask(ctx, template); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// head returns the newest sequence of the event log.
func (b *benchRun) head(ctx context.Context) (int64, error) {
	// Nothing lies after the largest sequence, so the server reads only
	// its head.
	resp, err := b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{PageSize: 1, AfterSequence: math.MaxInt64})
	if err != nil {
		return 0, fmt.Errorf("read the log's head: %w", err)
	}
	return resp.GetHeadSequence(), nil
}

// eachEvent calls fn for every event matching filter after sequence
// after, page by page, and returns the sequence scanned to.
func (b *benchRun) eachEvent(ctx context.Context, filter *taskerv1.EventFilter, after int64, fn func(*taskerv1.Event)) (int64, error) {
	req := &taskerv1.ListEventsRequest{Filter: filter, AfterSequence: after, PageSize: 1000}
	scanned := after
	for {
		resp, err := b.events.ListEvents(ctx, req)
		if err != nil {
			return scanned, fmt.Errorf("list events: %w", err)
		}
		for _, ev := range resp.GetEvents() {
			fn(ev)
		}
		scanned = max(scanned, resp.GetScannedSequence())
		if resp.GetNextPageToken() == "" {
			return scanned, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// waitCompleted waits until n tasks of the namespace created after
// sequence after have finished, and returns when the last one did (by the
// server's clock). It polls ListEvents, but only once finals (the handler
// runs of final steps) reached n, so polling costs the server nothing
// while the work is measured. A failed or cancelled task is an error: the
// bench's handlers never fail.
func (b *benchRun) waitCompleted(ctx context.Context, after int64, n int, finals *atomic.Int64) (time.Time, error) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for finals.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d final steps ran: %w", finals.Load(), n, ctx.Err())
		case <-tick.C:
		}
	}
	filter := &taskerv1.EventFilter{Namespace: b.ns, Types: []string{"task.completed", "task.failed", "task.cancelled"}}
	done := 0
	var last time.Time
	var bad error
	for {
		scanned, err := b.eachEvent(ctx, filter, after, func(ev *taskerv1.Event) {
			if ev.GetType() != "task.completed" && bad == nil {
				bad = fmt.Errorf("task %s: %s", ev.GetTaskId(), ev.GetType())
			}
			done++
			if t := ev.GetTime().AsTime(); t.After(last) {
				last = t
			}
		})
		if err != nil {
			return last, err
		}
		if bad != nil {
			return last, bad
		}
		if done >= n {
			if b.srv.mode == serverTarget {
				// The target's clock may differ from ours.
				last = time.Now()
			}
			return last, nil
		}
		after = scanned
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("%d of %d tasks finished: %w", done, n, ctx.Err())
		case <-tick.C:
		}
	}
}

// taskTimes are the server's times of one task's events.
type taskTimes struct {
	template           string
	created, completed time.Time
	steps              map[string]*stepTimes
}

type stepTimes struct {
	enqueued, claimed, completed time.Time
	claims                       int
}

// timeline reads the task and step events of the namespace after sequence
// after, by task id.
func (b *benchRun) timeline(ctx context.Context, after int64) (map[string]*taskTimes, error) {
	tasks := map[string]*taskTimes{}
	filter := &taskerv1.EventFilter{Namespace: b.ns, Types: []string{"task.created", "task.completed", "step.enqueued", "step.claimed", "step.completed"}}
	_, err := b.eachEvent(ctx, filter, after, func(ev *taskerv1.Event) {
		t := tasks[ev.GetTaskId()]
		if t == nil {
			t = &taskTimes{template: ev.GetTemplateName(), steps: map[string]*stepTimes{}}
			tasks[ev.GetTaskId()] = t
		}
		at := ev.GetTime().AsTime()
		switch ev.GetType() {
		case "task.created":
			t.created = at
			return
		case "task.completed":
			t.completed = at
			return
		}
		name, _ := ev.GetPayload().AsMap()["step_name"].(string)
		s := t.steps[name]
		if s == nil {
			s = &stepTimes{}
			t.steps[name] = s
		}
		switch ev.GetType() {
		case "step.enqueued":
			s.enqueued = at
		case "step.claimed":
			s.claims++
			if s.claimed.IsZero() {
				s.claimed = at
			}
		case "step.completed":
			s.completed = at
		}
	})
	return tasks, err
}

// span is the time from the first task created to the last completed.
func span(tasks map[string]*taskTimes) time.Duration {
	var first, last time.Time
	for _, t := range tasks {
		if first.IsZero() || t.created.Before(first) {
			first = t.created
		}
		if t.completed.After(last) {
			last = t.completed
		}
	}
	return last.Sub(first)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
