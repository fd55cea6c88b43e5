package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
)

// metrics holds the process's OpenTelemetry instruments and serves them in
// the Prometheus text format. Each one has its own registry, so servers in
// one process (tests, an embedding program) count apart.
type metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
	counters map[engine.ObservationKind]metric.Int64Counter
	// Histograms of the observations that carry a duration, in seconds.
	durations map[engine.ObservationKind]metric.Float64Histogram
	// stats caches the gauges read from the database (gauges.go).
	stats *dbStats
}

// Bucket bounds in seconds: from a claim within milliseconds of a commit
// to tasks that run for hours.
var durationBuckets = []float64{
	0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400,
}

// newMetrics builds the instruments and the gauges read at each scrape
// (or export). Besides the Prometheus exporter /metrics serves, readers
// receive the same instruments (an OTLP exporter).
func newMetrics(eventLog *events.Log, db *storage.DB, readers ...sdkmetric.Reader) (*metrics, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	popts := []sdkmetric.Option{sdkmetric.WithReader(exporter)}
	for _, r := range readers {
		popts = append(popts, sdkmetric.WithReader(r))
	}
	provider := sdkmetric.NewMeterProvider(popts...)
	meter := provider.Meter("github.com/taskerhq/tasker")
	m := &metrics{
		provider:  provider,
		handler:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		counters:  map[engine.ObservationKind]metric.Int64Counter{},
		durations: map[engine.ObservationKind]metric.Float64Histogram{},
		stats:     &dbStats{},
	}
	var errs []error
	counter := func(kind engine.ObservationKind, name, help string) {
		c, err := meter.Int64Counter(name, metric.WithDescription(help))
		errs = append(errs, err)
		m.counters[kind] = c
	}
	histogram := func(kind engine.ObservationKind, name, help string) {
		h, err := meter.Float64Histogram(name, metric.WithDescription(help), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		m.durations[kind] = h
	}
	counter(engine.ObservedStepClaimed, "tasker_steps_claimed", "Steps claimed by workers.")
	counter(engine.ObservedStepCompleted, "tasker_steps_completed", "Steps completed by workers.")
	counter(engine.ObservedStepFailed, "tasker_steps_failed", "Failures reported by workers, by whether they were retryable.")
	counter(engine.ObservedStepRetried, "tasker_steps_retried", "Failed, timed-out or expired attempts scheduled for a retry.")
	counter(engine.ObservedStepTimedOut, "tasker_steps_timed_out", "Attempts the reaper ended past their execution timeout.")
	counter(engine.ObservedStepLeaseExpired, "tasker_steps_lease_expired", "Attempts the reaper ended because their lease expired.")
	counter(engine.ObservedTaskCreated, "tasker_tasks_created", "Tasks created.")
	counter(engine.ObservedTaskDuplicated, "tasker_tasks_duplicated", "Creates answered with an existing task.")
	counter(engine.ObservedTaskCompleted, "tasker_tasks_completed", "Tasks completed.")
	counter(engine.ObservedTaskFailed, "tasker_tasks_failed", "Tasks failed.")
	counter(engine.ObservedTaskCancelled, "tasker_tasks_cancelled", "Tasks cancelled.")
	histogram(engine.ObservedStepClaimed, "tasker_step_claim_latency", "Time from a step becoming due to its claim.")
	run, err := meter.Float64Histogram("tasker_step_run_time", metric.WithDescription("Time from a step's claim to the report or reaping that ended the attempt."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	for _, k := range []engine.ObservationKind{engine.ObservedStepCompleted, engine.ObservedStepFailed, engine.ObservedStepTimedOut, engine.ObservedStepLeaseExpired} {
		m.durations[k] = run
	}
	task, err := meter.Float64Histogram("tasker_task_duration", metric.WithDescription("Time from a task's creation to its completion, failure or cancellation."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	for _, k := range []engine.ObservationKind{engine.ObservedTaskCompleted, engine.ObservedTaskFailed, engine.ObservedTaskCancelled} {
		m.durations[k] = task
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, m.gauges(meter, eventLog, db)
}

// Record counts one committed change (engine.Recorder).
func (m *metrics) Record(o engine.Observation) {
	attrs := []attribute.KeyValue{attribute.String("namespace", o.Namespace)}
	if o.Handler != "" {
		attrs = append(attrs, attribute.String("handler", o.Handler))
	}
	if o.Kind == engine.ObservedStepFailed {
		attrs = append(attrs, attribute.Bool("retryable", o.Retryable))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	ctx := context.Background()
	if c, ok := m.counters[o.Kind]; ok {
		c.Add(ctx, 1, set)
	}
	if h, ok := m.durations[o.Kind]; ok {
		if o.Kind == engine.ObservedStepFailed {
			// The run time is per handler, whatever the failure.
			set = metric.WithAttributeSet(attribute.NewSet(attrs[:len(attrs)-1]...))
		}
		h.Record(ctx, o.Duration.Seconds(), set)
	}
}

// serveMetrics serves /metrics; with an Authenticator, only to a bearer
// token holding metrics:read (or admin), since the metrics name the
// namespaces and handlers in use.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Authenticator != nil {
		scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(secret) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tasker"`)
			http.Error(w, `this endpoint needs a token: send the header "Authorization: Bearer <token>"`, http.StatusUnauthorized)
			return
		}
		p, err := s.cfg.Authenticator.Authenticate(r.Context(), strings.TrimSpace(secret))
		switch {
		case errors.Is(err, auth.ErrInvalidToken):
			w.Header().Set("WWW-Authenticate", `Bearer realm="tasker", error="invalid_token"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		case err != nil:
			s.log.ErrorContext(r.Context(), "metrics: token lookup failed", "error", err)
			http.Error(w, "token lookup failed", http.StatusServiceUnavailable)
			return
		case !p.Has(auth.MetricsRead):
			http.Error(w, "the token lacks the scope "+string(auth.MetricsRead), http.StatusForbidden)
			return
		}
	}
	s.metrics.handler.ServeHTTP(w, r)
}
