package engine_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

var allStepStates = []step.State{
	step.StatePending, step.StateEnqueued, step.StateInProgress, step.StateWaitingForRetry,
	step.StateComplete, step.StateError, step.StateCancelled, step.StateResolvedManually,
}

// stepOp drives one row of the step table through the engine's public API.
type stepOp struct {
	name  string
	legal map[step.State]step.State // from -> to, per DESIGN §4
	event string
	// refused is the error an illegal call gets; "" means the call is a
	// no-op by design (a claim that finds nothing).
	refused func(from step.State) (fault.Code, string)
	run     func(b *bundle, s *ent.Step) error
}

func workerRefusal(from step.State) (fault.Code, string) {
	if from == step.StateCancelled {
		return fault.Aborted, fault.ReasonCancelled
	}
	return fault.Aborted, fault.ReasonLeaseLost
}

// completeRefusal: completing again with the same lease but a different
// result is ALREADY_COMPLETED; every other refusal is as for other calls.
func completeRefusal(from step.State) (fault.Code, string) {
	if from == step.StateComplete {
		return fault.FailedPrecondition, fault.ReasonAlreadyCompleted
	}
	return workerRefusal(from)
}

func operatorRefusal(step.State) (fault.Code, string) {
	return fault.FailedPrecondition, fault.ReasonInvalidState
}

var stepOps = []stepOp{
	{
		name:  "claim",
		legal: map[step.State]step.State{step.StateEnqueued: step.StateInProgress, step.StateWaitingForRetry: step.StateInProgress},
		event: "step.claimed",
		run: func(b *bundle, _ *ent.Step) error {
			_, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{WorkerID: "w", Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: 1}, nil)
			return err
		},
	},
	{
		name: "complete", legal: map[step.State]step.State{step.StateInProgress: step.StateComplete},
		event: "step.completed", refused: completeRefusal,
		run: func(b *bundle, s *ent.Step) error {
			return b.eng.CompleteStep(b.ctx, engine.Lease{StepID: s.ID.String(), Token: "tok"}, map[string]any{"ok": true})
		},
	},
	{
		name: "fail retryable", legal: map[step.State]step.State{step.StateInProgress: step.StateWaitingForRetry},
		event: "step.retry_scheduled", refused: workerRefusal,
		run: func(b *bundle, s *ent.Step) error {
			_, err := b.eng.FailStep(b.ctx, engine.FailParams{Lease: engine.Lease{StepID: s.ID.String(), Token: "tok"}, Message: "boom"})
			return err
		},
	},
	{
		name: "fail permanently", legal: map[step.State]step.State{step.StateInProgress: step.StateError},
		event: "step.failed", refused: workerRefusal,
		run: func(b *bundle, s *ent.Step) error {
			_, err := b.eng.FailStep(b.ctx, engine.FailParams{Lease: engine.Lease{StepID: s.ID.String(), Token: "tok"}, Message: "boom", NonRetryable: true})
			return err
		},
	},
	{
		name: "release", legal: map[step.State]step.State{step.StateInProgress: step.StateEnqueued},
		event: "step.released", refused: workerRefusal,
		run: func(b *bundle, s *ent.Step) error {
			return b.eng.ReleaseStep(b.ctx, engine.Lease{StepID: s.ID.String(), Token: "tok"}, "")
		},
	},
	{
		name: "retry", legal: map[step.State]step.State{step.StateError: step.StateEnqueued},
		event: "step.retry_requested", refused: operatorRefusal,
		run: func(b *bundle, s *ent.Step) error {
			_, err := b.eng.RetryStep(b.ctx, engine.StepOp{StepID: s.ID.String()})
			return err
		},
	},
	{
		name: "resolve",
		legal: map[step.State]step.State{
			step.StatePending: step.StateResolvedManually, step.StateEnqueued: step.StateResolvedManually,
			step.StateWaitingForRetry: step.StateResolvedManually, step.StateError: step.StateResolvedManually,
			step.StateCancelled: step.StateResolvedManually,
		},
		event: "step.resolved_manually", refused: operatorRefusal,
		run: func(b *bundle, s *ent.Step) error {
			_, err := b.eng.ResolveStep(b.ctx, engine.StepOp{StepID: s.ID.String()}, map[string]any{"manual": true})
			return err
		},
	},
	{
		name: "cancel",
		legal: map[step.State]step.State{
			step.StatePending: step.StateCancelled, step.StateEnqueued: step.StateCancelled,
			step.StateInProgress: step.StateCancelled, step.StateWaitingForRetry: step.StateCancelled,
		},
		event: "step.cancelled", refused: operatorRefusal,
		run: func(b *bundle, s *ent.Step) error {
			_, err := b.eng.CancelStep(b.ctx, engine.StepOp{StepID: s.ID.String()})
			return err
		},
	},
}

// forceStep puts the first step of a fresh (a -> b) task into from, with a
// live lease "tok" and a due available_at, and the task in progress.
func forceStep(t *testing.T, b *bundle, from step.State) *ent.Step {
	t.Helper()
	tk := b.create(t, "pair")
	a, err := b.db.Client.Step.Query().Where(step.TaskID(tk.ID), step.Name("a")).Only(b.ctx)
	require.NoError(t, err)
	now := time.Now().UTC()
	due := now.Add(-time.Second)
	u := b.db.Client.Step.UpdateOne(a).
		SetState(from).SetLeaseToken("tok").SetLeaseExpiresAt(now.Add(time.Hour)).
		SetAvailableAt(due).SetAttempts(1)
	// The claim index holds claimable steps only: keep its column true to
	// the forced state, as every engine move does.
	if from == step.StateEnqueued || from == step.StateWaitingForRetry {
		u.SetClaimableAt(due)
	} else {
		u.ClearClaimableAt()
	}
	require.NoError(t, u.Exec(b.ctx))
	require.NoError(t, b.db.Client.Task.UpdateOneID(tk.ID).SetState(task.StateInProgress).Exec(b.ctx))
	return b.step(t, a.ID)
}

func countEvents(t *testing.T, b *bundle, s *ent.Step, typ string) int {
	t.Helper()
	n, err := b.db.Reader.Event.Query().Where(event.StepID(s.ID), event.Type(typ)).Count(b.ctx)
	require.NoError(t, err)
	return n
}

func TestStepStateMachine(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "pair", 3, []string{"a", "b"}, map[string][]string{"b": {"a"}})
		for _, op := range stepOps {
			for _, from := range allStepStates {
				t.Run(fmt.Sprintf("%s from %s", op.name, from), func(t *testing.T) {
					s := forceStep(t, b, from)
					transitionsBefore, err := db.Reader.StepTransition.Query().Where(steptransition.StepID(s.ID)).Count(b.ctx)
					require.NoError(t, err)
					opErr := op.run(b, s)
					after := b.step(t, s.ID)
					to, legal := op.legal[from]
					if legal {
						require.NoError(t, opErr)
						require.Equal(t, to, after.State)
						require.Equal(t, 1, countEvents(t, b, s, op.event), "exactly one %s event", op.event)
						n, err := db.Reader.StepTransition.Query().
							Where(steptransition.StepID(s.ID), steptransition.ToState(string(to))).Count(b.ctx)
						require.NoError(t, err)
						require.Positive(t, n, "a transition row records the move")
						return
					}
					require.Equal(t, from, after.State, "a refused call changes nothing")
					transitionsAfter, err := db.Reader.StepTransition.Query().Where(steptransition.StepID(s.ID)).Count(b.ctx)
					require.NoError(t, err)
					require.Equal(t, transitionsBefore, transitionsAfter)
					require.Zero(t, countEvents(t, b, s, op.event))
					if op.refused == nil {
						require.NoError(t, opErr)
						return
					}
					code, reason := op.refused(from)
					fe, ok := fault.As(opErr)
					require.True(t, ok, "want a domain error, got %v", opErr)
					require.Equal(t, code, fe.Code, fe.Error())
					require.Equal(t, reason, fe.Reason, fe.Error())
					if reason == fault.ReasonInvalidState {
						require.Equal(t, apiName(taskerv1.StepState_value, "STEP_STATE_", string(from)), fe.Metadata["current_state"])
					}
				})
			}
		}
	})
}

var allTaskStates = []task.State{
	task.StatePending, task.StateInProgress, task.StateComplete, task.StateError, task.StateCancelled, task.StateResolvedManually,
}

func TestTaskStateMachineOperatorRows(t *testing.T) {
	t.Parallel()
	ops := []struct {
		name  string
		legal map[task.State]task.State
		event string
		run   func(b *bundle, id string) error
	}{
		{"cancel", map[task.State]task.State{task.StatePending: task.StateCancelled, task.StateInProgress: task.StateCancelled, task.StateError: task.StateCancelled},
			"task.cancelled", func(b *bundle, id string) error {
				_, err := b.eng.CancelTask(b.ctx, engine.TaskOp{TaskID: id})
				return err
			}},
		{"retry", map[task.State]task.State{task.StateError: task.StateInProgress},
			"task.resumed", func(b *bundle, id string) error {
				_, err := b.eng.RetryTask(b.ctx, engine.TaskOp{TaskID: id})
				return err
			}},
		{"resolve", map[task.State]task.State{task.StateError: task.StateResolvedManually},
			"task.resolved_manually", func(b *bundle, id string) error {
				_, err := b.eng.ResolveTask(b.ctx, engine.TaskOp{TaskID: id})
				return err
			}},
	}
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "pair", 3, []string{"a", "b"}, map[string][]string{"b": {"a"}})
		for _, op := range ops {
			for _, from := range allTaskStates {
				t.Run(fmt.Sprintf("%s from %s", op.name, from), func(t *testing.T) {
					tk := b.create(t, "pair")
					// A task in error has a step in error, as the engine leaves it.
					stepState := step.StateEnqueued
					if from == task.StateError {
						stepState = step.StateError
					}
					require.NoError(t, db.Client.Step.Update().Where(step.TaskID(tk.ID), step.Name("a")).SetState(stepState).Exec(b.ctx))
					require.NoError(t, db.Client.Task.UpdateOneID(tk.ID).SetState(from).Exec(b.ctx))
					err := op.run(b, tk.ID.String())
					after := b.task(t, tk.ID)
					n, cerr := db.Reader.Event.Query().Where(event.TaskID(tk.ID), event.Type(op.event)).Count(b.ctx)
					require.NoError(t, cerr)
					if to, legal := op.legal[from]; legal {
						require.NoError(t, err)
						require.Equal(t, to, after.State)
						require.Equal(t, 1, n)
						return
					}
					require.Equal(t, from, after.State)
					require.Zero(t, n)
					fe, ok := fault.As(err)
					require.True(t, ok, "want a domain error, got %v", err)
					require.Equal(t, fault.FailedPrecondition, fe.Code)
					require.Equal(t, fault.ReasonInvalidState, fe.Reason)
					require.Equal(t, apiName(taskerv1.TaskState_value, "TASK_STATE_", string(from)), fe.Metadata["current_state"])
				})
			}
		}
	})
}

// apiName is an engine state's name in the tasker.v1 enum, which error
// metadata uses; it fails the test if the enum has no such value.
func apiName(values map[string]int32, prefix, state string) string {
	name := prefix + strings.ToUpper(state)
	if _, ok := values[name]; !ok {
		panic("no tasker.v1 enum value " + name)
	}
	return name
}
