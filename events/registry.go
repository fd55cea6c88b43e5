package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerhq/tasker/backoff"
	"github.com/taskerhq/tasker/fault"
)

// SubscriberFunc handles one event delivered to an in-process subscriber.
// An error (or a panic) is logged and the same event is delivered again
// after a backoff, so a subscriber sees every matching event at least
// once, in order; it should be idempotent. ctx ends when the process
// stops.
type SubscriberFunc func(ctx context.Context, ev *Stored) error

// Registry holds the in-process subscribers and the exporters of a
// process. It is filled at start-up (Subscribe, RegisterExporter) and
// then read: Run takes the subscribers once, and Subscribe refuses to add
// one after that. Exporters may be looked up while Run runs, but are
// registered before any lookup, so the maps need no lock (registering
// exporters concurrently with lookups is not supported).
type Registry struct {
	logger      *slog.Logger
	subscribers map[string]subscriber
	exporters   map[string]Exporter
	sinks       map[string]fileSink
	running     atomic.Bool
	// RetryMin and RetryMax bound the backoff between deliveries of an
	// event a subscriber failed, and between reconnections after a read
	// error; defaults 100ms and 30s.
	RetryMin, RetryMax time.Duration
}

type subscriber struct {
	name    string
	filter  Filter
	matcher *Matcher
	fn      SubscriberFunc
}

// NewRegistry returns a registry with the built-in exporters FormatJSON
// (JSONLines) and FormatCSV (CSV) and no subscribers.
func NewRegistry(logger *slog.Logger) *Registry {
	r := &Registry{
		logger:      logger,
		subscribers: map[string]subscriber{},
		exporters:   map[string]Exporter{},
		sinks:       map[string]fileSink{},
		RetryMin:    100 * time.Millisecond,
		RetryMax:    30 * time.Second,
	}
	r.MustRegisterExporter(FormatJSON, JSONLines{}, false)
	r.MustRegisterExporter(FormatCSV, CSV{}, false)
	return r
}

// namePattern bounds subscriber names and export formats: they appear in
// logs and flags.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// errRunning reports a subscriber added after Run started.
var errRunning = errors.New("events: the registry is already running; subscribe before Run")

// Subscribe adds an in-process subscriber: fn receives every event
// matching filter that is numbered after Run starts, in sequence order,
// from its own reader of the log (see Subscription), so a slow subscriber
// never delays the engine or the others. The name (lowercase letters,
// digits, "_", ".", "-"; at most 64) identifies it in logs. Errors: an
// invalid name or filter, a name already taken, or Run already started.
func (r *Registry) Subscribe(name string, filter Filter, fn SubscriberFunc) error {
	if r.running.Load() {
		return errRunning
	}
	if !namePattern.MatchString(name) {
		return fmt.Errorf("events: subscriber name %q must match %s", name, namePattern)
	}
	if fn == nil {
		return fmt.Errorf("events: subscriber %q has no function", name)
	}
	if _, dup := r.subscribers[name]; dup {
		return fmt.Errorf("events: subscriber %q is already registered", name)
	}
	m, err := ParseFilter(filter)
	if err != nil {
		return fmt.Errorf("events: subscriber %q: %w", name, err)
	}
	r.subscribers[name] = subscriber{name: name, filter: filter, matcher: m, fn: fn}
	return nil
}

// MustSubscribe is Subscribe for start-up code, where an error is a
// programming error: it panics.
func (r *Registry) MustSubscribe(name string, filter Filter, fn SubscriberFunc) {
	if err := r.Subscribe(name, filter, fn); err != nil {
		panic(err)
	}
}

// RegisterExporter makes e the exporter of format (a name like "json";
// lowercase letters, digits, "_", ".", "-"). A format already registered
// is an error unless replace is set, which swaps the exporter, built-in
// ones included.
func (r *Registry) RegisterExporter(format string, e Exporter, replace bool) error {
	if !namePattern.MatchString(format) {
		return fmt.Errorf("events: export format %q must match %s", format, namePattern)
	}
	if e == nil {
		return fmt.Errorf("events: export format %q has no exporter", format)
	}
	if _, dup := r.exporters[format]; dup && !replace {
		return fmt.Errorf("events: export format %q is already registered; pass replace to swap it", format)
	}
	r.exporters[format] = e
	return nil
}

// MustRegisterExporter is RegisterExporter for start-up code: it panics on
// an error.
func (r *Registry) MustRegisterExporter(format string, e Exporter, replace bool) {
	if err := r.RegisterExporter(format, e, replace); err != nil {
		panic(err)
	}
}

// Exporter returns the exporter of format.
func (r *Registry) Exporter(format string) (Exporter, bool) {
	e, ok := r.exporters[format]
	return e, ok
}

// Formats returns the registered export formats, sorted.
func (r *Registry) Formats() []string {
	out := make([]string, 0, len(r.exporters))
	for f := range r.exporters {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// Run runs every subscriber and file export until ctx ends, then returns
// nil. Each starts
// at the head of the log as Run finds it and follows it with a
// Subscription of its own. A read error (a lost database connection) is
// logged and the subscriber resumes where it was after a backoff; a
// subscriber that fell behind retention is told so in the log and resumes
// at the oldest retained event. Call Run once.
func (r *Registry) Run(ctx context.Context, l *Log) error {
	if r.running.Swap(true) {
		return errors.New("events: the registry is already running")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range r.sinks {
		wg.Go(func() { r.runSink(ctx, l, s) })
	}
	if len(r.subscribers) == 0 {
		return nil
	}
	head, err := r.headWithRetry(ctx, l)
	if err != nil {
		return nil //nolint:nilerr // only ctx ends headWithRetry: a shutdown is no failure
	}
	for _, sub := range r.subscribers {
		wg.Go(func() { r.follow(ctx, l, sub, head) })
	}
	return nil
}

// SetLogger replaces the logger the registry's subscribers and exports
// log to; call it before Run.
func (r *Registry) SetLogger(l *slog.Logger) { r.logger = l }

// headWithRetry reads the head, retrying failures until ctx ends.
func (r *Registry) headWithRetry(ctx context.Context, l *Log) (int64, error) {
	wait := backoff.New(r.RetryMin, r.RetryMax)
	for {
		head, err := l.Head(ctx)
		if err == nil {
			return head, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		r.logger.WarnContext(ctx, "event subscribers: reading the head failed; retrying", slog.Any("error", err))
		if !sleep(ctx, wait.Next()) {
			return 0, ctx.Err()
		}
	}
}

// follow runs one subscriber from after until ctx ends.
func (r *Registry) follow(ctx context.Context, l *Log, sub subscriber, after int64) {
	log := r.logger.With(slog.String("subscriber", sub.name))
	deliver := func(ctx context.Context, ev *Stored) error { return r.deliver(ctx, log, sub, ev) }
	start := StartAfter
	wait := backoff.New(r.RetryMin, r.RetryMax)
	for ctx.Err() == nil {
		s, err := l.Subscribe(ctx, SubscriptionOptions{Filter: sub.filter, Start: start, After: after})
		if err == nil {
			wait.Reset()
			err = s.Run(ctx, deliver, nil)
			after = s.Scanned()
		}
		if ctx.Err() != nil {
			return
		}
		if fe, ok := fault.As(err); ok && fe.Reason == fault.ReasonLogTruncated {
			log.ErrorContext(ctx, "event subscriber fell behind the retained log; events were skipped",
				slog.Int64("after_sequence", after), slog.String("oldest_sequence", fe.Metadata["oldest_sequence"]))
			start, after = StartBeginning, 0
			continue
		}
		start = StartAfter
		pause := wait.Next()
		log.WarnContext(ctx, "event subscriber: reading the log failed; resuming", slog.Int64("after_sequence", after),
			slog.Any("error", err), slog.Duration("backoff", pause))
		sleep(ctx, pause)
	}
}

// deliver hands ev to sub until it succeeds or ctx ends.
func (r *Registry) deliver(ctx context.Context, log *slog.Logger, sub subscriber, ev *Stored) error {
	wait := backoff.New(r.RetryMin, r.RetryMax)
	for {
		err := call(ctx, sub.fn, ev)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pause := wait.Next()
		log.WarnContext(ctx, "event subscriber failed; delivering the event again", slog.Int64("sequence", ev.Sequence),
			slog.String("type", ev.Type), slog.Any("error", err), slog.Duration("backoff", pause))
		if !sleep(ctx, pause) {
			return ctx.Err()
		}
	}
}

// call runs fn, turning a panic into an error.
func call(ctx context.Context, fn SubscriberFunc, ev *Stored) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(ctx, ev)
}
