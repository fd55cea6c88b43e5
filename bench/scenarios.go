package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/worker"
)

// Default sizes, chosen so that `make bench` (every scenario, SQLite)
// finishes in under 3 minutes on a 2-core machine at today's speed
// (BENCHMARKS.md records the measurements behind them); capacity is the
// full size of the issue, 100,000 stored and 10,000 in flight, about
// 90 seconds of the run.
const (
	defaultBurndownTasks  = 4_000
	defaultSerialTasks    = 50
	defaultLinear4Tasks   = 600
	defaultDiamondTasks   = 1_000
	defaultFanoutTasks    = 10
	defaultEventsTasks    = 500
	defaultCapacityTasks  = 100_000
	defaultCapacityClaims = 1_000
)

// defaultLease is the lease of bench steps: longer than any scenario, so
// that no heartbeat is needed for a lease to hold.
const defaultLease = 10 * time.Minute

var (
	linear4Steps = []string{"a", "b", "c", "d"}
	linear4Deps  = map[string][]string{"b": {"a"}, "c": {"b"}, "d": {"c"}}
	diamondSteps = []string{"a", "b", "c", "d"}
	diamondDeps  = map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}
)

// runBurndown creates N single-step tasks up front, in BatchCreateTasks
// calls of --create-batch tasks, then starts the workers and measures how
// fast they work the queue down. The creation is timed (and its server CPU
// measured) on its own, outside the figures of the work-down.
func runBurndown(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	n := size(b.f.tasks, defaultBurndownTasks)
	tpl, err := b.register(ctx, "single", defaultLease, []string{"s"}, nil)
	if err != nil {
		return nil, err
	}
	after, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	b.progress.begin("creating tasks", n)
	createCPU := b.startCPU()
	createStart := time.Now()
	if err := b.createBatched(ctx, tpl, n, b.f.creators, b.f.createBatch); err != nil {
		return nil, err
	}
	createTook := time.Since(createStart)
	createCPU.stop()

	b.progress.begin("working down", n)
	var finals atomic.Int64
	cpu := b.startCPU()
	start := time.Now()
	stop, err := b.startWorkers(ctx, func(*worker.Step) {
		finals.Add(1)
		b.progress.add(1)
	})
	if err != nil {
		return nil, err
	}
	end, err := b.waitCompleted(ctx, after, n, &finals)
	cpu.stop()
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	took := end.Sub(start)
	r := &benchResult{
		Scenario: "burndown", Tasks: n, Steps: n, DurationSec: round2(took.Seconds()),
		StepsPerSec: round1(perSec(n, took)), TasksPerSec: round1(perSec(n, took)),
		CreatePerSec:       round1(perSec(n, createTook)),
		CreateCPUMsPerTask: createCPU.perUnit(n),
		Params:             map[string]any{"tasks": n, "creators": b.f.creators, "create_batch": b.f.createBatch},
	}
	r.Notes = fmt.Sprintf("created at %s tasks/s (%.3f ms each), %d per call", thousands(r.CreatePerSec),
		ms(createTook)/float64(n), b.f.createBatch)
	if r.CreateCPUMsPerTask != nil {
		r.Notes += fmt.Sprintf(", server CPU %.3f ms per task created", *r.CreateCPUMsPerTask)
	}
	cpu.stamp(r)
	return []*benchResult{r}, nil
}

// runLinear4 runs tasks of four sequential steps, first one task at a time
// (pure latency), then many in flight (latency under load).
func runLinear4(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	serialTpl, err := b.register(ctx, "linear4_serial", defaultLease, linear4Steps, linear4Deps)
	if err != nil {
		return nil, err
	}
	tpl, err := b.register(ctx, "linear4", defaultLease, linear4Steps, linear4Deps)
	if err != nil {
		return nil, err
	}
	after, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	load := newBoundedLoad(b.inflight())
	// The serial driver waits for the final step of its one task here.
	last := make(chan struct{}, 1)
	var finals atomic.Int64
	stop, err := b.startWorkers(ctx, func(s *worker.Step) {
		b.progress.add(1)
		if s.Name != "d" {
			return
		}
		finals.Add(1)
		if s.TemplateName == serialTpl {
			select {
			case last <- struct{}{}:
			default:
			}
			return
		}
		load.release()
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = stop() }()

	serial := size(b.f.serialTasks, defaultSerialTasks)
	b.progress.begin("one task at a time", serial*4)
	serialCPU := b.startCPU()
	for range serial {
		id, err := b.createTask(ctx, serialTpl)
		if err != nil {
			return nil, err
		}
		select {
		case <-last:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := b.waitTask(ctx, id); err != nil {
			return nil, err
		}
	}

	serialCPU.stop()
	n := size(b.f.tasks, defaultLinear4Tasks)
	b.progress.begin(fmt.Sprintf("steps, %d tasks in flight", b.inflight()), n*4)
	concurrentCPU := b.startCPU()
	if err := load.run(ctx, b, tpl, n); err != nil {
		return nil, err
	}
	if _, err := b.waitCompleted(ctx, after, n+serial, &finals); err != nil {
		return nil, err
	}
	concurrentCPU.stop()
	if err := stop(); err != nil {
		return nil, err
	}

	b.progress.begin("reading events", 0)
	tasks, err := b.timeline(ctx, after)
	if err != nil {
		return nil, err
	}
	var out []*benchResult
	for _, v := range []struct {
		variant, template string
		tasks, inflight   int
		cpu               *cpuWindow
	}{{"serial", serialTpl, serial, 1, serialCPU}, {"concurrent", tpl, n, b.inflight(), concurrentCPU}} {
		of := map[string]*taskTimes{}
		for id, t := range tasks {
			if t.template == v.template {
				of[id] = t
			}
		}
		var stage, c2c []float64
		for _, t := range of {
			for i, name := range linear4Steps {
				s := t.steps[name]
				if s == nil || s.claimed.IsZero() || s.enqueued.IsZero() {
					return nil, fmt.Errorf("linear4: step %s of a task has no enqueue or claim event", name)
				}
				stage = append(stage, ms(s.claimed.Sub(s.enqueued)))
				if i > 0 {
					c2c = append(c2c, ms(s.claimed.Sub(t.steps[linear4Steps[i-1]].claimed)))
				}
			}
		}
		took := span(of)
		r := &benchResult{
			Scenario: "linear4", Variant: v.variant, Tasks: v.tasks, Steps: 4 * v.tasks, DurationSec: round2(took.Seconds()),
			StepsPerSec: round1(perSec(4*v.tasks, took)), TasksPerSec: round1(perSec(v.tasks, took)),
			Params: map[string]any{"tasks": v.tasks, "inflight": v.inflight},
		}
		r.StageP50, r.StageP95, r.StageP99 = percentiles(stage)
		r.ClaimToClaimP50, r.ClaimToClaimP95, r.ClaimToClaimP99 = percentiles(c2c)
		v.cpu.stamp(r)
		out = append(out, r)
	}
	return out, nil
}

// waitTask waits until the task is complete, asking GetTask every
// millisecond: the serial driver learns from its handler that the final
// step ran, and its completion commits a moment later.
func (b *benchRun) waitTask(ctx context.Context, id string) error {
	for {
		resp, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
		if err != nil {
			return fmt.Errorf("get task %s: %w", id, err)
		}
		switch resp.GetTask().GetState() {
		case taskerv1.TaskState_TASK_STATE_COMPLETE:
			return nil
		case taskerv1.TaskState_TASK_STATE_ERROR, taskerv1.TaskState_TASK_STATE_CANCELLED:
			return fmt.Errorf("task %s ended %s", id, resp.GetTask().GetState())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// runDiamond runs N diamond tasks with a bounded number in flight.
func runDiamond(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	n := size(b.f.tasks, defaultDiamondTasks)
	tasks, cpu, err := diamondLoad(ctx, b, "diamond", n)
	if err != nil {
		return nil, err
	}
	r := diamondResult("diamond", tasks, n, b.inflight())
	cpu.stamp(r)
	results := []*benchResult{r}
	if len(b.f.external) > 0 {
		r.Variant = "Go SDK workers"
	}
	for _, w := range b.f.external {
		r, err := externalDiamond(ctx, b, w, n, b.stderr)
		if err != nil {
			return nil, fmt.Errorf("--worker-cmd %s: %w", w.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// diamondLoad registers a diamond template and runs n of its tasks with
// the workers, keeping --inflight tasks in flight; it returns the tasks'
// event times and the server CPU the run used.
func diamondLoad(ctx context.Context, b *benchRun, template string, n int) (map[string]*taskTimes, *cpuWindow, error) {
	tpl, err := b.register(ctx, template, defaultLease, diamondSteps, diamondDeps)
	if err != nil {
		return nil, nil, err
	}
	after, err := b.head(ctx)
	if err != nil {
		return nil, nil, err
	}
	load := newBoundedLoad(b.inflight())
	var finals atomic.Int64
	stop, err := b.startWorkers(ctx, func(s *worker.Step) {
		b.progress.add(1)
		if s.Name == "d" {
			finals.Add(1)
			load.release()
		}
	})
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = stop() }()
	b.progress.begin(fmt.Sprintf("steps, %d tasks in flight", b.inflight()), 4*n)
	cpu := b.startCPU()
	if err := load.run(ctx, b, tpl, n); err != nil {
		return nil, nil, err
	}
	if _, err := b.waitCompleted(ctx, after, n, &finals); err != nil {
		return nil, nil, err
	}
	cpu.stop()
	if err := stop(); err != nil {
		return nil, nil, err
	}
	b.progress.begin("reading events", 0)
	tasks, err := b.timeline(ctx, after)
	return tasks, cpu, err
}

func diamondResult(scenario string, tasks map[string]*taskTimes, n, inflight int) *benchResult {
	var lat []float64
	for _, t := range tasks {
		lat = append(lat, ms(t.completed.Sub(t.created)))
	}
	took := span(tasks)
	r := &benchResult{
		Scenario: scenario, Tasks: n, Steps: 4 * n, DurationSec: round2(took.Seconds()),
		StepsPerSec: round1(perSec(4*n, took)), TasksPerSec: round1(perSec(n, took)),
		Latency: "task", Params: map[string]any{"tasks": n, "inflight": inflight},
	}
	r.P50, r.P95, r.P99 = percentiles(lat)
	return r
}

// runFanout creates the fanout tasks all at once and measures how long
// they take to finish.
func runFanout(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	n := size(b.f.fanoutTasks, defaultFanoutTasks)
	width := b.f.fanoutWidth
	names := []string{"root"}
	deps := map[string][]string{}
	var middles []string
	for i := range width {
		name := fmt.Sprintf("m%03d", i)
		names = append(names, name)
		deps[name] = []string{"root"}
		middles = append(middles, name)
	}
	names = append(names, "sink")
	deps["sink"] = middles
	tpl, err := b.register(ctx, "fanout", defaultLease, names, deps)
	if err != nil {
		return nil, err
	}
	after, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	var finals atomic.Int64
	var parentsOK atomic.Bool
	parentsOK.Store(true)
	stop, err := b.startWorkers(ctx, func(s *worker.Step) {
		b.progress.add(1)
		if s.Name == "sink" {
			// The fan-in receives every middle step's (small) result
			// inline, within the default message limits.
			if len(s.ParentNames()) != width {
				parentsOK.Store(false)
			}
			finals.Add(1)
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = stop() }()
	steps := n * (width + 2)
	b.progress.begin("working", steps)
	cpu := b.startCPU()
	if err := b.createMany(ctx, tpl, n, min(n, b.f.creators)); err != nil {
		return nil, err
	}
	if _, err := b.waitCompleted(ctx, after, n, &finals); err != nil {
		return nil, err
	}
	cpu.stop()
	if err := stop(); err != nil {
		return nil, err
	}
	if !parentsOK.Load() {
		return nil, fmt.Errorf("a sink step did not receive %d parents' results", width)
	}
	b.progress.begin("reading events", 0)
	tasks, err := b.timeline(ctx, after)
	if err != nil {
		return nil, err
	}
	var lat []float64
	for _, t := range tasks {
		lat = append(lat, ms(t.completed.Sub(t.created)))
	}
	took := span(tasks)
	finish := round2(ms(took))
	r := &benchResult{
		Scenario: "fanout", Tasks: n, Steps: steps, DurationSec: round2(took.Seconds()),
		StepsPerSec: round1(perSec(steps, took)), TasksPerSec: round1(perSec(n, took)),
		Latency: "task", TimeToFinishMs: &finish,
		Params: map[string]any{"tasks": n, "width": width},
	}
	r.P50, r.P95, r.P99 = percentiles(lat)
	cpu.stamp(r)
	return []*benchResult{r}, nil
}

// subscriber follows the whole log from a sequence and checks that what it
// receives is dense and in order.
type subscriber struct {
	expect int64 // the next sequence it should receive
	got    int64
	dups   int64 // sequences at or below one already received
	gaps   int64 // sequences skipped
	lags   []float64
	err    error

	// reached is closed once the subscriber has received target; last is
	// the highest sequence received. Each side stores its own value before
	// loading the other's, so one of them always sees both.
	reached     chan struct{}
	reachedOnce sync.Once
	target      atomic.Int64
	last        atomic.Int64
	// hold, when set, keeps the subscriber from reading past the first
	// message until it is closed: a slow consumer.
	hold <-chan struct{}
}

// setTarget tells the subscriber which sequence ends the run.
func (sub *subscriber) setTarget(seq int64) {
	sub.target.Store(seq)
	if sub.last.Load() >= seq {
		sub.reachedOnce.Do(func() { close(sub.reached) })
	}
}

// runEvents runs a diamond load while S subscribers follow the stream.
func runEvents(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	n := size(b.f.tasks, defaultEventsTasks)
	fast, slow := b.f.subscribers, b.f.slowSubscribers
	s := fast + slow
	from, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	subCtx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()
	subs := make([]*subscriber, s)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelSubs()
	started := make(chan error, s)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	var client taskerv1.EventServiceClient
	for i := range subs {
		sub := &subscriber{expect: from + 1, reached: make(chan struct{})}
		sub.target.Store(-1)
		if i >= fast {
			sub.hold = release
		}
		subs[i] = sub
		// A connection per fast subscriber; slow ones share one per
		// hundred, as many clients behind a few gateways would, with
		// gRPC's fixed 64 KiB windows: by default a client buffers
		// whatever the server sends (its windows grow with the
		// bandwidth), and the server would never see a slow reader.
		if i < fast || (i-fast)%100 == 0 {
			var opts []grpc.DialOption
			if i >= fast {
				opts = append(opts, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			}
			conn, err := b.dial(opts...)
			if err != nil {
				return nil, err
			}
			client = taskerv1.NewEventServiceClient(conn)
		}
		client := client
		wg.Go(func() { sub.follow(subCtx, client, from, started) })
	}
	for range s {
		if err := <-started; err != nil {
			if isUnimplemented(err) {
				return []*benchResult{{Scenario: "events", Skipped: "Subscribe unavailable", Subscribers: s}}, nil
			}
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}

	tasks, cpu, err := diamondLoad(ctx, b, "diamond_events", n)
	if err != nil {
		return nil, err
	}
	releaseOnce()
	to, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	b.progress.begin("waiting for subscribers", s)
	for _, sub := range subs {
		sub.setTarget(to)
	}
	deadline := time.After(time.Minute)
	for i, sub := range subs {
		select {
		case <-sub.reached:
			b.progress.add(1)
		case <-deadline:
			return nil, fmt.Errorf("subscriber %d did not reach sequence %d within a minute", i, to)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	cancelSubs()
	wg.Wait()

	// The log itself must hold exactly the events the subscribers saw.
	var listed int64
	if _, err := b.eachEvent(ctx, nil, from, func(ev *taskerv1.Event) {
		if ev.GetSequence() <= to {
			listed++
		}
	}); err != nil {
		return nil, err
	}
	exactlyOnce := listed == to-from
	var lags []float64
	var problems []string
	for i, sub := range subs {
		if sub.err != nil && status.Code(sub.err) != codes.Canceled {
			problems = append(problems, fmt.Sprintf("subscriber %d: %v", i, sub.err))
			exactlyOnce = false
		}
		if sub.dups > 0 || sub.gaps > 0 || sub.got < to-from {
			problems = append(problems, fmt.Sprintf("subscriber %d: %d received for %d, %d duplicates, %d gaps", i, sub.got, to-from, sub.dups, sub.gaps))
			exactlyOnce = false
		}
		lags = append(lags, sub.lags...)
	}
	r := diamondResult("events", tasks, n, b.inflight())
	cpu.stamp(r)
	r.Latency = "delivery lag"
	r.P50, r.P95, r.P99 = percentiles(lags)
	r.Subscribers = s
	r.EventsPerSubscriber = to - from
	r.ExactlyOnce = &exactlyOnce
	r.Params["subscribers"] = fast
	if slow > 0 {
		r.Params["slow_subscribers"] = slow
	}
	r.Notes = fmt.Sprintf("%d subscribers (%d of them reading nothing until the load was over) × %d events, each seen exactly once in order: %v", s, slow, to-from, exactlyOnce)
	if len(problems) > 0 {
		r.Notes += " (" + fmt.Sprint(problems) + ")"
	}
	if !exactlyOnce {
		return []*benchResult{r}, fmt.Errorf("events: delivery was not exactly once: %v (log lists %d events, want %d)", problems, listed, to-from)
	}
	return []*benchResult{r}, nil
}

// follow subscribes to everything after from and records each event's lag
// until ctx ends; started receives the outcome of the first message.
func (sub *subscriber) follow(ctx context.Context, client taskerv1.EventServiceClient, from int64, started chan<- error) {
	stream, err := client.Subscribe(ctx, &taskerv1.SubscribeRequest{
		Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: from,
		HeartbeatInterval: durationpb.New(time.Second),
	})
	if err == nil {
		var first *taskerv1.SubscribeResponse
		if first, err = stream.Recv(); err == nil && first.GetStarted() == nil {
			err = errors.New("the first message is not SubscriptionStarted")
		}
	}
	started <- err
	if err != nil {
		sub.err = err
		return
	}
	if sub.hold != nil {
		select {
		case <-sub.hold:
		case <-ctx.Done():
			return
		}
	}
	for {
		msg, err := stream.Recv()
		now := time.Now()
		if err != nil {
			sub.err = err
			return
		}
		ev := msg.GetEvent()
		if ev == nil {
			continue
		}
		seq := ev.GetSequence()
		switch {
		case seq < sub.expect:
			sub.dups++
		case seq > sub.expect:
			sub.gaps += seq - sub.expect
			fallthrough
		default:
			sub.got++
			sub.expect = seq + 1
			sub.lags = append(sub.lags, ms(now.Sub(ev.GetTime().AsTime())))
		}
		sub.last.Store(max(sub.last.Load(), seq))
		if t := sub.target.Load(); t >= 0 && sub.last.Load() >= t {
			sub.reachedOnce.Do(func() { close(sub.reached) })
		}
	}
}

// runCapacity stores many tasks, holds many claimed steps, and times
// claims at that size; the server's peak RSS is read when it ends.
func runCapacity(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	n := size(b.f.capacityTasks, defaultCapacityTasks)
	held := size(b.f.capacityInFlight, n/10)
	claims := size(b.f.capacityClaims, min(defaultCapacityClaims, (n-held)/2))
	// A lease longer than the run: held steps stay in flight without
	// heartbeats.
	tpl, err := b.register(ctx, "capacity", time.Hour, []string{"s"}, nil)
	if err != nil {
		return nil, err
	}
	b.progress.begin("creating tasks", n)
	createCPU := b.startCPU()
	createStart := time.Now()
	if err := b.createBatched(ctx, tpl, n, b.f.creators, b.f.createBatch); err != nil {
		return nil, err
	}
	createTook := time.Since(createStart)
	createCPU.stop()

	handlers := []*taskerv1.HandlerRef{{Namespace: b.ns, Handler: benchHandler}}
	b.progress.begin("claiming steps to hold", held)
	for got := 0; got < held; {
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "bench-holder", Handlers: handlers, MaxSteps: int32(min(100, held-got)), //nolint:gosec // at most 100
		})
		if err != nil {
			return nil, fmt.Errorf("claim steps to hold: %w", err)
		}
		if len(resp.GetSteps()) == 0 {
			return nil, fmt.Errorf("claim steps to hold: nothing claimable after %d", got)
		}
		got += len(resp.GetSteps())
		b.progress.add(len(resp.GetSteps()))
	}

	// Time single claims from W claimers, each completing what it claimed,
	// so the number in flight stays where it is.
	b.progress.begin(fmt.Sprintf("timing claims, %d held", held), claims)
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]float64, b.f.workers)
	errs := make([]error, b.f.workers)
	cpu := b.startCPU()
	start := time.Now()
	for i := range b.f.workers {
		conn, err := b.dial()
		if err != nil {
			return nil, err
		}
		steps := taskerv1.NewStepServiceClient(conn)
		id := fmt.Sprintf("bench-claimer-%d", i)
		wg.Go(func() {
			for next.Add(1) <= int64(claims) {
				t0 := time.Now()
				resp, err := steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{WorkerId: id, Handlers: handlers, MaxSteps: 1})
				lat[i] = append(lat[i], ms(time.Since(t0)))
				if err == nil && len(resp.GetSteps()) != 1 {
					err = errors.New("nothing claimable")
				}
				if err != nil {
					errs[i] = fmt.Errorf("claim: %w", err)
					return
				}
				c := resp.GetSteps()[0]
				if _, err := steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: c.GetStepId(), LeaseToken: c.GetLeaseToken()}); err != nil {
					errs[i] = fmt.Errorf("complete: %w", err)
					return
				}
				b.progress.add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	cpu.stop()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	all := slices.Concat(lat...)
	r := &benchResult{
		Scenario: "capacity", Tasks: n, Steps: claims, DurationSec: round2(took.Seconds()),
		StepsPerSec: round1(perSec(claims, took)), TasksPerSec: round1(perSec(claims, took)),
		CreatePerSec: round1(perSec(n, createTook)),
		Latency:      "claim", TasksStored: n, InFlight: held,
		Params: map[string]any{"tasks": n, "in_flight": held, "claims": claims, "claimers": b.f.workers, "creators": b.f.creators},
		Notes:  fmt.Sprintf("claim latency = ClaimSteps round trip (max_steps 1) with %d tasks stored and %d steps held; %d tasks created at %.0f/s", n, held, n, perSec(n, createTook)),
	}
	r.P50, r.P95, r.P99 = percentiles(all)
	cpu.stamp(r)
	if createCPU.ok {
		r.Notes += fmt.Sprintf(", %.2f ms server CPU per task created", ms(createCPU.end-createCPU.start)/float64(n))
	}
	return []*benchResult{r}, nil
}

func isUnimplemented(err error) bool { return status.Code(err) == codes.Unimplemented }
