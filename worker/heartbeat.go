package worker

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// heartbeat renews the leases of every step in flight, all in batched
// ExtendLease calls, until ctx ends. It sleeps while nothing runs and
// renews no later than the interval of the shortest lease held, so a step
// claimed with a short lease is renewed in time even when longer ones were
// held before.
func (w *Worker) heartbeat(ctx context.Context) {
	var next time.Time // zero while nothing is held
	for {
		var wake <-chan time.Time
		var timer *time.Timer
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-w.added:
			if iv, ok := w.interval(); ok {
				if due := time.Now().Add(iv); next.IsZero() || due.Before(next) {
					next = due
				}
			}
		case <-wake:
			w.renew(ctx)
			next = time.Time{}
			if iv, ok := w.interval(); ok {
				next = time.Now().Add(iv)
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// interval is how long the heartbeat may sleep given the leases held now,
// and false when none is.
func (w *Worker) interval() (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	shortest, found := time.Duration(0), false
	for e := range w.running {
		if e.state != stateRunning && e.state != stateReporting {
			continue
		}
		if !found || e.lease < shortest {
			shortest = e.lease
		}
		found = true
	}
	if !found {
		return 0, false
	}
	if w.opts.HeartbeatInterval > 0 {
		return w.opts.HeartbeatInterval, true
	}
	return max(shortest/3, minHeartbeatInterval), true
}

// renew extends every lease held, at most maxLeasesPerExtend per call. A
// lease the server refuses for good cancels its handler; a failed call is
// retried at the next beat, which comes while the lease still runs.
func (w *Worker) renew(ctx context.Context) {
	w.mu.Lock()
	held := make([]*execution, 0, len(w.running))
	for e := range w.running {
		if e.state == stateRunning || e.state == stateReporting {
			held = append(held, e)
		}
	}
	w.mu.Unlock()
	iv, _ := w.interval()
	for len(held) > 0 {
		batch := held[:min(len(held), maxLeasesPerExtend)]
		held = held[len(batch):]
		req := &taskerv1.ExtendLeaseRequest{WorkerId: w.id, Leases: make([]*taskerv1.StepLease, len(batch))}
		for i, e := range batch {
			req.Leases[i] = &taskerv1.StepLease{StepId: e.step.ID, LeaseToken: e.token}
		}
		callCtx, cancel := context.WithTimeout(ctx, max(2*iv, time.Second))
		resp, err := w.steps.ExtendLease(callCtx, req)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.log.WarnContext(ctx, "heartbeat failed; retrying at the next beat", slog.Int("leases", len(batch)), slog.Any("error", err))
			}
			continue
		}
		exts := resp.GetExtensions()
		if len(exts) != len(batch) {
			w.log.ErrorContext(ctx, "heartbeat answered the wrong number of leases", slog.Int("sent", len(batch)), slog.Int("answered", len(exts)))
			continue
		}
		for i, ext := range exts {
			w.extended(ctx, batch[i], ext)
		}
	}
}

// extended applies one lease's renewal outcome. A definitive refusal
// (Aborted, NotFound, or FailedPrecondition for a step already completed
// by this lease) cancels a handler still running; for a step whose
// handler already returned it only means its report won the race.
func (w *Worker) extended(ctx context.Context, e *execution, ext *taskerv1.LeaseExtension) {
	r := ext.GetResult()
	code := codes.Code(r.GetCode()) //nolint:gosec // status codes are small
	w.mu.Lock()
	st := e.state
	switch {
	case code == codes.OK:
		if ext.GetLeaseExpiresAt() != nil {
			e.expiresAt = ext.GetLeaseExpiresAt().AsTime()
		}
	case st == stateRunning && (code == codes.Aborted || code == codes.NotFound || code == codes.FailedPrecondition):
		e.state = stateLost
	}
	w.mu.Unlock()
	switch {
	case code == codes.OK || st != stateRunning:
		return
	case code == codes.Aborted || code == codes.NotFound || code == codes.FailedPrecondition:
		e.cancel(&LeaseLostError{StepID: e.step.ID, Code: code, Reason: r.GetReason(), Message: r.GetMessage()})
		e.log.InfoContext(ctx, "lease lost; handler cancelled and its result will be dropped",
			slog.String("code", code.String()), slog.String("reason", r.GetReason()), slog.String("message", r.GetMessage()))
	default:
		e.log.WarnContext(ctx, "lease not renewed; retrying at the next beat",
			slog.String("code", code.String()), slog.String("message", r.GetMessage()))
	}
}
