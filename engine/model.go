package engine

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
)

// The engine's exported API speaks in the types of this file, never in ent
// rows: the schema (columns, internal bookkeeping such as claimable_at,
// pending_parents or identity hashes) stays behind the engine and can change
// without its callers. Rows become these types in one place, taskFromRow and
// stepFromRow.

// TaskState is where a task stands in the task state machine (DESIGN §4).
type TaskState string

// The task states; the values are the ones stored.
const (
	TaskPending          TaskState = "pending"
	TaskInProgress       TaskState = "in_progress"
	TaskComplete         TaskState = "complete"
	TaskError            TaskState = "error"
	TaskCancelled        TaskState = "cancelled"
	TaskResolvedManually TaskState = "resolved_manually"
)

// StepState is where a step stands in the step state machine (DESIGN §4).
type StepState string

// The step states; the values are the ones stored.
const (
	StepPending          StepState = "pending"
	StepEnqueued         StepState = "enqueued"
	StepInProgress       StepState = "in_progress"
	StepWaitingForRetry  StepState = "waiting_for_retry"
	StepComplete         StepState = "complete"
	StepError            StepState = "error"
	StepCancelled        StepState = "cancelled"
	StepResolvedManually StepState = "resolved_manually"
)

// stepStates lists every step state in the state machine's order.
var stepStates = []StepState{
	StepPending, StepEnqueued, StepInProgress, StepWaitingForRetry,
	StepComplete, StepError, StepCancelled, StepResolvedManually,
}

// Task is a task as the engine reports it.
type Task struct {
	ID              uuid.UUID
	Namespace       string
	TemplateName    string
	TemplateVersion string
	State           TaskState
	// Context is the caller's JSON object.
	Context       json.RawMessage
	CorrelationID string
	// TraceParent is the W3C traceparent of the call that created the
	// task, empty when it had none: its steps' spans join that trace.
	TraceParent string
	// IdempotencyKey is empty when the task was created without one or
	// its retention window has passed.
	IdempotencyKey string
	// ParentTaskID is nil for a task without a parent.
	ParentTaskID *uuid.UUID
	// Priority is copied to every step; higher runs first.
	Priority int32
	// RunAt, when set, is when the root steps became (or become) due.
	RunAt        *time.Time
	Initiator    string
	SourceSystem string
	Reason       string
	Tags         map[string]string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	StartedAt    *time.Time
	// FinishedAt is set while the task is in a final state or in error.
	FinishedAt *time.Time
}

// RetryPolicy is the effective retry policy a step was created with.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt.
	MaxAttempts       int
	InitialBackoff    time.Duration
	BackoffMultiplier float64
	MaxBackoff        time.Duration
	// Jitter is the fraction of a backoff that is randomised, 0..1.
	Jitter float64
}

// Step is a step as the engine reports it. The lease token is not part of
// it: only the claim that set it hands it out (Claim.LeaseToken).
type Step struct {
	ID        uuid.UUID
	TaskID    uuid.UUID
	Namespace string
	Name      string
	Handler   string
	State     StepState
	// Config is the static handler configuration from the template, a
	// JSON object.
	Config json.RawMessage
	// Result is the handler's or operator's JSON result, nil until there
	// is one.
	Result   json.RawMessage
	Priority int32
	// Attempts is the number of attempts started so far.
	Attempts int
	// AttemptBudget is the attempts allowed in all: the policy's
	// MaxAttempts, extended by it on each operator retry.
	AttemptBudget int
	Retry         RetryPolicy
	LeaseDuration time.Duration
	// ExecutionTimeout is zero when attempts have no timeout.
	ExecutionTimeout  time.Duration
	AvailableAt       *time.Time
	LeaseExpiresAt    *time.Time
	ExecutionDeadline *time.Time
	// ClaimedBy is the worker of the current or last claim, empty if
	// the step was never claimed.
	ClaimedBy string
	// LastErrorMessage and LastErrorType describe the last failed
	// attempt; the message is empty when none failed.
	LastErrorMessage string
	LastErrorType    string
	CreatedAt        time.Time
	UpdatedAt        time.Time
	FinishedAt       *time.Time
}

func taskFromRow(r *ent.Task) *Task {
	t := &Task{
		ID:              r.ID,
		Namespace:       r.Namespace,
		TemplateName:    r.TemplateName,
		TemplateVersion: r.TemplateVersion,
		State:           TaskState(r.State),
		Context:         r.Context,
		CorrelationID:   r.CorrelationID,
		TraceParent:     r.TraceParent,
		ParentTaskID:    r.ParentTaskID,
		Priority:        r.Priority,
		RunAt:           r.RunAt,
		Initiator:       r.Initiator,
		SourceSystem:    r.SourceSystem,
		Reason:          r.Reason,
		Tags:            r.Tags,
		CreatedAt:       r.CreatedAt,
		UpdatedAt:       r.UpdatedAt,
		StartedAt:       r.StartedAt,
		FinishedAt:      r.FinishedAt,
	}
	if r.IdempotencyKey != nil {
		t.IdempotencyKey = *r.IdempotencyKey
	}
	return t
}

func millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

func stepFromRow(r *ent.Step) *Step {
	s := &Step{
		ID:            r.ID,
		TaskID:        r.TaskID,
		Namespace:     r.Namespace,
		Name:          r.Name,
		Handler:       r.Handler,
		State:         StepState(r.State),
		Config:        r.Config,
		Result:        r.Result,
		Priority:      r.Priority,
		Attempts:      r.Attempts,
		AttemptBudget: r.AttemptBudget,
		Retry: RetryPolicy{
			MaxAttempts:       r.MaxAttempts,
			InitialBackoff:    millis(r.BackoffInitialMs),
			BackoffMultiplier: r.BackoffMultiplier,
			MaxBackoff:        millis(r.BackoffMaxMs),
			Jitter:            r.BackoffJitter,
		},
		LeaseDuration:     millis(r.LeaseDurationMs),
		ExecutionTimeout:  millis(r.ExecutionTimeoutMs),
		AvailableAt:       r.AvailableAt,
		LeaseExpiresAt:    r.LeaseExpiresAt,
		ExecutionDeadline: r.ExecutionDeadline,
		LastErrorMessage:  r.LastErrorMessage,
		LastErrorType:     r.LastErrorType,
		CreatedAt:         r.CreatedAt,
		UpdatedAt:         r.UpdatedAt,
		FinishedAt:        r.FinishedAt,
	}
	if r.ClaimedBy != nil {
		s.ClaimedBy = *r.ClaimedBy
	}
	return s
}

func stepsFromRows(rows []*ent.Step) []*Step {
	out := make([]*Step, len(rows))
	for i, r := range rows {
		out[i] = stepFromRow(r)
	}
	return out
}

// stepStateRows turns states given to a filter into stored values,
// refusing unknown ones by the field at fault.
func stepStateRows(field string, states []StepState) ([]step.State, error) {
	out := make([]step.State, len(states))
	for i, s := range states {
		out[i] = step.State(s)
		if step.StateValidator(out[i]) != nil {
			return nil, fault.Invalid(fmt.Sprintf("%s[%d]", field, i), "is not a step state: %q", s)
		}
	}
	return out, nil
}

// taskStateRows is stepStateRows for task states.
func taskStateRows(field string, states []TaskState) ([]task.State, error) {
	out := make([]task.State, len(states))
	for i, s := range states {
		out[i] = task.State(s)
		if task.StateValidator(out[i]) != nil {
			return nil, fault.Invalid(fmt.Sprintf("%s[%d]", field, i), "is not a task state: %q", s)
		}
	}
	return out, nil
}
