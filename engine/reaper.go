package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
)

// timeoutErrorType is the error type the reaper records for an attempt
// that passed its execution timeout; worker calls on that attempt answer
// TIMED_OUT.
const timeoutErrorType = "timeout"

// reapBatch bounds the expired steps handled per pass; a longer backlog is
// taken in further passes at once.
const reapBatch = 100

// maxReaperSleep bounds the reaper's sleep so a lease written by another
// replica (which cannot wake this one in-process) is reaped within it.
const maxReaperSleep = 30 * time.Second

// RunReaper returns steps whose lease expired or whose execution deadline
// passed to waiting_for_retry (or error when no attempt is left), until ctx
// ends. It sleeps until the earliest expiry and is woken by claims that set
// an earlier one. Several replicas may reap at once: each step is taken
// with a guarded update on its state and lease token, so a reaper never
// overwrites a step that completed or was reclaimed meanwhile.
func (e *Engine) RunReaper(ctx context.Context) error {
	for {
		woken := e.leases.wait()
		next, err := e.reapOnce(ctx)
		if err == nil {
			err = e.pruneWorkers(ctx, e.now())
		}
		select {
		case <-ctx.Done():
			return nil // a pass cut short by shutdown is not a failure
		default:
		}
		if err != nil {
			e.log.ErrorContext(ctx, "reaper pass failed", slog.Any("error", err))
			next = e.now().Add(time.Second)
		}
		sleep := min(next.Sub(e.now()), maxReaperSleep)
		e.reaperWake.Store(e.now().Add(sleep).UnixNano())
		if sleep <= 0 {
			continue
		}
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-woken:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// noteLease wakes the reaper when a new lease expires before it would.
func (e *Engine) noteLease(expiry time.Time) {
	if expiry.UnixNano() < e.reaperWake.Load() {
		e.leases.notify()
	}
}

// reapOnce handles the steps expired now and returns when the next one
// expires (or a time far off when none is held).
func (e *Engine) reapOnce(ctx context.Context) (time.Time, error) {
	now := e.now()
	expired, err := e.db.Reader.Step.Query().
		Where(step.StateEQ(step.StateInProgress), step.Or(step.LeaseExpiresAtLTE(now), step.ExecutionDeadlineLTE(now))).
		Limit(reapBatch).
		All(ctx)
	if err != nil {
		return time.Time{}, err
	}
	for _, s := range expired {
		if err := e.reap(ctx, s); err != nil {
			return time.Time{}, err
		}
	}
	if len(expired) == reapBatch {
		return e.now(), nil
	}
	next := now.Add(maxReaperSleep)
	for _, q := range []*ent.StepQuery{
		e.db.Reader.Step.Query().Where(step.StateEQ(step.StateInProgress), step.LeaseExpiresAtNotNil()).Order(ent.Asc(step.FieldLeaseExpiresAt)),
		e.db.Reader.Step.Query().Where(step.StateEQ(step.StateInProgress), step.ExecutionDeadlineNotNil()).Order(ent.Asc(step.FieldExecutionDeadline)),
	} {
		s, err := q.First(ctx)
		if ent.IsNotFound(err) {
			continue
		}
		if err != nil {
			return time.Time{}, err
		}
		for _, t := range []*time.Time{s.LeaseExpiresAt, s.ExecutionDeadline} {
			if t != nil && t.Before(next) {
				next = *t
			}
		}
	}
	return next, nil
}

// The reasons the reaper records for the attempts it ends.
const (
	reasonTimeout      = "execution timeout"
	reasonLeaseExpired = "lease expired"
)

// reap ends the attempt of one expired step, fenced by its lease token.
func (e *Engine) reap(ctx context.Context, seen *ent.Step) error {
	if seen.LeaseToken == nil {
		return nil
	}
	token := *seen.LeaseToken
	err := e.write(ctx, "Reap", func(tx *ent.Tx) (*change, error) {
		c, err := e.lockTask(ctx, tx, seen.TaskID)
		if err != nil {
			return nil, err
		}
		s, err := tx.Step.Get(ctx, seen.ID)
		if err != nil {
			return nil, err
		}
		if s.State != step.StateInProgress || s.LeaseToken == nil || *s.LeaseToken != token {
			return c, nil // completed, failed or reclaimed meanwhile
		}
		message, errType, reason := "", "", ""
		switch {
		case s.ExecutionDeadline != nil && !c.now.Before(*s.ExecutionDeadline):
			message, errType, reason = "execution timeout passed", timeoutErrorType, reasonTimeout
		case s.LeaseExpiresAt != nil && !c.now.Before(*s.LeaseExpiresAt):
			message, errType, reason = "lease expired: the worker stopped heartbeating", "lease_expired", reasonLeaseExpired
		default:
			return c, nil // extended meanwhile
		}
		// Read under the task's lock, s stays in progress with this token
		// until the commit: failSet's guard on the state is enough.
		ended := c.endAttempt(s, message, errType, false, 0, reason).State == StepError
		if err := failSet(ctx, tx, []*ent.Step{s}, c.now); err != nil || !ended {
			return c, err
		}
		return c, c.finalize(ctx)
	})
	if err != nil {
		return err
	}
	e.log.InfoContext(ctx, "reaped step", slog.String("step_id", seen.ID.String()), slog.String("task_id", seen.TaskID.String()))
	return nil
}
