package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/backoff"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// HandlerFunc runs one attempt of a step. It returns the step's result,
// which the step's children receive (nil is an empty result), or an error:
// plain errors are retried with the step's backoff until its attempts run
// out; NonRetryable, RetryAfter and WithErrorType say otherwise. A panic is
// recovered and reported as a failure of type "panic".
//
// ctx is cancelled when the step's lease is lost (context.Cause is a
// *LeaseLostError) or when the worker gives up waiting during shutdown
// (ErrShutdown); a handler should return soon after.
type HandlerFunc func(ctx context.Context, s *Step) (map[string]any, error)

// Options are the optional settings of a Worker. Zero values take the
// defaults.
type Options struct {
	// Concurrency is how many steps run at once. Default 10.
	Concurrency int
	// ClaimWait is how long one ClaimSteps call waits on the server for
	// work before asking again. Default 30s; at most 60s, the server's
	// bound.
	ClaimWait time.Duration
	// HeartbeatInterval is how often the leases of running steps are
	// renewed. Default: a third of the shortest lease held, at least
	// 100ms, so two heartbeats may fail before a lease runs out. The
	// lease's length is read from the claim's expiry against this
	// machine's clock; set the interval explicitly where clocks are not
	// kept in sync.
	HeartbeatInterval time.Duration
	// ShutdownTimeout is how long running handlers may finish after Run's
	// context ends; then their contexts are cancelled and their steps are
	// given back unrun. Default 30s.
	ShutdownTimeout time.Duration
	// Logger receives the worker's logs. Default slog.Default().
	Logger *slog.Logger
	// TracerProvider receives a span per handler run, a child of the
	// span the server handed over with the claim (ClaimedStep.traceparent),
	// so the handler's work, and the spans it starts from its context,
	// join the task's trace. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Defaults and bounds of Options, and of the server's worker protocol.
const (
	defaultConcurrency     = 10
	defaultClaimWait       = 30 * time.Second
	maxClaimWait           = 60 * time.Second
	defaultShutdownTimeout = 30 * time.Second
	minHeartbeatInterval   = 100 * time.Millisecond
	maxWorkerIDBytes       = 128
	maxClaimSteps          = 100
	maxClaimHandlers       = 100
	maxLeasesPerExtend     = 500
)

// Timing of calls the worker retries on its own.
const (
	// claimSlack is added to ClaimWait to bound one ClaimSteps call, so a
	// silent network cannot stall the claim loop.
	claimSlack          = 10 * time.Second
	claimBackoffInitial = 100 * time.Millisecond
	claimBackoffMax     = 5 * time.Second
	// reportTimeout bounds one report call (complete, fail, release).
	reportTimeout        = 10 * time.Second
	reportBackoffInitial = 100 * time.Millisecond
	reportBackoffMax     = 2 * time.Second
)

// handlerKey names a handler within a namespace.
type handlerKey struct{ namespace, handler string }

// Worker claims steps of its registered handlers from a Tasker server, runs
// them and reports their outcome. Register every handler, then call Run.
type Worker struct {
	steps taskerv1.StepServiceClient
	id    string
	opts  Options
	log   *slog.Logger
	// tracer starts the handlers' spans.
	tracer trace.Tracer

	// handlers is a plain map: it is filled before Run and only read after.
	// startMu makes that rule an error instead of a data race: Register and
	// Run's start take it, and Register refuses once started is set.
	handlers map[handlerKey]HandlerFunc
	startMu  sync.Mutex
	started  bool

	// mu guards running, the steps in flight, which the claim loop, the
	// heartbeat, the handlers' goroutines and shutdown all touch. It is a
	// set of executions, not a map by step id: a step whose lease was lost
	// may be claimed again by this worker before its old handler returns.
	mu      sync.Mutex
	running map[*execution]struct{}
	// freed wakes the claim loop (and shutdown) when a step leaves running.
	freed chan struct{}
	// added wakes the heartbeat when a step enters running.
	added chan struct{}
	// completions and failures send reports in batches (batch.go).
	completions *batcher[*taskerv1.StepCompletion, *taskerv1.EntryResult]
	failures    *batcher[*taskerv1.StepFailure, *taskerv1.FailureOutcome]
	// reportBackoff is the pause after a report's n-th failed attempt:
	// the package's reportBackoff, shortened by tests.
	reportBackoff func(n int) time.Duration
}

// New returns a worker that talks to a Tasker server over conn and claims
// steps under id, a stable name of this process (1 to 128 bytes) shown by
// ListHandlers.
func New(conn grpc.ClientConnInterface, id string, opts Options) *Worker {
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultConcurrency
	}
	if opts.ClaimWait <= 0 {
		opts.ClaimWait = defaultClaimWait
	}
	opts.ClaimWait = min(opts.ClaimWait, maxClaimWait)
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = defaultShutdownTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	steps := taskerv1.NewStepServiceClient(conn)
	tracer := opts.TracerProvider.Tracer("github.com/taskerhq/tasker/worker")
	return &Worker{
		steps: steps,
		completions: newBatcher(tracer, "report completions", func(ctx context.Context, cs []*taskerv1.StepCompletion) ([]*taskerv1.EntryResult, error) {
			resp, err := steps.BatchCompleteSteps(ctx, &taskerv1.BatchCompleteStepsRequest{Completions: cs})
			return resp.GetResults(), err
		}),
		failures: newBatcher(tracer, "report failures", func(ctx context.Context, fs []*taskerv1.StepFailure) ([]*taskerv1.FailureOutcome, error) {
			resp, err := steps.BatchFailSteps(ctx, &taskerv1.BatchFailStepsRequest{Failures: fs})
			return resp.GetOutcomes(), err
		}),
		id:       id,
		opts:     opts,
		log:      opts.Logger.With(slog.String("worker_id", id)),
		tracer:   tracer,
		handlers: map[handlerKey]HandlerFunc{},
		running:  map[*execution]struct{}{},
		freed:    make(chan struct{}, 1),
		added:    make(chan struct{}, 1),

		reportBackoff: reportBackoff,
	}
}

// Register serves handler of namespace with fn. It fails for an empty
// name, a handler registered twice, more than 100 handlers (the most one
// claim may name), or once Run has started.
func (w *Worker) Register(namespace, handler string, fn HandlerFunc) error {
	if namespace == "" || handler == "" {
		return fmt.Errorf("tasker worker: register: namespace and handler are required (got %q, %q)", namespace, handler)
	}
	if fn == nil {
		return fmt.Errorf("tasker worker: register %s/%s: nil HandlerFunc", namespace, handler)
	}
	w.startMu.Lock()
	defer w.startMu.Unlock()
	if w.started {
		return fmt.Errorf("tasker worker: register %s/%s: the worker is already running", namespace, handler)
	}
	key := handlerKey{namespace, handler}
	if _, ok := w.handlers[key]; ok {
		return fmt.Errorf("tasker worker: register %s/%s: already registered", namespace, handler)
	}
	if len(w.handlers) == maxClaimHandlers {
		return fmt.Errorf("tasker worker: register %s/%s: a worker serves at most %d handlers", namespace, handler, maxClaimHandlers)
	}
	w.handlers[key] = fn
	return nil
}

// MustRegister is Register that panics on error, for start-up code.
func (w *Worker) MustRegister(namespace, handler string, fn HandlerFunc) {
	if err := w.Register(namespace, handler, fn); err != nil {
		panic(err)
	}
}

// start marks the worker as running; a worker runs once.
func (w *Worker) start() error {
	w.startMu.Lock()
	defer w.startMu.Unlock()
	switch {
	case w.started:
		return errors.New("tasker worker: Run was already called")
	case w.id == "" || len(w.id) > maxWorkerIDBytes:
		return fmt.Errorf("tasker worker: the worker id must be 1 to %d bytes, got %d", maxWorkerIDBytes, len(w.id))
	case len(w.handlers) == 0:
		return errors.New("tasker worker: no handler registered")
	}
	w.started = true
	return nil
}

// Run claims and runs steps until ctx ends, then shuts down gracefully:
// it stops claiming at once, lets running handlers finish for up to
// ShutdownTimeout while their leases are still renewed, then cancels the
// rest and gives their steps back unrun (ReleaseStep; the attempt is not
// counted). A step whose handler has returned keeps its slot until its
// outcome is reported: a report the server cannot take for now is retried
// until the step's lease ends, so Run may return that much later when the
// server is down at shutdown. It returns nil after a clean shutdown, or an error when the
// worker cannot run at all (no handler, bad id, a request the server
// refuses as invalid).
//
// Run does not wait for a handler that ignores its context's cancellation
// after its step was released; such a goroutine ends whenever the handler
// returns, and its result is dropped.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.start(); err != nil {
		return err
	}
	// Handlers, heartbeats and reports must outlive ctx during shutdown,
	// so they run under base: ctx's values (loggers, traces) without its
	// cancellation. stopHandlers ends the handlers when the shutdown
	// timeout passes; stopHeartbeat ends the heartbeat last.
	base := context.WithoutCancel(ctx)
	handlerCtx, stopHandlers := context.WithCancelCause(base)
	defer stopHandlers(ErrShutdown)
	hbCtx, stopHeartbeat := context.WithCancel(base)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeat(hbCtx)
	}()

	w.log.InfoContext(ctx, "worker started", slog.Int("handlers", len(w.handlers)), slog.Int("concurrency", w.opts.Concurrency))
	err := w.claimLoop(ctx, handlerCtx, base)
	w.shutdown(base, stopHandlers)
	stopHeartbeat()
	<-hbDone
	w.log.InfoContext(base, "worker stopped")
	return err
}

// claimLoop asks for work while slots are free and starts a goroutine per
// claimed step, until ctx ends. With every slot taken it waits for one to
// free instead of polling.
func (w *Worker) claimLoop(ctx, handlerCtx, base context.Context) error {
	refs := make([]*taskerv1.HandlerRef, 0, len(w.handlers))
	for k := range w.handlers {
		refs = append(refs, &taskerv1.HandlerRef{Namespace: k.namespace, Handler: k.handler})
	}
	failures := 0
	for {
		free := w.free()
		if free == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-w.freed:
				continue
			}
		}
		asked := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, w.opts.ClaimWait+claimSlack)
		resp, err := w.steps.ClaimSteps(callCtx, &taskerv1.ClaimStepsRequest{
			WorkerId: w.id,
			Handlers: refs,
			MaxSteps: int32(min(free, maxClaimSteps)), //nolint:gosec // bounded by maxClaimSteps
			Wait:     durationpb.New(w.opts.ClaimWait),
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // shutdown cancelled the long-poll on purpose
			}
			if status.Code(err) == codes.InvalidArgument {
				return fmt.Errorf("tasker worker: the server refused the claim request: %w", err)
			}
			failures++
			delay := claimBackoff(failures)
			w.log.WarnContext(ctx, "claim failed; retrying", slog.Any("error", err), durationAttr("retry_in", delay))
			if !sleep(ctx, delay) {
				return nil
			}
			continue
		}
		if len(resp.GetSteps()) == 0 && time.Since(asked) < w.opts.ClaimWait/2 {
			// A long-poll that ends early with nothing comes from a server
			// that is shutting down; asking again at once would spin.
			failures++
			if !sleep(ctx, claimBackoff(failures)) {
				return nil
			}
			continue
		}
		failures = 0
		for _, c := range resp.GetSteps() {
			w.launch(ctx, handlerCtx, base, c)
		}
	}
}

// claimBackoff is the pause after the n-th claim in a row that failed or
// ended early: exponential from claimBackoffInitial, capped, jittered.
func claimBackoff(n int) time.Duration {
	return backoff.Exponential(claimBackoffInitial, claimBackoffMax, n)
}

// free returns how many more steps may run now.
func (w *Worker) free() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.opts.Concurrency-len(w.running), 0)
}

// signal wakes whoever waits on ch without blocking; one pending wake-up
// is enough because waiters re-check the state they wait for.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// sleep waits for d or ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// withCorrelation returns ctx whose outgoing gRPC metadata carries the
// correlation id, replacing any id already there.
func withCorrelation(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(correlationHeader, id)
	return metadata.NewOutgoingContext(ctx, md)
}

// correlationHeader is the metadata key of correlation ids (DESIGN §6).
const correlationHeader = "x-correlation-id"

// state is where a step in flight stands. Exactly one of the handler's
// goroutine, the heartbeat and shutdown moves it out of stateRunning, and
// that one decides what is reported.
type state int

const (
	// stateRunning: the handler runs; its lease is renewed.
	stateRunning state = iota
	// stateReporting: the handler returned; its outcome is being reported
	// while the lease is still renewed.
	stateReporting
	// stateLost: the server refused to renew the lease; nothing is
	// reported.
	stateLost
	// stateReleased: shutdown gave the step back; nothing is reported.
	stateReleased
)

// execution is one claimed step in flight.
type execution struct {
	step   *Step
	token  string
	log    *slog.Logger
	cancel context.CancelCauseFunc
	// span covers the handler's run and the report of its outcome.
	span trace.Span
	// lease is the lease's length as seen at the claim, for the default
	// heartbeat interval.
	lease time.Duration

	// Guarded by Worker.mu.
	state     state
	expiresAt time.Time
}

// launch starts the handler of one claimed step, or gives the step back
// when the worker stops or serves no such handler.
func (w *Worker) launch(ctx, handlerCtx, base context.Context, c *taskerv1.ClaimedStep) {
	s := newStep(c, w.steps)
	log := w.log.With(
		slog.String("step_id", s.ID), slog.String("task_id", s.TaskID), slog.String("correlation_id", s.CorrelationID),
		slog.String("namespace", s.Namespace), slog.String("handler", s.Handler), slog.String("step", s.Name),
		slog.Int("attempt", s.Attempt),
	)
	fn, ok := w.handlers[handlerKey{s.Namespace, s.Handler}]
	if !ok || ctx.Err() != nil {
		// A claim that raced with shutdown, or a handler the server should
		// not have sent: give it back without counting the attempt.
		reason := "worker shutting down"
		if !ok {
			reason = "worker does not serve this handler"
		}
		w.release(base, log, s, c.GetLeaseToken(), func() time.Time { return s.LeaseExpiresAt }, reason)
		return
	}
	hctx, cancel := context.WithCancelCause(handlerCtx)
	hctx = withCorrelation(hctx, s.CorrelationID)
	hctx, span := w.startSpan(hctx, s, c.GetTraceparent())
	e := &execution{
		step: s, token: c.GetLeaseToken(), log: log, cancel: cancel, span: span,
		lease: max(time.Until(s.LeaseExpiresAt), 0), expiresAt: s.LeaseExpiresAt,
	}
	w.mu.Lock()
	w.running[e] = struct{}{}
	w.mu.Unlock()
	signal(w.added)
	log.DebugContext(hctx, "step claimed")
	go w.execute(hctx, base, e, fn)
}

// execute runs the handler and reports its outcome, unless the lease was
// lost or shutdown released the step meanwhile.
func (w *Worker) execute(ctx, base context.Context, e *execution, fn HandlerFunc) {
	defer e.cancel(nil)
	defer e.span.End()
	start := time.Now()
	result, err := call(ctx, fn, e.step)
	if err != nil {
		e.span.RecordError(err)
		e.span.SetStatus(otelcodes.Error, errorMessage(err))
	}

	w.mu.Lock()
	st := e.state
	if st == stateRunning {
		e.state = stateReporting
	}
	w.mu.Unlock()
	switch st {
	case stateLost:
		e.log.InfoContext(base, "handler returned after its lease was lost; result dropped",
			slog.Any("cause", context.Cause(ctx)), slog.Any("error", err))
		w.done(e)
		return
	case stateReleased:
		e.log.InfoContext(base, "handler returned after its step was released; result dropped", slog.Any("error", err))
		return
	}
	// The report is part of the handler's span: its RPC's spans are
	// children of it.
	rctx := trace.ContextWithSpan(withCorrelation(base, e.step.CorrelationID), e.span)
	if err != nil {
		w.fail(rctx, e, err, time.Since(start))
	} else {
		w.complete(rctx, e, result, time.Since(start))
	}
	w.done(e)
}

// startSpan starts the span of a handler's run, a child of the server's
// span for the attempt when the claim carried its traceparent.
func (w *Worker) startSpan(ctx context.Context, s *Step, traceparent string) (context.Context, trace.Span) {
	if traceparent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	return w.tracer.Start(ctx, "handle "+s.Namespace+"/"+s.Handler,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("tasker.step_id", s.ID), attribute.String("tasker.task_id", s.TaskID),
			attribute.String("tasker.step", s.Name), attribute.String("tasker.handler", s.Handler),
			attribute.String("tasker.namespace", s.Namespace), attribute.Int("tasker.attempt", s.Attempt),
			attribute.String("tasker.worker_id", w.id), attribute.String("tasker.correlation_id", s.CorrelationID),
		))
}

// call runs fn, turning a panic into an error of type "panic".
func call(ctx context.Context, fn HandlerFunc, s *Step) (result map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, WithErrorType(&panicError{value: p, stack: debug.Stack()}, "panic")
		}
	}()
	return fn(ctx, s)
}

// done removes a finished step from the running set and frees its slot.
func (w *Worker) done(e *execution) {
	w.mu.Lock()
	delete(w.running, e)
	w.mu.Unlock()
	signal(w.freed)
}

// shutdown waits up to ShutdownTimeout for the running steps to finish,
// then cancels the handlers still running and releases their steps.
func (w *Worker) shutdown(base context.Context, stopHandlers context.CancelCauseFunc) {
	timer := time.NewTimer(w.opts.ShutdownTimeout)
	defer timer.Stop()
	if n := w.inFlight(); n > 0 {
		w.log.InfoContext(base, "shutting down; waiting for running steps", slog.Int("running", n), durationAttr("timeout", w.opts.ShutdownTimeout))
	}
wait:
	for w.inFlight() > 0 {
		select {
		case <-w.freed:
		case <-timer.C:
			break wait
		}
	}
	// Take the steps whose handlers still run; those already reporting
	// finish their report.
	w.mu.Lock()
	var abandoned []*execution
	for e := range w.running {
		if e.state == stateRunning {
			e.state = stateReleased
			abandoned = append(abandoned, e)
		}
	}
	w.mu.Unlock()
	stopHandlers(ErrShutdown)
	var wg sync.WaitGroup
	for _, e := range abandoned {
		wg.Go(func() {
			w.release(base, e.log, e.step, e.token, w.leaseEnd(e), "worker shut down before the step finished")
			w.done(e)
		})
	}
	wg.Wait()
	// Reports in progress end within their retries, bounded by the lease. Handlers
	// whose lease was lost are not waited for: nothing more is sent for
	// them.
	for w.reporting() > 0 {
		<-w.freed
	}
}

// inFlight counts the steps holding a slot.
func (w *Worker) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// reporting counts the steps whose outcome is being reported.
func (w *Worker) reporting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for e := range w.running {
		if e.state == stateReporting {
			n++
		}
	}
	return n
}

// durationAttr logs d in human form ("97ms", "1.5s") whatever the handler:
// slog's JSON handler writes a Duration as nanoseconds, which no one reads
// at a glance.
func durationAttr(key string, d time.Duration) slog.Attr {
	return slog.String(key, d.Round(time.Microsecond).String())
}
