package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
)

// Bounds of worker reports.
const (
	maxResultBytes       = 1 << 20
	maxErrorMessageBytes = 16 << 10
	maxErrorTypeBytes    = 128
	maxExtendBy          = time.Hour
)

// Lease names a claim: the step and the token its claim returned.
type Lease struct {
	StepID string
	Token  string
}

func (l Lease) parse() (uuid.UUID, error) {
	id, err := parseID("step_id", l.StepID)
	if err != nil {
		return uuid.Nil, err
	}
	if l.Token == "" {
		return uuid.Nil, fault.Invalid("lease_token", "is required")
	}
	return id, nil
}

// leaseLost explains why a worker call on s with token no longer holds the
// claim, in the terms of the error table: the task or step was cancelled,
// the attempt timed out, or the lease expired or belongs to another attempt.
func leaseLost(s *ent.Step, t *ent.Task, token string, now time.Time) error {
	switch {
	case s.State == step.StateCancelled || t.State == task.StateCancelled:
		return fault.Abortedf(fault.ReasonCancelled, "step %s was cancelled", s.ID)
	case s.LeaseToken != nil && *s.LeaseToken == token && s.State != step.StateInProgress &&
		s.LastErrorType == timeoutErrorType:
		// The reaper ended this attempt at its deadline; say so rather
		// than a bare lost lease.
		return fault.Abortedf(fault.ReasonTimedOut, "step %s passed its execution timeout", s.ID)
	case s.LeaseToken == nil || *s.LeaseToken != token || s.State != step.StateInProgress:
		return fault.Abortedf(fault.ReasonLeaseLost, "step %s is no longer held by this lease (state %s)", s.ID, s.State)
	case s.ExecutionDeadline != nil && !now.Before(*s.ExecutionDeadline):
		return fault.Abortedf(fault.ReasonTimedOut, "step %s passed its execution timeout at %s", s.ID, s.ExecutionDeadline.Format(time.RFC3339Nano))
	case s.LeaseExpiresAt != nil && !now.Before(*s.LeaseExpiresAt):
		return fault.Abortedf(fault.ReasonLeaseLost, "the lease of step %s expired at %s", s.ID, s.LeaseExpiresAt.Format(time.RFC3339Nano))
	}
	return nil
}

func alreadyCompleted(s *ent.Step, why string) error {
	return &fault.Error{
		Code: fault.FailedPrecondition, Reason: fault.ReasonAlreadyCompleted,
		Message:  fmt.Sprintf("step %s: %s", s.ID, why),
		Metadata: map[string]string{"current_state": stepStateName(s.State)},
	}
}

// heldStep locks the step's task (PostgreSQL; SQLite's single writer
// already excludes every other writer) and then reads the step, so the step
// read is the latest and stays so until the commit: every writer of a step
// holds its task's lock (doc.go). Two statements.
func (e *Engine) heldStep(ctx context.Context, tx *ent.Tx, id uuid.UUID) (*change, *ent.Step, error) {
	// "id IN (SELECT task_id …)" reads two rows by key; ent's HasStepsWith
	// is a correlated EXISTS, which SQLite answers by scanning every task.
	q := tx.Task.Query().Where(func(s *sql.Selector) {
		steps := sql.Table(step.Table)
		s.Where(sql.In(s.C(task.FieldID),
			sql.Select(steps.C(step.FieldTaskID)).From(steps).Where(sql.EQ(steps.C(step.FieldID), id))))
	})
	q.Where(func(s *sql.Selector) { e.db.SQL().LockForWrite(s) })
	t, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil, fault.NotFoundf("step", id.String())
	}
	if err != nil {
		return nil, nil, err
	}
	s, err := tx.Step.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return &change{e: e, tx: tx, task: t, now: e.now()}, s, nil
}

// CompleteStep stores a step's result and, in the same transaction,
// enqueues the children whose parents are now all done and finalizes the
// task when it can. Repeating a completion that took effect with the same
// lease and result succeeds again. It is CompleteSteps of one entry.
func (e *Engine) CompleteStep(ctx context.Context, l Lease, result map[string]any) error {
	return e.CompleteSteps(ctx, []Completion{{Lease: l, Result: result}})[0]
}

// FailParams reports a failed attempt.
type FailParams struct {
	Lease
	Message      string
	Type         string
	NonRetryable bool
	// RetryAfter, when positive, replaces the policy's backoff (capped by
	// its max backoff).
	RetryAfter time.Duration
}

// check validates p and returns its step id.
func (p FailParams) check() (uuid.UUID, error) {
	id, err := p.parse()
	if err != nil {
		return uuid.Nil, err
	}
	var vs []fault.Violation
	if p.Message == "" || len(p.Message) > maxErrorMessageBytes {
		vs = append(vs, fault.Violation{Field: "error.message", Description: fmt.Sprintf("must be 1 to %d bytes", maxErrorMessageBytes)})
	}
	if len(p.Type) > maxErrorTypeBytes {
		vs = append(vs, fault.Violation{Field: "error.type", Description: fmt.Sprintf("must be at most %d bytes", maxErrorTypeBytes)})
	}
	if p.RetryAfter < 0 {
		vs = append(vs, fault.Violation{Field: "retry_after", Description: "must not be negative"})
	}
	if len(vs) > 0 {
		return uuid.Nil, fault.Invalids(vs)
	}
	return id, nil
}

// FailOutcome tells what a failure led to.
type FailOutcome struct {
	State       StepState
	AvailableAt *time.Time
}

// FailStep records a failed attempt: with attempts left and a retryable
// error the step waits for its backoff; otherwise it is in error and the
// task fails once nothing else can progress. It is FailSteps of one entry.
func (e *Engine) FailStep(ctx context.Context, p FailParams) (FailOutcome, error) {
	outs, errs := e.FailSteps(ctx, []FailParams{p})
	return outs[0], errs[0]
}

// The reasons endAttempt records for a worker's own failure; the reaper
// gives its own ("lease expired", "execution timeout").
const (
	reasonRetryable    = "retryable failure"
	reasonNonRetryable = "non-retryable failure"
	reasonExhausted    = "attempts exhausted"
)

// failedWith reports whether the attempt of s that token names has already
// ended in a failure (a worker's or the reaper's): a failure report naming
// it again is a repeat, not a new failure.
func failedWith(s *ent.Step, token string) bool {
	return (s.State == step.StateWaitingForRetry || s.State == step.StateError) &&
		s.LeaseToken != nil && *s.LeaseToken == token
}

// failedByWorker reports, of the given steps, those whose last move was a
// FailStep ending their current attempt, rather than the reaper ending it:
// a worker repeating its failure with a different error is told
// ALREADY_COMPLETED, as for a completion, while a worker whose lease the
// reaper ended is told it lost the lease. Only mismatched repeats pay for
// this read, one for all of them: the last transition of each step.
func failedByWorker(ctx context.Context, tx *ent.Tx, steps []*ent.Step) (map[uuid.UUID]bool, error) {
	out := map[uuid.UUID]bool{}
	if len(steps) == 0 {
		return out, nil
	}
	ids := make([]any, len(steps))
	for i, s := range steps {
		ids[i] = s.ID
	}
	last, err := tx.StepTransition.Query().Where(func(s *sql.Selector) {
		t := sql.Table(steptransition.Table)
		s.Where(sql.In(s.C(steptransition.FieldID),
			sql.Select(sql.Max(t.C(steptransition.FieldID))).From(t).
				Where(sql.In(t.C(steptransition.FieldStepID), ids...)).
				GroupBy(t.C(steptransition.FieldStepID))))
	}).All(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[uuid.UUID]*ent.Step, len(steps))
	for _, s := range steps {
		byID[s.ID] = s
	}
	for _, tr := range last {
		s := byID[tr.StepID]
		switch tr.Reason {
		case reasonRetryable, reasonNonRetryable, reasonExhausted:
			out[s.ID] = tr.ToState == string(s.State) && tr.Attempt == s.Attempts
		}
	}
	return out, nil
}

// endAttempt decides how the running attempt of s, read under its task's
// lock, ends with an error: back to waiting_for_retry with a backoff when
// attempts are left and the error is retryable, to error otherwise. reason
// overrides the recorded cause (the reaper uses it for expired leases and
// timeouts). It records the move on c and applies it to s in memory;
// failSet writes it, and a step in error then needs its task finalized.
func (c *change) endAttempt(s *ent.Step, message, errType string, nonRetryable bool, retryAfter time.Duration, reason string) FailOutcome {
	payload := map[string]any{"error_message": message, "error_type": errType}
	m, out := stepFail, FailOutcome{State: StepError}
	if !nonRetryable && s.Attempts < s.AttemptBudget {
		due := c.now.Add(backoff(s, retryAfter))
		payload["available_at"] = due.Format(time.RFC3339Nano)
		m, out = stepScheduleRetry, FailOutcome{State: StepWaitingForRetry, AvailableAt: &due}
		if reason == "" {
			reason = reasonRetryable
		}
	}
	if reason == "" {
		reason = reasonNonRetryable
		if !nonRetryable {
			reason = reasonExhausted
		}
	}
	c.recordStep(s, s.State, m, reason, payload)
	s.State, s.ClaimedBy, s.LastErrorMessage, s.LastErrorType = m.To, nil, message, errType
	if out.AvailableAt != nil {
		s.AvailableAt = out.AvailableAt
		c.becameReady(s) // a claimer sleeping past the due time must wake for it
	}
	return out
}

func conflictErr(err error, ok bool, s *ent.Step) error {
	if err != nil || ok {
		return err
	}
	return fault.Abortedf(fault.ReasonLeaseLost, "step %s changed while failing", s.ID)
}

// backoff is the delay before the next attempt: initial × multiplier^(n-1)
// capped at max, minus up to jitter of it at random (so the cap holds); a
// worker's retry_after replaces it, capped the same way.
func backoff(s *ent.Step, retryAfter time.Duration) time.Duration {
	maxDelay := time.Duration(s.BackoffMaxMs) * time.Millisecond
	if retryAfter > 0 {
		return min(retryAfter, maxDelay)
	}
	d := float64(s.BackoffInitialMs) * math.Pow(s.BackoffMultiplier, float64(max(s.Attempts-1, 0)))
	d = math.Min(d, float64(s.BackoffMaxMs))
	d -= d * s.BackoffJitter * rand.Float64() //nolint:gosec // jitter needs no cryptographic randomness
	return time.Duration(d) * time.Millisecond
}

// ReleaseStep gives a claimed step back unrun: it is enqueued again at
// once and the attempt is not counted.
func (e *Engine) ReleaseStep(ctx context.Context, l Lease, reason string) error {
	id, err := l.parse()
	if err != nil {
		return err
	}
	if len(reason) > maxReasonBytes {
		return fault.Invalid("reason", "is longer than %d bytes", maxReasonBytes)
	}
	return e.write(ctx, "ReleaseStep", func(tx *ent.Tx) (*change, error) {
		c, s, err := e.heldStep(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if err := leaseLost(s, c.task, l.Token, c.now); err != nil {
			return nil, err
		}
		if reason == "" {
			reason = "released by worker"
		}
		s.Attempts--
		ok, err := c.moveStep(ctx, s, stepRelease, reason, nil, func(u *ent.StepUpdate) {
			u.AddAttempts(-1).SetAvailableAt(c.now).ClearLeaseToken().ClearLeaseExpiresAt().ClearExecutionDeadline()
		}, step.LeaseToken(l.Token))
		return c, conflictErr(err, ok, s)
	})
}

// ExtendLease renews one lease from now by extendBy, or by the step's lease
// duration when extendBy is 0, and returns the new expiry.
func (e *Engine) ExtendLease(ctx context.Context, l Lease, extendBy time.Duration) (time.Time, error) {
	id, err := l.parse()
	if err != nil {
		return time.Time{}, err
	}
	if extendBy != 0 && (extendBy < time.Second || extendBy > maxExtendBy) {
		return time.Time{}, fault.Invalid("extend_by", "must be between 1s and %s", maxExtendBy)
	}
	var expires time.Time
	err = e.db.Tx(storage.TxName(ctx, "ExtendLease"), func(tx *ent.Tx) error {
		now := e.now()
		s, err := tx.Step.Get(ctx, id)
		if ent.IsNotFound(err) {
			return fault.NotFoundf("step", id.String())
		}
		if err != nil {
			return err
		}
		t, err := tx.Task.Get(ctx, s.TaskID)
		if err != nil {
			return err
		}
		if err := leaseLost(s, t, l.Token, now); err != nil {
			return err
		}
		d := extendBy
		if d == 0 {
			d = time.Duration(s.LeaseDurationMs) * time.Millisecond
		}
		expires = now.Add(d)
		// A heartbeat is not a state change: no transition, no event. The
		// guard keeps it from reviving a lease the reaper just took.
		n, err := tx.Step.Update().
			Where(step.ID(id), step.StateEQ(step.StateInProgress), step.LeaseToken(l.Token), step.LeaseExpiresAtGT(now)).
			SetLeaseExpiresAt(expires).
			Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			// A change committed since the reads above (on PostgreSQL, a
			// CancelTask or the reaper): explain it from what is now
			// committed, so a cancelled step says CANCELLED.
			if err := leaseLostNow(ctx, tx, id, l.Token, now); err != nil {
				return err
			}
			return fault.Abortedf(fault.ReasonLeaseLost, "the lease of step %s was lost", id)
		}
		return nil
	})
	return expires, err
}

// leaseLostNow is leaseLost for the step and task as committed now.
func leaseLostNow(ctx context.Context, tx *ent.Tx, id uuid.UUID, token string, now time.Time) error {
	s, err := tx.Step.Get(ctx, id)
	if err != nil {
		return err
	}
	t, err := tx.Task.Get(ctx, s.TaskID)
	if err != nil {
		return err
	}
	return leaseLost(s, t, token, now)
}

// write runs fn in a transaction that changes one task, flushes its
// transitions and events, and wakes claimers and event readers after the
// commit. op names the transaction in traces.
func (e *Engine) write(ctx context.Context, op string, fn func(tx *ent.Tx) (*change, error)) error {
	var c *change
	err := e.db.Tx(storage.TxName(ctx, op), func(tx *ent.Tx) error {
		var err error
		c, err = fn(tx)
		if err != nil {
			return err
		}
		return flush(ctx, tx, c)
	})
	if err != nil {
		return err
	}
	e.committed(c)
	return nil
}

func encodeResult(field string, result map[string]any) ([]byte, error) {
	if result == nil {
		result = map[string]any{}
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, fault.Invalid(field, "is not a JSON document: %v", err)
	}
	if len(raw) > maxResultBytes {
		return nil, fault.Invalid(field, "is %d bytes; at most %d", len(raw), maxResultBytes)
	}
	if bytes.Contains(raw, []byte(`\u0000`)) {
		return nil, fault.Invalid(field, "must not contain NUL characters")
	}
	return raw, nil
}

// sameJSON compares two JSON documents by value: PostgreSQL's jsonb does
// not keep the bytes it was given.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
