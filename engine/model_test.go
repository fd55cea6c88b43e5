package engine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
)

// The domain states convert to and from the stored ones by value, so the
// two sets must be the same.
func TestStatesMatchStorage(t *testing.T) {
	t.Parallel()
	stored := []step.State{
		step.StatePending, step.StateEnqueued, step.StateInProgress, step.StateWaitingForRetry,
		step.StateComplete, step.StateError, step.StateCancelled, step.StateResolvedManually,
	}
	require.Len(t, stepStates, len(stored))
	for i, s := range stored {
		require.Equal(t, string(s), string(stepStates[i]))
	}
	rows, err := stepStateRows("states", stepStates)
	require.NoError(t, err)
	require.Equal(t, stored, rows)

	tasks := []TaskState{TaskPending, TaskInProgress, TaskComplete, TaskError, TaskCancelled, TaskResolvedManually}
	taskRows, err := taskStateRows("states", tasks)
	require.NoError(t, err)
	require.Equal(t, []task.State{
		task.StatePending, task.StateInProgress, task.StateComplete,
		task.StateError, task.StateCancelled, task.StateResolvedManually,
	}, taskRows)

	_, err = stepStateRows("states", []StepState{StepPending, "paused"})
	fe, ok := fault.As(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, fault.InvalidArgument, fe.Code)
	require.Equal(t, "states[1]", fe.Violations[0].Field)
	_, err = taskStateRows("states", []TaskState{"done"})
	require.ErrorContains(t, err, "states[0]")
}
