package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
)

// Operator calls: cancel, retry and resolve, on a task or one step. Each
// checks the state machines and refuses what they do not allow with
// FailedPrecondition naming the current state.

func checkReason(reason string) error {
	if len(reason) > maxReasonBytes {
		return fault.Invalid("reason", "is longer than %d bytes", maxReasonBytes)
	}
	return nil
}

// operatorStep locks the task of step id, re-reads the step and checks that
// the task allows operator calls on its steps and that m leaves from the
// step's state.
func (e *Engine) operatorStep(ctx context.Context, tx *ent.Tx, id uuid.UUID, m stepMove) (*change, *ent.Step, error) {
	c, s, err := e.heldStep(ctx, tx, id)
	if err != nil {
		return nil, nil, err
	}
	if !operable(c.task.State) {
		fe := fault.InvalidState("task", c.task.ID.String(), taskStateName(c.task.State), "its steps can no longer be changed")
		fe.Metadata["task_state"] = taskStateName(c.task.State)
		return nil, nil, fe
	}
	if m.Event == stepRetryRequested.Event && s.State == step.StateCancelled {
		return nil, nil, fault.InvalidState("step", id.String(), stepStateName(s.State), noRetryOfCancelled)
	}
	if !m.allows(s.State) {
		return nil, nil, fault.InvalidState("step", id.String(), stepStateName(s.State), "cannot move to %s", stepStateName(m.To))
	}
	return c, s, nil
}

// noRetryOfCancelled is what RetryStep and RetryTask say of cancelled steps:
// an operator cancelled them on purpose, so no retry runs them again;
// ResolveStep accepts them and lets their descendants run.
const noRetryOfCancelled = "cancelled steps are not retried; give them a result with ResolveStep to let their descendants run"

// StepOp names a step and why an operator acts on it.
type StepOp struct {
	StepID string
	Reason string
}

func (op StepOp) parse() (uuid.UUID, error) {
	if err := checkReason(op.Reason); err != nil {
		return uuid.Nil, err
	}
	return parseID("id", op.StepID)
}

// CancelStep cancels one unfinished step. Its descendants can no longer
// run; the task fails once nothing else can progress. A worker holding the
// step learns it on its next call (Aborted, CANCELLED).
func (e *Engine) CancelStep(ctx context.Context, op StepOp) (*Step, error) {
	id, err := op.parse()
	if err != nil {
		return nil, err
	}
	var out *ent.Step
	err = e.write(ctx, "CancelStep", func(tx *ent.Tx) (*change, error) {
		c, s, err := e.operatorStep(ctx, tx, id, stepCancel)
		if err != nil {
			return nil, err
		}
		ok, err := c.moveStep(ctx, s, stepCancel, reasonOr(op.Reason, "cancelled by operator"), nil, clearLease)
		if err := changedUnderLock(err, ok, s); err != nil {
			return nil, err
		}
		out = s
		return c, c.finalize(ctx)
	})
	return e.reread(ctx, out, err)
}

// RetryStep puts a step in error back to enqueued with its attempt budget
// extended by its max_attempts; a task in error resumes.
func (e *Engine) RetryStep(ctx context.Context, op StepOp) (*Step, error) {
	id, err := op.parse()
	if err != nil {
		return nil, err
	}
	var out *ent.Step
	err = e.write(ctx, "RetryStep", func(tx *ent.Tx) (*change, error) {
		c, s, err := e.operatorStep(ctx, tx, id, stepRetryRequested)
		if err != nil {
			return nil, err
		}
		if err := c.retry(ctx, s, op.Reason); err != nil {
			return nil, err
		}
		out = s
		return c, c.finalize(ctx)
	})
	return e.reread(ctx, out, resumeConflict(err))
}

func (c *change) retry(ctx context.Context, s *ent.Step, reason string) error {
	budget := s.Attempts + s.MaxAttempts
	ok, err := c.moveStep(ctx, s, stepRetryRequested, reasonOr(reason, "retry requested by operator"),
		map[string]any{"attempt_budget": budget}, func(u *ent.StepUpdate) {
			u.SetAttemptBudget(budget).SetAvailableAt(c.now).ClearLeaseToken().ClearLeaseExpiresAt().ClearExecutionDeadline()
		})
	return changedUnderLock(err, ok, s)
}

// ResolveStep gives a step a result by hand; its children are enqueued as
// if it had completed, and a task in error resumes when that makes
// progress possible. Cancelled steps are accepted: it is the one way to let
// a cancelled step's descendants run.
func (e *Engine) ResolveStep(ctx context.Context, op StepOp, result map[string]any) (*Step, error) {
	id, err := op.parse()
	if err != nil {
		return nil, err
	}
	raw, err := encodeResult("result", result)
	if err != nil {
		return nil, err
	}
	var out *ent.Step
	err = e.write(ctx, "ResolveStep", func(tx *ent.Tx) (*change, error) {
		c, s, err := e.operatorStep(ctx, tx, id, stepResolve)
		if err != nil {
			return nil, err
		}
		ok, err := c.moveStep(ctx, s, stepResolve, reasonOr(op.Reason, "resolved by operator"), nil, func(u *ent.StepUpdate) {
			u.SetResult(raw)
		})
		if err := changedUnderLock(err, ok, s); err != nil {
			return nil, err
		}
		out = s
		return c, c.settle(ctx, []*ent.Step{s})
	})
	return e.reread(ctx, out, resumeConflict(err))
}

// TaskOp names a task and why an operator acts on it.
type TaskOp struct {
	TaskID string
	Reason string
}

func (e *Engine) operatorTask(ctx context.Context, tx *ent.Tx, op TaskOp, m taskMove) (*change, error) {
	if err := checkReason(op.Reason); err != nil {
		return nil, err
	}
	id, err := parseID("id", op.TaskID)
	if err != nil {
		return nil, err
	}
	c, err := e.lockTask(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if !m.allows(c.task.State) {
		return nil, fault.InvalidState("task", op.TaskID, taskStateName(c.task.State), "cannot move to %s", taskStateName(m.To))
	}
	return c, nil
}

// CancelTask cancels the task and every unfinished step.
func (e *Engine) CancelTask(ctx context.Context, op TaskOp) (*TaskView, error) {
	err := e.write(ctx, "CancelTask", func(tx *ent.Tx) (*change, error) {
		c, err := e.operatorTask(ctx, tx, op, taskCancel)
		if err != nil {
			return nil, err
		}
		steps, err := tx.Step.Query().Where(step.TaskID(c.task.ID), step.StateIn(stepCancel.From...)).
			Order(ent.Asc(step.FieldPosition)).All(ctx)
		if err != nil {
			return nil, err
		}
		reason := reasonOr(op.Reason, "task cancelled")
		for _, s := range steps {
			ok, err := c.moveStep(ctx, s, stepCancel, reason, nil, clearLease)
			if err := changedUnderLock(err, ok, s); err != nil {
				return nil, err
			}
		}
		return c, c.moveTask(ctx, taskCancel, reasonOr(op.Reason, "cancelled by operator"), map[string]any{"cancelled_steps": len(steps)})
	})
	if err != nil {
		return nil, err
	}
	return e.GetTask(ctx, op.TaskID)
}

// RetryTask puts every step in error back to work and the task back in
// progress.
func (e *Engine) RetryTask(ctx context.Context, op TaskOp) (*TaskView, error) {
	err := e.write(ctx, "RetryTask", func(tx *ent.Tx) (*change, error) {
		c, err := e.operatorTask(ctx, tx, op, taskResume)
		if err != nil {
			return nil, err
		}
		steps, err := tx.Step.Query().Where(step.TaskID(c.task.ID), step.StateEQ(step.StateError)).
			Order(ent.Asc(step.FieldPosition)).All(ctx)
		if err != nil {
			return nil, err
		}
		if len(steps) == 0 {
			return nil, fault.InvalidState("task", op.TaskID, taskStateName(c.task.State),
				"no step is in error (%s)", noRetryOfCancelled)
		}
		for _, s := range steps {
			if err := c.retry(ctx, s, op.Reason); err != nil {
				return nil, err
			}
		}
		return c, c.finalize(ctx)
	})
	if err != nil {
		return nil, resumeConflict(err)
	}
	return e.GetTask(ctx, op.TaskID)
}

// ResolveTask closes a task in error by hand.
func (e *Engine) ResolveTask(ctx context.Context, op TaskOp) (*TaskView, error) {
	err := e.write(ctx, "ResolveTask", func(tx *ent.Tx) (*change, error) {
		c, err := e.operatorTask(ctx, tx, op, taskResolve)
		if err != nil {
			return nil, err
		}
		return c, c.moveTask(ctx, taskResolve, reasonOr(op.Reason, "resolved by operator"), nil)
	})
	if err != nil {
		return nil, err
	}
	return e.GetTask(ctx, op.TaskID)
}

// changedUnderLock is the outcome of an operator's guarded step update:
// the step was read under its task's lock, which every writer of a step
// takes first (doc.go), so the guard matches the state read. Should it not,
// that is a broken invariant to report as such (Internal), never a worker's
// Aborted LEASE_LOST: an operator holds no lease.
func changedUnderLock(err error, ok bool, s *ent.Step) error {
	if err != nil || ok {
		return err
	}
	return fmt.Errorf("step %s changed from %s under its task's lock", s.ID, s.State)
}

func clearLease(u *ent.StepUpdate) {
	u.ClearLeaseExpiresAt().ClearExecutionDeadline()
}

func reasonOr(reason, def string) string {
	if reason != "" {
		return reason
	}
	return def
}

// reread returns the step as committed.
func (e *Engine) reread(ctx context.Context, s *ent.Step, err error) (*Step, error) {
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("operator call changed no step")
	}
	row, err := e.db.Reader.Step.Get(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	return stepFromRow(row), nil
}

// resumeConflict explains the one way reviving a task can collide: a task
// in error no longer holds its strict identity, so an identical task may
// have been created meanwhile, and two unfinished tasks may not share one.
func resumeConflict(err error) error {
	if errors.Is(err, storage.ErrUniqueViolation) {
		return &fault.Error{
			Code: fault.FailedPrecondition, Reason: fault.ReasonInvalidState,
			Message: "another unfinished task with the same identity (template and context) exists; " +
				"finish or cancel it before reviving this one",
			Metadata: map[string]string{"current_state": taskStateName(task.StateError)},
		}
	}
	return err
}
