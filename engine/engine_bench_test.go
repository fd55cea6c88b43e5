package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/engine"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// The hot paths of the engine, one operation per iteration, on a fresh
// database per benchmark. SQLite by default (cheap);
// TASKER_BENCH_POSTGRES=1 adds PostgreSQL (TASKER_TEST_POSTGRES_URL):
//
//	go test -run '^$' -bench . -benchtime 2s ./engine
//	TASKER_BENCH_POSTGRES=1 go test -run '^$' -bench . -benchtime 2s ./engine
//
// Each benchmark prepares b.N units of work untimed (tasks created, steps
// claimed), then times only the operation. Whole-system numbers through
// the gRPC API come from `tasker bench`.

// benchBundle is an engine on a fresh database with the bench templates.
type benchBundle struct {
	ctx context.Context
	db  *storage.DB
	eng *engine.Engine
}

func benchSetup(b *testing.B, dialect string) *benchBundle {
	b.Helper()
	db := storagetest.Open(b, dialect)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	eng := engine.New(db, registry.NewStore(db), slog.New(slog.DiscardHandler), engine.Options{})
	bb := &benchBundle{ctx: ctx, db: db, eng: eng}
	fan := map[string][]string{}
	var fanNames []string
	fanNames = append(fanNames, "root")
	for i := range 10 {
		n := fmt.Sprintf("m%d", i)
		fanNames = append(fanNames, n)
		fan[n] = []string{"root"}
	}
	for name, steps := range map[string]struct {
		names []string
		deps  map[string][]string
	}{
		"single":  {[]string{"s"}, nil},
		"chain":   {[]string{"a", "b"}, map[string][]string{"b": {"a"}}},
		"fanout":  {fanNames, fan},
		"diamond": {[]string{"a", "b", "c", "d"}, map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}},
	} {
		tpl := &taskerv1.TaskTemplate{
			Namespace: "ns", Name: name, Version: "1.0.0",
			RetryPolicy:   &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(3)},
			LeaseDuration: durationpb.New(time.Hour),
		}
		for _, n := range steps.names {
			tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{Name: n, Handler: "h", DependsOn: steps.deps[n]})
		}
		if _, _, err := registry.NewStore(db).Register(ctx, tpl, false); err != nil {
			b.Fatal(err)
		}
	}
	return bb
}

func (bb *benchBundle) create(b *testing.B, template string, n int) {
	b.Helper()
	for range n {
		if _, _, err := bb.eng.CreateTask(bb.ctx, engine.CreateTaskParams{Namespace: "ns", Name: template}); err != nil {
			b.Fatal(err)
		}
	}
}

var benchHandlers = []engine.HandlerRef{{Namespace: "ns", Handler: "h"}}

func (bb *benchBundle) claim(b *testing.B, maxSteps int) []engine.Claim {
	b.Helper()
	claims, err := bb.eng.ClaimSteps(bb.ctx, engine.ClaimParams{WorkerID: "bench", Handlers: benchHandlers, Max: maxSteps}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return claims
}

// claimAll claims n steps, 100 at a time.
func (bb *benchBundle) claimAll(b *testing.B, n int) []engine.Claim {
	b.Helper()
	var out []engine.Claim
	for len(out) < n {
		got := bb.claim(b, min(100, n-len(out)))
		if len(got) == 0 {
			b.Fatalf("claimed %d of %d steps", len(out), n)
		}
		out = append(out, got...)
	}
	return out
}

func (bb *benchBundle) complete(b *testing.B, c engine.Claim) {
	b.Helper()
	err := bb.eng.CompleteStep(bb.ctx, engine.Lease{StepID: c.Step.ID.String(), Token: c.LeaseToken}, map[string]any{"ok": true})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCreateTask: one task per iteration, in one transaction with its
// steps, transitions and events.
func BenchmarkCreateTask(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, tpl := range []string{"single", "diamond"} {
			b.Run(d+"/"+tpl, func(b *testing.B) {
				bb := benchSetup(b, d)
				b.ReportAllocs()
				cpu := storagetest.StartCPU(b)
				bb.create(b, tpl, b.N)
				cpu.Stop(b)
			})
		}
	}
}

// BenchmarkCreateTasks: creating tasks in batches of 100 (one transaction
// each); ns/op and cpu-ns/op are per task, to set beside CreateTask's.
func BenchmarkCreateTasks(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, tpl := range []string{"single", "diamond"} {
			b.Run(d+"/"+tpl, func(b *testing.B) {
				bb := benchSetup(b, d)
				batch := make([]engine.CreateTaskParams, 100)
				for i := range batch {
					batch[i] = engine.CreateTaskParams{Namespace: "ns", Name: tpl}
				}
				b.ReportAllocs()
				cpu := storagetest.StartCPU(b)
				for left := b.N; left > 0; left -= len(batch) {
					for _, c := range bb.eng.CreateTasks(bb.ctx, batch[:min(left, len(batch))]) {
						if c.Err != nil {
							b.Fatal(c.Err)
						}
					}
				}
				cpu.Stop(b)
			})
		}
	}
}

// BenchmarkClaimSteps: claiming from a queue of due steps, max steps per
// call; ns/op is per call, steps/s per step.
func BenchmarkClaimSteps(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, batch := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/max%d", d, batch), func(b *testing.B) {
				bb := benchSetup(b, d)
				bb.create(b, "single", b.N*batch)
				b.ReportAllocs()
				cpu := storagetest.StartCPU(b)
				for range b.N {
					if got := bb.claim(b, batch); len(got) != batch {
						b.Fatalf("claimed %d, want %d", len(got), batch)
					}
				}
				cpu.Stop(b)
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "steps/s")
			})
		}
	}
}

// BenchmarkCompleteStep: completing a claimed step, with what the
// completion settles in the same transaction.
//
//   - finalize: the task's only step; the task completes.
//   - readiness: the first of a chain; its child is enqueued.
//   - fanout10: a root with ten children, all enqueued.
//   - join: the second of a diamond's middle steps (the first one completes
//     untimed), so the join step becomes ready.
func BenchmarkCompleteStep(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, c := range []struct{ name, template string }{
			{"finalize", "single"}, {"readiness", "chain"}, {"fanout10", "fanout"},
		} {
			b.Run(d+"/"+c.name, func(b *testing.B) {
				bb := benchSetup(b, d)
				bb.create(b, c.template, b.N)
				claims := bb.claimAll(b, b.N)
				b.ReportAllocs()
				cpu := storagetest.StartCPU(b)
				for _, cl := range claims {
					bb.complete(b, cl)
				}
				cpu.Stop(b)
			})
		}
		b.Run(d+"/join", func(b *testing.B) {
			bb := benchSetup(b, d)
			bb.create(b, "diamond", b.N)
			for _, cl := range bb.claimAll(b, b.N) { // every a
				bb.complete(b, cl)
			}
			middles := bb.claimAll(b, 2*b.N) // every b and c
			var last []engine.Claim
			seen := map[string]bool{}
			for _, cl := range middles {
				if id := cl.Step.TaskID.String(); !seen[id] {
					seen[id] = true
					bb.complete(b, cl)
					continue
				}
				last = append(last, cl)
			}
			b.ReportAllocs()
			cpu := storagetest.StartCPU(b)
			for _, cl := range last {
				bb.complete(b, cl)
			}
			cpu.Stop(b)
		})
	}
}

// BenchmarkCompleteStepParallel: completions from concurrent callers, as
// many workers send them; on SQLite they queue for the one writer.
func BenchmarkCompleteStepParallel(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		b.Run(d+"/readiness", func(b *testing.B) {
			bb := benchSetup(b, d)
			bb.create(b, "chain", b.N)
			claims := make(chan engine.Claim, b.N)
			for _, cl := range bb.claimAll(b, b.N) {
				claims <- cl
			}
			close(claims)
			b.SetParallelism(8)
			b.ReportAllocs()
			cpu := storagetest.StartCPU(b)
			defer cpu.Stop(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cl := <-claims
					if err := bb.eng.CompleteStep(bb.ctx, engine.Lease{StepID: cl.Step.ID.String(), Token: cl.LeaseToken}, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
