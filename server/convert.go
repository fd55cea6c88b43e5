package server

import (
	"encoding/json"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/engine"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// indexed names the i-th element of a repeated field, e.g. "states[2]".
func indexed(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

var taskStatesToProto = map[engine.TaskState]taskerv1.TaskState{
	engine.TaskPending:          taskerv1.TaskState_TASK_STATE_PENDING,
	engine.TaskInProgress:       taskerv1.TaskState_TASK_STATE_IN_PROGRESS,
	engine.TaskComplete:         taskerv1.TaskState_TASK_STATE_COMPLETE,
	engine.TaskError:            taskerv1.TaskState_TASK_STATE_ERROR,
	engine.TaskCancelled:        taskerv1.TaskState_TASK_STATE_CANCELLED,
	engine.TaskResolvedManually: taskerv1.TaskState_TASK_STATE_RESOLVED_MANUALLY,
}

var stepStatesToProto = map[engine.StepState]taskerv1.StepState{
	engine.StepPending:          taskerv1.StepState_STEP_STATE_PENDING,
	engine.StepEnqueued:         taskerv1.StepState_STEP_STATE_ENQUEUED,
	engine.StepInProgress:       taskerv1.StepState_STEP_STATE_IN_PROGRESS,
	engine.StepWaitingForRetry:  taskerv1.StepState_STEP_STATE_WAITING_FOR_RETRY,
	engine.StepComplete:         taskerv1.StepState_STEP_STATE_COMPLETE,
	engine.StepError:            taskerv1.StepState_STEP_STATE_ERROR,
	engine.StepCancelled:        taskerv1.StepState_STEP_STATE_CANCELLED,
	engine.StepResolvedManually: taskerv1.StepState_STEP_STATE_RESOLVED_MANUALLY,
}

var executionStatusToProto = map[engine.ExecutionStatus]taskerv1.ExecutionStatus{
	engine.StatusHasReadySteps:     taskerv1.ExecutionStatus_EXECUTION_STATUS_HAS_READY_STEPS,
	engine.StatusProcessing:        taskerv1.ExecutionStatus_EXECUTION_STATUS_PROCESSING,
	engine.StatusWaitingForRetry:   taskerv1.ExecutionStatus_EXECUTION_STATUS_WAITING_FOR_RETRY,
	engine.StatusBlockedByFailures: taskerv1.ExecutionStatus_EXECUTION_STATUS_BLOCKED_BY_FAILURES,
	engine.StatusComplete:          taskerv1.ExecutionStatus_EXECUTION_STATUS_COMPLETE,
	engine.StatusScheduled:         taskerv1.ExecutionStatus_EXECUTION_STATUS_SCHEDULED,
}

func timestamp(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

// document decodes a stored JSON object; stored documents were validated
// on the way in, so a failure means the row was edited by hand and yields
// nil rather than a failed read.
func document(raw json.RawMessage) *structpb.Struct {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil
	}
	return s
}

func count(n int) int32 {
	return int32(n) //nolint:gosec // step counts are bounded by the 1000 steps of a template
}

func taskToProto(v *engine.TaskView) *taskerv1.Task {
	t := v.Task
	out := &taskerv1.Task{
		Id:                   t.ID.String(),
		Namespace:            t.Namespace,
		TemplateName:         t.TemplateName,
		TemplateVersion:      t.TemplateVersion,
		State:                taskStatesToProto[t.State],
		Context:              document(t.Context),
		CorrelationId:        t.CorrelationID,
		Priority:             t.Priority,
		RunAt:                timestamp(t.RunAt),
		Initiator:            t.Initiator,
		SourceSystem:         t.SourceSystem,
		Reason:               t.Reason,
		Tags:                 t.Tags,
		CreateTime:           timestamppb.New(t.CreatedAt),
		UpdateTime:           timestamppb.New(t.UpdatedAt),
		StartTime:            timestamp(t.StartedAt),
		FinishTime:           timestamp(t.FinishedAt),
		CompletionPercentage: v.CompletionPercentage(),
		ExecutionStatus:      executionStatusToProto[v.ExecutionStatus()],
		StepCounts:           stepCountsToProto(v.Counts),
	}
	if t.ParentTaskID != nil {
		out.ParentTaskId = t.ParentTaskID.String()
	}
	out.IdempotencyKey = t.IdempotencyKey
	for _, s := range v.Steps {
		ps := stepToProto(s, v.DependsOn[s.ID], false)
		ps.CorrelationId = t.CorrelationID
		out.Steps = append(out.Steps, ps)
	}
	return out
}

// stepCountsToProto renders counts of steps by state, with their total.
func stepCountsToProto(counts map[engine.StepState]int) *taskerv1.StepCounts {
	out := &taskerv1.StepCounts{
		Pending:          count(counts[engine.StepPending]),
		Enqueued:         count(counts[engine.StepEnqueued]),
		InProgress:       count(counts[engine.StepInProgress]),
		WaitingForRetry:  count(counts[engine.StepWaitingForRetry]),
		Complete:         count(counts[engine.StepComplete]),
		Error:            count(counts[engine.StepError]),
		Cancelled:        count(counts[engine.StepCancelled]),
		ResolvedManually: count(counts[engine.StepResolvedManually]),
	}
	for _, n := range counts {
		out.Total += count(n)
	}
	return out
}

// stepToProto renders a step; full adds its config and result.
func stepToProto(s *engine.Step, dependsOn []string, full bool) *taskerv1.Step {
	out := &taskerv1.Step{
		Id:          s.ID.String(),
		TaskId:      s.TaskID.String(),
		Namespace:   s.Namespace,
		Name:        s.Name,
		Handler:     s.Handler,
		State:       stepStatesToProto[s.State],
		DependsOn:   dependsOn,
		Priority:    s.Priority,
		Attempts:    count(s.Attempts),
		MaxAttempts: count(s.AttemptBudget),
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:       new(count(s.Retry.MaxAttempts)),
			InitialBackoff:    durationpb.New(s.Retry.InitialBackoff),
			BackoffMultiplier: new(s.Retry.BackoffMultiplier),
			MaxBackoff:        durationpb.New(s.Retry.MaxBackoff),
			Jitter:            new(s.Retry.Jitter),
		},
		LeaseDuration:     durationpb.New(s.LeaseDuration),
		ClaimedBy:         s.ClaimedBy,
		AvailableAt:       timestamp(s.AvailableAt),
		LeaseExpiresAt:    timestamp(s.LeaseExpiresAt),
		ExecutionDeadline: timestamp(s.ExecutionDeadline),
		CreateTime:        timestamppb.New(s.CreatedAt),
		UpdateTime:        timestamppb.New(s.UpdatedAt),
		FinishTime:        timestamp(s.FinishedAt),
	}
	if s.ExecutionTimeout > 0 {
		out.ExecutionTimeout = durationpb.New(s.ExecutionTimeout)
	}
	if s.LastErrorMessage != "" {
		out.LastError = &taskerv1.StepError{Message: s.LastErrorMessage, Type: s.LastErrorType, Attempt: count(s.Attempts)}
	}
	if full {
		out.Config = document(s.Config)
		out.Result = document(s.Result)
	}
	return out
}
