package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// servedServices are the services whose gRPC health follows the database,
// besides the server as a whole ("").
var servedServices = []string{
	"",
	taskerv1.RegistryService_ServiceDesc.ServiceName,
	taskerv1.TaskService_ServiceDesc.ServiceName,
	taskerv1.StepService_ServiceDesc.ServiceName,
	taskerv1.EventService_ServiceDesc.ServiceName,
}

// minProbeGap bounds how often calls failing with an unavailable database
// trigger a probe: during an outage every call fails, and one probe per gap
// is enough to know.
const minProbeGap = 100 * time.Millisecond

// readiness is the server's one view of whether it can serve: it probes the
// database periodically, and at once when a call finds it unavailable, and
// sets both the gRPC health statuses and the admin /readyz from the same
// result, so the two never disagree. While not ready it probes more often,
// so recovery is noticed within a second at most.
type readiness struct {
	log      *slog.Logger
	probe    func(context.Context) error
	health   *health.Server
	interval time.Duration
	// kick asks for a probe now; it holds at most one request.
	kick chan struct{}

	mu  sync.Mutex
	err error // the last probe's error; nil when ready
}

func newReadiness(log *slog.Logger, probe func(context.Context) error, h *health.Server, interval time.Duration) *readiness {
	return &readiness{log: log, probe: probe, health: h, interval: interval, kick: make(chan struct{}, 1)}
}

// check probes the database once and publishes the outcome.
func (r *readiness) check(ctx context.Context) {
	// A probe must not outlast the interval: a database that does not
	// answer within it is not ready.
	probeCtx, cancel := context.WithTimeout(ctx, min(r.interval, 2*time.Second))
	err := r.probe(probeCtx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down; the probe's failure says nothing
	}
	r.mu.Lock()
	was := r.err
	r.err = err
	r.mu.Unlock()

	status := healthpb.HealthCheckResponse_SERVING
	if err != nil {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	// After health.Shutdown these are ignored, so a probe racing shutdown
	// cannot report SERVING again.
	for _, name := range servedServices {
		r.health.SetServingStatus(name, status)
	}
	switch {
	case err != nil && was == nil:
		r.log.WarnContext(ctx, "not ready: the database is unavailable", slog.Any("error", err))
	case err == nil && was != nil:
		r.log.InfoContext(ctx, "ready again: the database is back")
	}
}

// ready returns the last probe's error, nil when ready.
func (r *readiness) ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// unavailable asks for a probe soon; it never blocks a call.
func (r *readiness) unavailable() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run probes until ctx ends: every interval while ready, five times as often
// (and at least every second) while not, and on every kick no sooner than
// minProbeGap after the last probe.
func (r *readiness) run(ctx context.Context) {
	for {
		wait := r.interval
		if r.ready() != nil {
			wait = min(r.interval/5, time.Second)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-r.kick:
			timer.Stop()
		}
		r.check(ctx)
		gap := time.NewTimer(minProbeGap)
		select {
		case <-ctx.Done():
			gap.Stop()
			return
		case <-gap.C:
		}
	}
}
