package engine

import (
	"time"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/events"
)

// Recorder receives what the engine committed, once per committed change
// and only after the commit, so a rolled-back or retried transaction is
// never counted. Record runs on the caller's path: it must be quick and
// must not block.
type Recorder interface {
	Record(o Observation)
}

// ObservationKind says what an Observation counts.
type ObservationKind int

// The kinds of Observation. Each step or task change the engine commits is
// at most one of the step kinds (ObservedStepRetried comes with the failure,
// timeout or expiry that scheduled the retry) or one of the task kinds.
const (
	// ObservedStepClaimed: a worker claimed a step; Duration is how long it was
	// due before the claim (enqueue to claim).
	ObservedStepClaimed ObservationKind = iota + 1
	// ObservedStepCompleted: a worker completed a step; Duration is the attempt's
	// run time, claim to report.
	ObservedStepCompleted
	// ObservedStepFailed: a worker reported a failure; Retryable says whether it
	// was retryable (a retryable failure with no attempts left counts as
	// retryable). Duration is the attempt's run time.
	ObservedStepFailed
	// ObservedStepRetried: a failed, timed-out or expired attempt was scheduled
	// for a retry.
	ObservedStepRetried
	// ObservedStepTimedOut: the reaper ended an attempt past its execution
	// timeout; Duration is its run time.
	ObservedStepTimedOut
	// ObservedStepLeaseExpired: the reaper ended an attempt whose lease expired;
	// Duration is its run time.
	ObservedStepLeaseExpired
	// ObservedTaskCreated: a task was created.
	ObservedTaskCreated
	// ObservedTaskDuplicated: a create was answered with an existing task.
	ObservedTaskDuplicated
	// ObservedTaskCompleted, ObservedTaskFailed and ObservedTaskCancelled: a task finished;
	// Duration is its age, creation to finish.
	ObservedTaskCompleted
	ObservedTaskFailed
	ObservedTaskCancelled
)

// Observation is one committed change, labelled only with what has a
// bounded number of values: never a task or step id.
type Observation struct {
	Kind      ObservationKind
	Namespace string
	// Handler is the step's handler; empty for task kinds.
	Handler   string
	Retryable bool
	Duration  time.Duration
}

// observeStep notes the counted consequences of a step move that was just
// applied; s is still as it was before the move.
func (c *change) observeStep(s *ent.Step, from step.State, m stepMove, reason string) {
	if c.e.opts.Metrics == nil {
		return
	}
	o := Observation{Namespace: s.Namespace, Handler: s.Handler}
	if from == step.StateInProgress {
		// A running step's updated_at is its claim: heartbeats do not
		// touch it.
		o.Duration = c.now.Sub(s.UpdatedAt)
	}
	switch {
	case m.Event == events.StepClaimed:
		o.Kind, o.Duration = ObservedStepClaimed, 0
		if due := s.ClaimableAt; due != nil && c.now.After(*due) {
			o.Duration = c.now.Sub(*due)
		}
	case m.Event == events.StepCompleted:
		o.Kind = ObservedStepCompleted
	case reason == reasonRetryable || reason == reasonExhausted:
		o.Kind, o.Retryable = ObservedStepFailed, true
	case reason == reasonNonRetryable:
		o.Kind = ObservedStepFailed
	case reason == reasonTimeout:
		o.Kind = ObservedStepTimedOut
	case reason == reasonLeaseExpired:
		o.Kind = ObservedStepLeaseExpired
	default:
		return
	}
	c.obs = append(c.obs, o)
	if m.Event == events.StepRetryScheduled {
		c.obs = append(c.obs, Observation{Kind: ObservedStepRetried, Namespace: s.Namespace, Handler: s.Handler})
	}
}

// observeTask notes a task move that was just applied.
func (c *change) observeTask(m taskMove) {
	if c.e.opts.Metrics == nil {
		return
	}
	o := Observation{Namespace: c.task.Namespace, Duration: c.now.Sub(c.task.CreatedAt)}
	switch m.To {
	case task.StateComplete:
		o.Kind = ObservedTaskCompleted
	case task.StateError:
		o.Kind = ObservedTaskFailed
	case task.StateCancelled:
		o.Kind = ObservedTaskCancelled
	default:
		return
	}
	c.obs = append(c.obs, o)
}

// committed runs after the commit of cs: it wakes the claimers of the steps
// that became claimable and the event log's readers, and reports the
// observations. Every path that commits a change ends here.
func (e *Engine) committed(cs ...*change) {
	ready := map[HandlerRef]int{}
	for _, c := range cs {
		if c == nil {
			continue
		}
		for h, n := range c.ready {
			ready[h] += n
		}
		e.record(c.obs...)
		c.obs = nil
	}
	if len(ready) > 0 {
		e.workCommitted(ready)
	}
	e.appended()
}

// record reports observations to the Recorder, if any.
func (e *Engine) record(obs ...Observation) {
	if e.opts.Metrics == nil {
		return
	}
	for _, o := range obs {
		e.opts.Metrics.Record(o)
	}
}

// Metrics is the Recorder the engine reports to, nil when none.
func (e *Engine) Metrics() Recorder { return e.opts.Metrics }
