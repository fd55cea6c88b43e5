package engine_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
)

type bundle struct {
	ctx context.Context
	db  *storage.DB
	eng *engine.Engine
}

func setup(t *testing.T, db *storage.DB) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	templates := registry.NewStore(db)
	return &bundle{ctx: ctx, db: db, eng: engine.New(db, templates, log, engine.Options{})}
}

// register stores a template whose steps are given as name → parents, in
// the order of names, all served by handler "h" in namespace "ns", with
// max_attempts attempts and no backoff.
func (b *bundle) register(t *testing.T, name string, maxAttempts int32, names []string, deps map[string][]string) {
	t.Helper()
	b.registerWith(t, name, &taskerv1.RetryPolicy{
		MaxAttempts: proto.Int32(maxAttempts), InitialBackoff: durationpb.New(0), MaxBackoff: durationpb.New(0),
	}, names, deps)
}

// registerWith is register with a retry policy of its own.
func (b *bundle) registerWith(t *testing.T, name string, policy *taskerv1.RetryPolicy, names []string, deps map[string][]string) {
	t.Helper()
	tpl := &taskerv1.TaskTemplate{
		Namespace: "ns", Name: name, Version: "1.0.0",
		RetryPolicy: policy, LeaseDuration: durationpb.New(time.Minute),
	}
	for _, n := range names {
		tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{Name: n, Handler: "h", DependsOn: deps[n]})
	}
	_, _, err := registry.NewStore(b.db).Register(b.ctx, tpl, false)
	require.NoError(t, err)
}

func (b *bundle) create(t *testing.T, name string) *engine.Task {
	t.Helper()
	v, dup, err := b.eng.CreateTask(b.ctx, engine.CreateTaskParams{Namespace: "ns", Name: name, CorrelationID: "corr-" + name})
	require.NoError(t, err)
	require.False(t, dup)
	return v.Task
}

func (b *bundle) claim(t *testing.T, max int) []engine.Claim {
	t.Helper()
	claims, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
		WorkerID: "w1", Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: max,
	}, nil)
	require.NoError(t, err)
	return claims
}

func (b *bundle) step(t *testing.T, id uuid.UUID) *ent.Step {
	t.Helper()
	s, err := b.db.Reader.Step.Get(b.ctx, id)
	require.NoError(t, err)
	return s
}

func (b *bundle) task(t *testing.T, id uuid.UUID) *ent.Task {
	t.Helper()
	s, err := b.db.Reader.Task.Get(b.ctx, id)
	require.NoError(t, err)
	return s
}

// reap runs reaper passes until the steps left in_progress: the test
// moved their lease or deadline into the past.
func (b *bundle) reap(t *testing.T, ids ...uuid.UUID) {
	t.Helper()
	// Passes run to their end: a reaper cancelled while its commit's
	// answer is on the way may have committed without knowing it, and
	// then recorded nothing.
	require.Eventually(t, func() bool {
		require.NoError(t, engine.ReapOnce(b.ctx, b.eng))
		for _, id := range ids {
			if b.step(t, id).State == "in_progress" {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// eventTypes lists the event types of a task in log order.
func (b *bundle) eventTypes(t *testing.T, taskID uuid.UUID) []string {
	t.Helper()
	evs, err := b.db.Reader.Event.Query().Where(event.TaskID(taskID)).Order(event.ByID()).All(b.ctx)
	require.NoError(t, err)
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}
