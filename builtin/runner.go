package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/fault"
)

// RunnerOptions are the Runner's settings.
type RunnerOptions struct {
	// WorkerID starts the ids the runner claims with, which ListHandlers
	// shows: "<WorkerID>/<handler>" for a handler of every namespace,
	// "<WorkerID>/<namespace>.<handler>" for one namespace's. Default
	// "tasker-server:<hostname>:<pid>".
	WorkerID string
	// Concurrency caps the steps of every handler running at once in this
	// process; 0 means 64.
	Concurrency int
	// PollWait is how long one claim waits for work, and so how soon a
	// namespace whose first template uses a built-in is served; 0 means 1s.
	PollWait time.Duration
	// MaxHeartbeat bounds the time between two renewals of a running
	// step's lease (a third of the lease otherwise): a renewal is also how
	// the runner learns that the step or its task was cancelled, which
	// aborts the handler. 0 means 5s.
	MaxHeartbeat time.Duration
	// ShutdownTimeout is how long running steps may finish once Run's
	// context ends, before they are cancelled and given back unrun; 0
	// means 10s.
	ShutdownTimeout time.Duration
}

// errShutdown is the cause of a handler's context when the server stops
// waiting for it.
var errShutdown = errors.New("builtin: server shutting down; step released")

// Runner claims and runs the registered handlers' steps in process.
type Runner struct {
	engine *engine.Engine
	reg    *Registry
	log    *slog.Logger
	opts   RunnerOptions
	global chan struct{} // one token per running step of any handler
}

// NewRunner returns a runner of reg's handlers on e.
func NewRunner(e *engine.Engine, reg *Registry, log *slog.Logger, opts RunnerOptions) *Runner {
	if opts.WorkerID == "" {
		host, _ := os.Hostname()
		opts.WorkerID = fmt.Sprintf("tasker-server:%s:%d", host, os.Getpid())
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.PollWait <= 0 {
		opts.PollWait = time.Second
	}
	if opts.MaxHeartbeat <= 0 {
		opts.MaxHeartbeat = 5 * time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	return &Runner{engine: e, reg: reg, log: log, opts: opts, global: make(chan struct{}, opts.Concurrency)}
}

// Run serves every key registered now or later until ctx ends, then lets
// running steps finish for ShutdownTimeout, cancels the rest and gives them
// back unrun (ReleaseStep), and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	// Steps and their reports outlive ctx during shutdown; stopSteps ends
	// them when the wait is over.
	base, stopSteps := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopSteps(errShutdown)
	var loops, steps sync.WaitGroup
	started := map[Key]bool{}
	for {
		changed := r.reg.watch()
		for _, k := range r.reg.Keys() {
			if started[k] {
				continue
			}
			started[k] = true
			reg, _ := r.reg.lookup(k)
			slots := make(chan struct{}, reg.opts.Concurrency)
			loops.Go(func() { r.claimLoop(ctx, base, k, slots, &steps) })
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		}
		break
	}
	loops.Wait()
	done := make(chan struct{})
	go func() { steps.Wait(); close(done) }()
	timer := time.NewTimer(r.opts.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		r.log.WarnContext(ctx, "built-in steps still running after the shutdown timeout; releasing them",
			slog.Duration("timeout", r.opts.ShutdownTimeout))
		stopSteps(errShutdown)
		<-done
	}
	return nil
}

// claimLoop claims the steps of one key while it has a free slot of its
// own and of the global cap.
func (r *Runner) claimLoop(ctx, base context.Context, k Key, slots chan struct{}, steps *sync.WaitGroup) {
	const batch = 10
	for ctx.Err() == nil {
		// One slot of each, blocking, then as many more as are free.
		if !acquire(ctx, slots) {
			return
		}
		if !acquire(ctx, r.global) {
			<-slots
			return
		}
		n := 1
		for n < batch && tryAcquire(slots) {
			if !tryAcquire(r.global) {
				<-slots
				break
			}
			n++
		}
		claims, err := r.claim(ctx, k, n)
		for range n - len(claims) {
			<-slots
			<-r.global
		}
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "claiming built-in steps failed", slog.String("handler", k.Handler), slog.Any("error", err))
				wait(ctx, r.opts.PollWait)
			}
			continue
		}
		for _, c := range claims {
			steps.Go(func() {
				defer func() { <-slots; <-r.global }()
				r.run(base, k, c)
			})
		}
	}
}

func (r *Runner) claim(ctx context.Context, k Key, n int) ([]engine.Claim, error) {
	var refs []engine.HandlerRef
	if k.Namespace != "" {
		refs = []engine.HandlerRef{{Namespace: k.Namespace, Handler: k.Handler}}
	} else {
		namespaces, err := r.engine.NamespacesUsing(ctx, k.Handler)
		if err != nil {
			return nil, err
		}
		for _, ns := range namespaces {
			refs = append(refs, engine.HandlerRef{Namespace: ns, Handler: k.Handler})
		}
	}
	if len(refs) == 0 {
		// No template uses the handler yet: look again after a poll.
		wait(ctx, r.opts.PollWait)
		return nil, nil
	}
	// One worker id per key: a worker's handler set is one list, and the
	// keys claim apart.
	id := r.opts.WorkerID + "/" + k.Handler
	if k.Namespace != "" {
		id = r.opts.WorkerID + "/" + k.Namespace + "." + k.Handler
	}
	return r.engine.ClaimSteps(ctx, engine.ClaimParams{
		WorkerID: clipBytes(id, 128), Handlers: refs, Max: n, Wait: r.opts.PollWait, Builtin: true,
	}, nil)
}

// run runs one claimed step and reports its outcome, renewing its lease
// meanwhile. base ends only when a shutdown stops waiting for it.
func (r *Runner) run(base context.Context, k Key, c engine.Claim) {
	lease := engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}
	rctx := correlation.WithID(context.WithoutCancel(base), c.Task.CorrelationID)
	log := r.log.With(slog.String("step_id", lease.StepID), slog.String("handler", c.Step.Handler))
	ctx, cancel := context.WithCancelCause(correlation.WithID(base, c.Task.CorrelationID))
	defer cancel(nil)
	if c.Step.ExecutionDeadline != nil {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, *c.Step.ExecutionDeadline)
		defer stop()
	}
	lost := make(chan struct{})
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		r.heartbeat(ctx, rctx, lease, c.Step.LeaseDuration, func(err error) {
			close(lost)
			cancel(err)
		})
	}()

	s := &Step{
		ID: c.Step.ID, TaskID: c.Step.TaskID, Namespace: c.Step.Namespace, Name: c.Step.Name,
		Handler: c.Step.Handler, Attempt: c.Step.Attempts, CorrelationID: c.Task.CorrelationID,
		Config: c.Step.Config, Context: c.Task.Context,
	}
	if len(c.Parents) > 0 {
		s.Parents = make(map[string]json.RawMessage, len(c.Parents))
		for _, p := range c.Parents {
			s.Parents[p.Name] = p.Result
		}
	}
	result, err := r.call(ctx, k, s)
	cancel(nil)
	<-hbDone
	select {
	case <-lost:
		log.InfoContext(rctx, "built-in step's lease lost; nothing reported", slog.Any("cause", context.Cause(ctx)))
		return
	default:
	}
	if base.Err() != nil {
		// The shutdown stopped waiting: give the step back unrun.
		rel, stop := context.WithTimeout(rctx, 5*time.Second)
		defer stop()
		if err := r.engine.ReleaseStep(rel, lease, "server shutting down"); err != nil {
			log.WarnContext(rctx, "releasing a built-in step failed; its lease will expire", slog.Any("error", err))
		}
		return
	}
	if err == nil {
		err = r.engine.CompleteStep(rctx, lease, result)
		if fault.CodeOf(err) != fault.InvalidArgument {
			r.logReport(rctx, log, err)
			return
		}
		// The result cannot be stored (too large, not JSON): the handler
		// will not do better next time.
		err = Permanent("invalid_result", "%v", err)
	}
	var fe *Error
	if !errors.As(err, &fe) {
		fe = &Error{Type: "error", Message: err.Error()}
	}
	msg := fe.Message
	if msg == "" {
		msg = fe.Type
	}
	_, err = r.engine.FailStep(rctx, engine.FailParams{
		Lease: lease, Message: clipBytes(msg, 4<<10), Type: clipBytes(fe.Type, 128), NonRetryable: fe.NonRetryable, RetryAfter: fe.RetryAfter,
	})
	r.logReport(rctx, log, err)
}

// call runs the handler, turning a panic into a retryable failure.
func (r *Runner) call(ctx context.Context, k Key, s *Step) (result map[string]any, err error) {
	reg, ok := r.reg.lookup(k)
	if !ok {
		return nil, Retryable("no_handler", 0, "no in-process handler for %s", k.Handler)
	}
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, Retryable("panic", 0, "handler panicked: %v", p)
		}
	}()
	return reg.fn(ctx, s)
}

func (r *Runner) logReport(ctx context.Context, log *slog.Logger, err error) {
	switch {
	case err == nil:
	case fault.CodeOf(err) == fault.Aborted:
		// Timed out, cancelled or reaped while reporting: the engine
		// already moved the step.
		log.InfoContext(ctx, "built-in step's report refused", slog.Any("error", err))
	default:
		log.WarnContext(ctx, "reporting a built-in step failed; its lease will expire", slog.Any("error", err))
	}
}

// heartbeat renews the lease every third of its duration (at most
// MaxHeartbeat) until ctx ends;
// when the engine refuses (lease lost, timed out, cancelled) it calls lost.
func (r *Runner) heartbeat(ctx, rctx context.Context, lease engine.Lease, d time.Duration, lost func(error)) {
	every := max(min(d/3, r.opts.MaxHeartbeat), 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := r.engine.ExtendLease(rctx, lease, 0)
		switch fault.CodeOf(err) {
		case 0:
		case fault.Aborted, fault.NotFound, fault.FailedPrecondition:
			lost(err)
			return
		default:
			// The database may be back before the lease ends.
			r.log.WarnContext(rctx, "renewing a built-in step's lease failed", slog.Any("error", err))
		}
	}
}

func acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func tryAcquire(sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// clipBytes cuts s to at most n bytes on a rune boundary.
func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
