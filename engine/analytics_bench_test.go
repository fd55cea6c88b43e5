package engine_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/ent/tasktemplate"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// statsBenchTasks is how many finished tasks BenchmarkStats stores: each
// of two steps (fetch, then work), created one every 864ms over 24 hours,
// with the transition rows a claim and a completion write.
const statsBenchTasks = 100_000

// BenchmarkStats times one Stats call over a store of 100,000 finished
// tasks, for a one-hour window (about 4,200 tasks and 8,300 attempts) and
// for the whole day (every row counted, the percentiles over the 10,000
// most recent). The store is written directly, in bulk, untimed:
//
//	go test -run '^$' -bench Stats -benchtime 20x ./engine
func BenchmarkStats(b *testing.B) {
	for _, dialect := range storagetest.BenchDialects() {
		b.Run(dialect, func(b *testing.B) {
			bb := benchSetup(b, dialect)
			base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			seedStats(b, bb, base)
			for _, w := range []struct {
				name     string
				from, to time.Time
			}{
				{"window=1h", base.Add(12 * time.Hour), base.Add(13 * time.Hour)},
				{"window=24h", base, base.Add(25 * time.Hour)},
			} {
				b.Run(w.name, func(b *testing.B) {
					var st *engine.Stats
					cpu := storagetest.StartCPU(b)
					for b.Loop() {
						var err error
						st, err = bb.eng.Stats(bb.ctx, engine.StatsParams{Namespace: "bench", From: w.from, To: w.to})
						if err != nil {
							b.Fatal(err)
						}
					}
					cpu.Stop(b)
					b.ReportMetric(float64(st.StepAttempts), "attempts")
				})
			}
		})
	}
}

func seedStats(b *testing.B, bb *benchBundle, base time.Time) {
	b.Helper()
	tpl := &taskerv1.TaskTemplate{Namespace: "bench", Name: "stats", Version: "1.0.0",
		Steps: []*taskerv1.StepTemplate{{Name: "fetch", Handler: "fetch"}, {Name: "work", Handler: "work", DependsOn: []string{"fetch"}}}}
	_, _, err := registry.NewStore(bb.db).Register(bb.ctx, tpl, false)
	require.NoError(b, err)
	tplID, err := bb.db.Reader.TaskTemplate.Query().Where(tasktemplate.Name("stats")).OnlyID(bb.ctx)
	require.NoError(b, err)
	const batch = 500
	ctxJSON := json.RawMessage(`{}`)
	for start := 0; start < statsBenchTasks; start += batch {
		err := bb.db.Tx(bb.ctx, func(tx *ent.Tx) error {
			var tasks []*ent.TaskCreate
			var steps []*ent.StepCreate
			var stepTr []*ent.StepTransitionCreate
			var taskTr []*ent.TaskTransitionCreate
			for i := start; i < min(start+batch, statsBenchTasks); i++ {
				created := base.Add(time.Duration(i) * 864 * time.Millisecond)
				id := uuid.Must(uuid.NewV7())
				at := created
				for pos, h := range []string{"fetch", "work"} {
					sid := uuid.Must(uuid.NewV7())
					claimed := at.Add(10 * time.Millisecond)
					ended := claimed.Add(time.Duration(1+(i*7+pos*13)%400) * time.Millisecond)
					steps = append(steps, tx.Step.Create().SetID(sid).SetTaskID(id).SetNamespace("bench").SetName(h).SetHandler(h).
						SetConfig(ctxJSON).SetState(step.StateComplete).SetAttempts(1).SetAttemptBudget(3).SetPosition(pos).
						SetMaxAttempts(3).SetBackoffInitialMs(0).SetBackoffMultiplier(2).SetBackoffMaxMs(0).SetBackoffJitter(0).
						SetLeaseDurationMs(60_000).SetExecutionTimeoutMs(0).SetCreatedAt(created).SetUpdatedAt(ended).SetFinishedAt(ended))
					stepTr = append(stepTr,
						tx.StepTransition.Create().SetStepID(sid).SetTaskID(id).SetFromState("enqueued").SetToState("in_progress").SetAttempt(1).SetCreatedAt(claimed),
						tx.StepTransition.Create().SetStepID(sid).SetTaskID(id).SetFromState("in_progress").SetToState("complete").SetAttempt(1).SetCreatedAt(ended))
					at = ended
				}
				tasks = append(tasks, tx.Task.Create().SetID(id).SetTemplateID(tplID).SetNamespace("bench").SetTemplateName("stats").
					SetTemplateVersion("1.0.0").SetState(task.StateComplete).SetContext(ctxJSON).SetCorrelationID(fmt.Sprint(i)).
					SetCreatedAt(created).SetUpdatedAt(at).SetStartedAt(created).SetFinishedAt(at))
				taskTr = append(taskTr, tx.TaskTransition.Create().SetTaskID(id).SetFromState("in_progress").SetToState("complete").SetCreatedAt(at))
			}
			if err := tx.Task.CreateBulk(tasks...).Exec(bb.ctx); err != nil {
				return err
			}
			if err := tx.Step.CreateBulk(steps...).Exec(bb.ctx); err != nil {
				return err
			}
			if err := tx.StepTransition.CreateBulk(stepTr...).Exec(bb.ctx); err != nil {
				return err
			}
			return tx.TaskTransition.CreateBulk(taskTr...).Exec(bb.ctx)
		})
		require.NoError(b, err)
	}
}
