package engine_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// observations is an engine.Recorder that keeps what it is told.
type observations struct {
	mu  sync.Mutex
	obs []engine.Observation
}

func (o *observations) Record(ob engine.Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.obs = append(o.obs, ob)
}

// take returns the observations so far, without durations, and forgets
// them.
func (o *observations) take(t *testing.T) []engine.Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.obs
	o.obs = nil
	for i := range out {
		require.GreaterOrEqual(t, out[i].Duration, time.Duration(0))
		out[i].Duration = 0
	}
	return out
}

// TestRecorderSeesReaperAndFailures: the reaper's expiries and timeouts,
// a non-retryable failure and a cancellation reach the Recorder once
// each, labelled by namespace and handler.
func TestRecorderSeesReaperAndFailures(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		rec := &observations{}
		b.eng = engine.New(db, registry.NewStore(db), slog.New(slog.DiscardHandler), engine.Options{Metrics: rec})
		b.register(t, "one", 2, []string{"a"}, nil)
		step := func(kind engine.ObservationKind) engine.Observation {
			return engine.Observation{Kind: kind, Namespace: "ns", Handler: "h"}
		}
		task := func(kind engine.ObservationKind) engine.Observation {
			return engine.Observation{Kind: kind, Namespace: "ns"}
		}
		b.create(t, "one")
		require.Equal(t, []engine.Observation{task(engine.ObservedTaskCreated)}, rec.take(t))

		c := b.claim(t, 1)[0]
		id := c.Step.ID
		require.NoError(t, db.Client.Step.UpdateOneID(id).SetLeaseExpiresAt(time.Now().Add(-time.Second)).Exec(b.ctx))
		b.reap(t, id)
		require.Equal(t, []engine.Observation{
			step(engine.ObservedStepClaimed), step(engine.ObservedStepLeaseExpired), step(engine.ObservedStepRetried),
		}, rec.take(t))

		require.Len(t, b.claim(t, 1), 1)
		require.NoError(t, db.Client.Step.UpdateOneID(id).SetExecutionDeadline(time.Now().Add(-time.Second)).Exec(b.ctx))
		b.reap(t, id)
		require.Equal(t, []engine.Observation{
			step(engine.ObservedStepClaimed), step(engine.ObservedStepTimedOut), task(engine.ObservedTaskFailed),
		}, rec.take(t), "the last attempt timed out: no retry, the task fails")

		b.create(t, "one")
		c = b.claim(t, 1)[0]
		_, err := b.eng.FailStep(b.ctx, engine.FailParams{Lease: engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, Message: "bad input", NonRetryable: true})
		require.NoError(t, err)
		failed := step(engine.ObservedStepFailed)
		require.Equal(t, []engine.Observation{
			task(engine.ObservedTaskCreated), step(engine.ObservedStepClaimed), failed, task(engine.ObservedTaskFailed),
		}, rec.take(t))

		cancelled := b.create(t, "one")
		_, err = b.eng.CancelTask(b.ctx, engine.TaskOp{TaskID: cancelled.ID.String(), Reason: "not needed"})
		require.NoError(t, err)
		require.Equal(t, []engine.Observation{task(engine.ObservedTaskCreated), task(engine.ObservedTaskCancelled)}, rec.take(t))
	})
}
