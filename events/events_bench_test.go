package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// The event log's hot paths: appending in the writer's transaction, and
// reading pages as ListEvents and subscribers do. SQLite by default;
// TASKER_BENCH_POSTGRES=1 adds PostgreSQL (TASKER_TEST_POSTGRES_URL):
//
//	go test -run '^$' -bench . -benchtime 2s ./events

// benchEvent is a typical step event: ids, a small payload.
func benchEvent() events.Event {
	task, step := uuid.New(), uuid.New()
	return events.Event{
		Type: "step.completed", CorrelationID: "corr-bench", Namespace: "ns",
		TemplateName: "diamond", TemplateVersion: "1.0.0", TaskID: &task, StepID: &step,
		Payload: map[string]any{"step_name": "a", "handler": "h", "from_state": "in_progress", "attempt": 1},
		At:      time.Now(),
	}
}

// BenchmarkAppend: one transaction per iteration appending a batch of
// events, as one engine change does (1: a claim; 4: a completion that
// enqueues a child and finalizes the task). On a log that already holds
// events, so the head lookup is not on an empty index.
func BenchmarkAppend(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, batch := range []int{1, 4, 32} {
			b.Run(fmt.Sprintf("%s/events%d", d, batch), func(b *testing.B) {
				db := storagetest.Open(b, d)
				ctx := context.Background()
				evs := make([]events.Event, batch)
				for i := range evs {
					evs[i] = benchEvent()
				}
				appendTx := func() {
					err := db.Tx(ctx, func(tx *ent.Tx) error { return events.Append(ctx, tx, db.SQL(), evs...) })
					if err != nil {
						b.Fatal(err)
					}
				}
				for range 100 {
					appendTx()
				}
				b.ReportAllocs()
				cpu := storagetest.StartCPU(b)
				for range b.N {
					appendTx()
				}
				cpu.Stop(b)
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkList: reading a page of 1000 from a log of 10,000 events, with
// no filter and with a type filter that keeps a quarter of them.
func BenchmarkList(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, f := range []struct {
			name   string
			filter events.Filter
		}{{"all", events.Filter{}}, {"type", events.Filter{Types: []string{"task.*"}}}} {
			b.Run(d+"/"+f.name, func(b *testing.B) {
				db := storagetest.Open(b, d)
				ctx := context.Background()
				l := events.NewLog(db, slog.New(slog.DiscardHandler))
				if d == "postgres" {
					seq := events.NewSequencer(db, slog.New(slog.DiscardHandler), events.SequencerOptions{Retry: 20 * time.Millisecond, Stamped: l.Notify})
					runBench(b, l.Run, seq.Run)
				}
				const total = 10_000
				batch := make([]events.Event, 100)
				for range total / len(batch) {
					for i := range batch {
						batch[i] = benchEvent()
						if i%4 == 0 {
							batch[i].Type = "task.started"
						}
					}
					if err := db.Tx(ctx, func(tx *ent.Tx) error { return events.Append(ctx, tx, db.SQL(), batch...) }); err != nil {
						b.Fatal(err)
					}
					l.Appended()
				}
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				if err := l.Wait(wctx, total-1); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				cpu := storagetest.StartCPU(b)
				for i := range b.N {
					after := int64(i%9) * 1000
					if _, err := l.List(ctx, events.Query{Filter: f.filter, After: after, Limit: 1000}); err != nil {
						b.Fatal(err)
					}
				}
				cpu.Stop(b)
			})
		}
	}
}

// runBench runs each fn until the benchmark ends.
func runBench(b *testing.B, fns ...func(context.Context) error) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				b.Error(err)
			}
		})
	}
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// BenchmarkFanOutReads: one commit of one event per iteration, waited for
// until every subscription has delivered it, with 1 and with 1,000
// subscriptions following the log. reads/commit is what the log asked the
// database per commit; it should not grow with the subscriptions.
func BenchmarkFanOutReads(b *testing.B) {
	for _, d := range storagetest.BenchDialects() {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("%s/subscribers%d", d, n), func(b *testing.B) {
				db := storagetest.Open(b, d)
				ctx := context.Background()
				logger := slog.New(slog.DiscardHandler)
				l := events.NewLog(db, logger)
				seq := events.NewSequencer(db, logger, events.SequencerOptions{Retry: 20 * time.Millisecond, Stamped: l.Notify})
				ln := storage.NewListener(db, logger, storage.ListenerOptions{})
				if err := errors.Join(l.Listen(ln), seq.Listen(ln)); err != nil {
					b.Fatal(err)
				}
				runBench(b, ln.Run, l.Run, seq.Run)
				// delivered counts deliveries; each one pokes progress, which
				// the loop below waits on.
				var delivered atomic.Int64
				progress := make(chan struct{}, 1)
				subCtx, cancel := context.WithCancel(ctx)
				var wg sync.WaitGroup
				b.Cleanup(func() { cancel(); wg.Wait() })
				for range n {
					sub, err := l.Subscribe(ctx, events.SubscriptionOptions{Start: events.StartNow})
					if err != nil {
						b.Fatal(err)
					}
					wg.Go(func() {
						_ = sub.Run(subCtx, func(context.Context, *events.Stored) error {
							delivered.Add(1)
							select {
							case progress <- struct{}{}:
							default:
							}
							return nil
						}, nil)
					})
				}
				// The subscriptions join the reader's feed as they start: poll
				// for that, with a deadline.
				joined := time.Now().Add(time.Minute)
				tick := time.NewTicker(time.Millisecond)
				for l.Subscriptions() < n {
					if time.Now().After(joined) {
						b.Fatalf("%d of %d subscriptions joined the reader", l.Subscriptions(), n)
					}
					<-tick.C
				}
				tick.Stop()
				ev := benchEvent()
				reads := l.Reads()
				b.ResetTimer()
				for i := range b.N {
					if err := db.Tx(ctx, func(tx *ent.Tx) error { return events.Append(ctx, tx, db.SQL(), ev) }); err != nil {
						b.Fatal(err)
					}
					l.Appended()
					for delivered.Load() < int64((i+1)*n) {
						<-progress
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(l.Reads()-reads)/float64(b.N), "reads/commit")
			})
		}
	}
}
