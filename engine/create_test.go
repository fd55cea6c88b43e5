package engine_test

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/ent/tasktransition"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// registerIdentity stores a one-step template of namespace ns with an
// identity strategy and, when schema is set, a context schema.
func (b *bundle) registerIdentity(t *testing.T, name string, strategy taskerv1.IdentityStrategy, schema map[string]any) {
	t.Helper()
	tpl := &taskerv1.TaskTemplate{
		Namespace: "ns", Name: name, Version: "1.0.0", IdentityStrategy: strategy,
		Steps: []*taskerv1.StepTemplate{{Name: "a", Handler: "h"}},
	}
	if schema != nil {
		s, err := structpb.NewStruct(schema)
		require.NoError(t, err)
		tpl.ContextSchema = s
	}
	_, _, err := registry.NewStore(b.db).Register(b.ctx, tpl, false)
	require.NoError(t, err)
}

// TestCreateTasksMixedOutcomes: one batch holds new tasks, refused entries
// and duplicates of stored tasks and of earlier entries. Each entry is
// answered as CreateTask would answer it alone; refused entries write
// nothing; every new task is written with its steps, transitions and
// events in the one transaction, and every duplicate records
// workflow.duplicate_detected on the task it duplicates.
func TestCreateTasksMixedOutcomes(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		rec := &observations{}
		b.eng = engine.New(db, registry.NewStore(db), slog.New(slog.DiscardHandler), engine.Options{Metrics: rec})
		b.register(t, "pair", 1, []string{"a", "b"}, map[string][]string{"b": {"a"}})
		b.registerIdentity(t, "keyed", taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY, map[string]any{
			"type": "object", "required": []any{"n"}, "properties": map[string]any{"n": map[string]any{"type": "integer"}},
		})
		b.registerIdentity(t, "strict", taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT, nil)

		storedKeyed, _, err := b.eng.CreateTask(b.ctx, engine.CreateTaskParams{Namespace: "ns", Name: "keyed", IdempotencyKey: "k-stored", Context: map[string]any{"n": 1}})
		require.NoError(t, err)
		storedStrict, _, err := b.eng.CreateTask(b.ctx, engine.CreateTaskParams{Namespace: "ns", Name: "strict", Context: map[string]any{"s": 1}})
		require.NoError(t, err)
		parent := storedStrict.Task.ID.String()
		rec.take(t)
		before := b.counts(t)

		runAt := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		ps := []engine.CreateTaskParams{
			/* 0 */ {Namespace: "ns", Name: "pair", Tags: map[string]string{"k": "v"}, Priority: 7, TraceParent: traceParent},
			/* 1 */ {Namespace: "ns", Name: "keyed", IdempotencyKey: "k-bad", Context: map[string]any{"n": "x"}},
			/* 2 */ {Namespace: "ns", Name: "nope"},
			/* 3 */ {Namespace: "ns", Name: "keyed", IdempotencyKey: "k-stored", Context: map[string]any{"n": 1}},
			/* 4 */ {Namespace: "ns", Name: "keyed", IdempotencyKey: "k-new", Context: map[string]any{"n": 2}, RunAt: &runAt},
			/* 5 */ {Namespace: "ns", Name: "keyed", IdempotencyKey: "k-new", Context: map[string]any{"n": 2}, RunAt: &runAt},
			/* 6 */ {Namespace: "ns", Name: "keyed", IdempotencyKey: "k-new", Context: map[string]any{"n": 3}},
			/* 7 */ {Namespace: "ns", Name: "keyed", IdempotencyKey: "k-stored", Context: map[string]any{"n": 9}},
			/* 8 */ {Namespace: "ns", Name: "strict", Context: map[string]any{"s": 1}},
			/* 9 */ {Namespace: "ns", Name: "strict", Context: map[string]any{"s": 2}},
			/* 10 */ {Namespace: "ns", Name: "strict", Context: map[string]any{"s": 2}},
			/* 11 */ {Namespace: "ns", Name: "pair", ParentTaskID: uuid.NewString()},
			/* 12 */ {Namespace: "ns", Name: "pair", ParentTaskID: parent},
			/* 13 */ {Namespace: "ns", Name: "keyed", Context: map[string]any{"n": 4}},
			/* 14 */ {Namespace: "ns", Name: "pair", Tags: map[string]string{"Bad Key": "v"}},
			/* 15 */ {Namespace: "ns", Name: "pair", Version: "9.9.9"},
		}
		for i := range ps {
			ps[i].CorrelationID = fmt.Sprintf("corr-%d", i)
		}
		got := b.eng.CreateTasks(b.ctx, ps)
		require.Len(t, got, len(ps))

		refused := map[int]fault.Code{
			1: fault.InvalidArgument, 2: fault.NotFound, 6: fault.AlreadyExists, 7: fault.AlreadyExists,
			11: fault.NotFound, 13: fault.InvalidArgument, 14: fault.InvalidArgument, 15: fault.NotFound,
		}
		fields := map[int]string{1: "context.n", 13: "idempotency_key", 14: "tags"}
		for i, code := range refused {
			require.Nil(t, got[i].Task, "entry %d", i)
			require.False(t, got[i].Duplicate, "entry %d", i)
			requireFault(t, got[i].Err, code, "", fmt.Sprintf("entry %d", i))
			if f, ok := fields[i]; ok {
				fe, _ := fault.As(got[i].Err)
				require.Equal(t, f, fe.Violations[0].Field, "entry %d", i)
			}
		}
		require.Contains(t, got[6].Err.Error(), got[4].Task.Task.ID.String(), "the key's holder is the task entry 4 creates")
		require.Contains(t, got[7].Err.Error(), storedKeyed.Task.ID.String())

		created := []int{0, 4, 9, 12}
		for _, i := range created {
			require.NoError(t, got[i].Err, "entry %d", i)
			require.False(t, got[i].Duplicate, "entry %d", i)
		}
		dups := map[int]uuid.UUID{
			3: storedKeyed.Task.ID, 5: got[4].Task.Task.ID, 8: storedStrict.Task.ID, 10: got[9].Task.Task.ID,
		}
		for i, id := range dups {
			require.NoError(t, got[i].Err, "entry %d", i)
			require.True(t, got[i].Duplicate, "entry %d", i)
			require.Equal(t, id, got[i].Task.Task.ID, "entry %d", i)
			require.Equal(t, 1, got[i].Task.Total(), "entry %d: the duplicate's step counts", i)
		}

		// The new tasks are as the batch answered them, and as stored.
		v := got[0].Task
		require.Len(t, v.Steps, 2)
		require.Equal(t, map[engine.StepState]int{engine.StepEnqueued: 1, engine.StepPending: 1}, v.Counts)
		require.Equal(t, 1, v.Due)
		require.Equal(t, []string{"a"}, v.DependsOn[v.Steps[1].ID])
		row := b.task(t, v.Task.ID)
		require.Equal(t, traceParent, row.TraceParent)
		require.Equal(t, "corr-0", row.CorrelationID)
		require.Equal(t, int32(7), row.Priority)
		require.Equal(t, map[string]string{"k": "v"}, row.Tags)
		for _, s := range v.Steps {
			require.Equal(t, int32(7), s.Priority)
		}
		require.Equal(t, 0, got[4].Task.Due, "due at run_at")
		require.Equal(t, runAt, got[4].Task.Steps[0].AvailableAt.UTC())
		require.Equal(t, "k-new", *b.task(t, got[4].Task.Task.ID).IdempotencyKey)
		require.Equal(t, storedStrict.Task.ID, *b.task(t, got[12].Task.Task.ID).ParentTaskID)
		for _, i := range created {
			id := got[i].Task.Task.ID
			read, err := b.eng.GetTask(b.ctx, id.String())
			require.NoError(t, err)
			require.Equal(t, read.Counts, got[i].Task.Counts, "entry %d", i)
			require.Len(t, got[i].Task.Steps, len(read.Steps), "entry %d", i)
			for j := range read.Steps {
				require.Equal(t, read.Steps[j].ID, got[i].Task.Steps[j].ID, "entry %d", i)
			}
		}

		// Nothing else was written: four tasks with six steps, their
		// transitions and events, and four duplicate_detected events.
		after := b.counts(t)
		require.Equal(t, before.tasks+4, after.tasks)
		require.Equal(t, before.steps+2+1+1+2, after.steps)
		require.Equal(t, before.taskTransitions+4, after.taskTransitions)
		require.Equal(t, before.events+4*2+4, after.events)
		for _, i := range created {
			id := got[i].Task.Task.ID
			want := []string{"task.created", "step.enqueued"}
			if id == dups[5] || id == dups[10] {
				want = append(want, "workflow.duplicate_detected")
			}
			require.Equal(t, want, b.eventTypes(t, id), "entry %d", i)
		}
		require.Equal(t, []string{"task.created", "step.enqueued", "workflow.duplicate_detected"}, b.eventTypes(t, storedKeyed.Task.ID))
		require.Equal(t, []string{"task.created", "step.enqueued", "workflow.duplicate_detected"}, b.eventTypes(t, storedStrict.Task.ID))
		dupEvent, err := db.Reader.Event.Query().
			Where(event.TaskID(storedKeyed.Task.ID), event.Type("workflow.duplicate_detected")).Only(b.ctx)
		require.NoError(t, err)
		require.JSONEq(t, `{"request_correlation_id": "corr-3", "idempotency_key": "k-stored"}`, string(dupEvent.Payload))

		obs := rec.take(t)
		kinds := map[engine.ObservationKind]int{}
		for _, o := range obs {
			require.Equal(t, "ns", o.Namespace)
			kinds[o.Kind]++
		}
		require.Equal(t, map[engine.ObservationKind]int{engine.ObservedTaskCreated: 4, engine.ObservedTaskDuplicated: 4}, kinds)
	})
}

type rowCounts struct{ tasks, steps, taskTransitions, events int }

func (b *bundle) counts(t *testing.T) rowCounts {
	t.Helper()
	var c rowCounts
	var err error
	c.tasks, err = b.db.Reader.Task.Query().Count(b.ctx)
	require.NoError(t, err)
	c.steps, err = b.db.Reader.Step.Query().Count(b.ctx)
	require.NoError(t, err)
	c.taskTransitions, err = b.db.Reader.TaskTransition.Query().Where(tasktransition.FromState("")).Count(b.ctx)
	require.NoError(t, err)
	c.events, err = b.db.Reader.Event.Query().Count(b.ctx)
	require.NoError(t, err)
	return c
}

// TestCreateTasksWakesClaimers: a claimer long-polling for the batch's
// handler is woken by the commit and claims the root steps.
func TestCreateTasksWakesClaimers(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "single", 1, []string{"a"}, nil)
		claimed := make(chan []engine.Claim, 1)
		go func() {
			cl, err := b.eng.ClaimSteps(b.ctx, engine.ClaimParams{
				WorkerID: "w1", Handlers: []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}, Max: 10, Wait: 20 * time.Second,
			}, nil)
			if err != nil {
				cl = nil
			}
			claimed <- cl
		}()
		require.Eventually(t, func() bool { return b.eng.SleepingClaimers() == 1 }, 10*time.Second, time.Millisecond)
		start := time.Now()
		got := b.eng.CreateTasks(b.ctx, []engine.CreateTaskParams{{Namespace: "ns", Name: "single"}, {Namespace: "ns", Name: "single"}})
		for _, c := range got {
			require.NoError(t, c.Err)
		}
		cl := <-claimed
		require.NotEmpty(t, cl, "the claimer was woken with work")
		require.Less(t, time.Since(start), 10*time.Second, "woken by the commit, not by its wait ending")
	})
}

// TestCreateTasksConcurrentKeys: batches racing with the same idempotency
// keys in different orders create each key's task once; every other entry
// is answered as its duplicate. On PostgreSQL the losers of a key meet
// the winner's uncommitted row, fail their transaction and run again.
func TestCreateTasksConcurrentKeys(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.registerIdentity(t, "keyed", taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY, nil)
		const callers, keys = 4, 30
		results := make([][]engine.Creation, callers)
		batches := make([][]engine.CreateTaskParams, callers)
		for c := range callers {
			for k := range keys {
				batches[c] = append(batches[c], engine.CreateTaskParams{Namespace: "ns", Name: "keyed", IdempotencyKey: fmt.Sprintf("key-%02d", k)})
			}
			if c%2 == 1 {
				slices.Reverse(batches[c])
			}
		}
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() { results[c] = b.eng.CreateTasks(b.ctx, batches[c]) })
		}
		wg.Wait()
		byKey := map[string]uuid.UUID{}
		fresh := map[string]int{}
		for c, res := range results {
			for i, r := range res {
				require.NoError(t, r.Err, "caller %d entry %d", c, i)
				key := batches[c][i].IdempotencyKey
				if id, ok := byKey[key]; ok {
					require.Equal(t, id, r.Task.Task.ID, "one task per key")
				}
				byKey[key] = r.Task.Task.ID
				if !r.Duplicate {
					fresh[key]++
				}
			}
		}
		require.Len(t, byKey, keys)
		for k, n := range fresh {
			require.Equal(t, 1, n, "key %s created once", k)
		}
		n, err := db.Reader.Task.Query().Where(task.Namespace("ns")).Count(b.ctx)
		require.NoError(t, err)
		require.Equal(t, keys, n)
	})
}

// TestCreateTasksExpiredKey: a key whose window has passed is released
// from the old task and creates a new one, in a batch as alone.
func TestCreateTasksExpiredKey(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		b.register(t, "single", 1, []string{"a"}, nil)
		now := time.Now()
		short := engine.New(db, registry.NewStore(db), slog.New(slog.DiscardHandler), engine.Options{IdempotencyWindow: time.Hour})
		engine.SetClock(short, func() time.Time { return now })
		old := short.CreateTasks(b.ctx, []engine.CreateTaskParams{{Namespace: "ns", Name: "single", IdempotencyKey: "k"}})[0]
		require.NoError(t, old.Err)

		now = now.Add(2 * time.Hour)
		got := short.CreateTasks(b.ctx, []engine.CreateTaskParams{
			{Namespace: "ns", Name: "single", IdempotencyKey: "k", Reason: "a different request"},
			{Namespace: "ns", Name: "single", IdempotencyKey: "k", Reason: "a different request"},
		})
		require.NoError(t, got[0].Err)
		require.False(t, got[0].Duplicate, "the expired key is free again")
		require.NotEqual(t, old.Task.Task.ID, got[0].Task.Task.ID)
		require.NoError(t, got[1].Err)
		require.True(t, got[1].Duplicate)
		require.Equal(t, got[0].Task.Task.ID, got[1].Task.Task.ID)
		require.Nil(t, b.task(t, old.Task.Task.ID).IdempotencyKey, "the old task no longer holds the key")
	})
}
