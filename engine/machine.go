package engine

import (
	"strings"

	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/events"
)

// stepMove is one row of the step state machine (DESIGN §4): the states a
// step may leave for To, and the one event that records it.
type stepMove struct {
	From  []step.State
	To    step.State
	Event string
}

// The step state machine. Every change of a step's state is one of these,
// applied as a guarded update (WHERE state IN From).
var (
	stepParentsDone    = stepMove{[]step.State{step.StatePending}, step.StateEnqueued, events.StepEnqueued}
	stepClaim          = stepMove{[]step.State{step.StateEnqueued}, step.StateInProgress, events.StepClaimed}
	stepComplete       = stepMove{[]step.State{step.StateInProgress}, step.StateComplete, events.StepCompleted}
	stepScheduleRetry  = stepMove{[]step.State{step.StateInProgress}, step.StateWaitingForRetry, events.StepRetryScheduled}
	stepFail           = stepMove{[]step.State{step.StateInProgress}, step.StateError, events.StepFailed}
	stepRelease        = stepMove{[]step.State{step.StateInProgress}, step.StateEnqueued, events.StepReleased}
	stepDue            = stepMove{[]step.State{step.StateWaitingForRetry}, step.StateEnqueued, events.StepEnqueued}
	stepRetryRequested = stepMove{[]step.State{step.StateError}, step.StateEnqueued, events.StepRetryRequested}
	// A cancelled step is resolved, never retried: resolving is how an
	// operator lets its descendants run without running it again.
	stepResolve = stepMove{
		[]step.State{step.StatePending, step.StateEnqueued, step.StateWaitingForRetry, step.StateError, step.StateCancelled},
		step.StateResolvedManually, events.StepResolvedManually,
	}
	stepCancel = stepMove{
		[]step.State{step.StatePending, step.StateEnqueued, step.StateInProgress, step.StateWaitingForRetry},
		step.StateCancelled, events.StepCancelled,
	}
)

// taskMove is one row of the task state machine.
type taskMove struct {
	From  []task.State
	To    task.State
	Event string
}

// The task state machine.
var (
	taskStart    = taskMove{[]task.State{task.StatePending}, task.StateInProgress, events.TaskStarted}
	taskComplete = taskMove{[]task.State{task.StatePending, task.StateInProgress}, task.StateComplete, events.TaskCompleted}
	taskFail     = taskMove{[]task.State{task.StatePending, task.StateInProgress}, task.StateError, events.TaskFailed}
	taskResume   = taskMove{[]task.State{task.StateError}, task.StateInProgress, events.TaskResumed}
	taskResolve  = taskMove{[]task.State{task.StateError}, task.StateResolvedManually, events.TaskResolvedManually}
	taskCancel   = taskMove{
		[]task.State{task.StatePending, task.StateInProgress, task.StateError},
		task.StateCancelled, events.TaskCancelled,
	}
)

func (m stepMove) allows(s step.State) bool {
	for _, f := range m.From {
		if f == s {
			return true
		}
	}
	return false
}

func (m taskMove) allows(s task.State) bool {
	for _, f := range m.From {
		if f == s {
			return true
		}
	}
	return false
}

// stepFinished reports states a step never leaves by itself: only an
// operator (retry, resolve) moves it on.
func stepFinished(s step.State) bool {
	switch s {
	case step.StateComplete, step.StateError, step.StateCancelled, step.StateResolvedManually:
		return true
	}
	return false
}

// operable reports task states in which operators may act on its steps.
func operable(s task.State) bool {
	return s == task.StatePending || s == task.StateInProgress || s == task.StateError
}

// stepStateName and taskStateName give a state as the API names it (the
// tasker.v1 enum value name), for error metadata and messages.
func stepStateName(s step.State) string { return "STEP_STATE_" + strings.ToUpper(string(s)) }

func taskStateName(s task.State) string { return "TASK_STATE_" + strings.ToUpper(string(s)) }
