package events_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestRegistryExporters(t *testing.T) {
	t.Parallel()
	r := events.NewRegistry(testLogger(t))
	custom := events.ExporterFunc(func(w io.Writer) events.RecordWriter { return events.JSONLines{}.NewWriter(w) })
	require.Error(t, r.RegisterExporter(events.FormatJSON, custom, false), "a duplicate without replace")
	require.NoError(t, r.RegisterExporter(events.FormatJSON, custom, true), "replacing is asked for")
	require.NoError(t, r.RegisterExporter("ndjson", custom, false))
	require.Error(t, r.RegisterExporter("ndjson", custom, false))
	require.Error(t, r.RegisterExporter("Bad Format", custom, false))
	require.Error(t, r.RegisterExporter("x", nil, false))
	require.Equal(t, []string{"csv", "json", "ndjson"}, r.Formats())
	_, ok := r.Exporter("xml")
	require.False(t, ok)
	require.Panics(t, func() { r.MustRegisterExporter("csv", custom, false) })
}

func TestRegistrySubscribeRefusals(t *testing.T) {
	t.Parallel()
	r := events.NewRegistry(testLogger(t))
	fn := func(context.Context, *events.Stored) error { return nil }
	require.NoError(t, r.Subscribe("audit", events.Filter{}, fn))
	require.Error(t, r.Subscribe("audit", events.Filter{}, fn), "a duplicate name")
	require.Error(t, r.Subscribe("Audit Log", events.Filter{}, fn), "a bad name")
	require.Error(t, r.Subscribe("nofn", events.Filter{}, nil))
	err := r.Subscribe("badfilter", events.Filter{Types: []string{"STEP"}}, fn)
	require.Error(t, err)
	require.Panics(t, func() { r.MustSubscribe("audit", events.Filter{}, fn) })
}

// TestRegistryRun: in-process subscribers get the matching events
// appended after Run started, in order; one that fails gets the same
// event again, and one that blocks holds up nobody else.
func TestRegistryRun(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		r := events.NewRegistry(b.logger)
		r.RetryMin, r.RetryMax = time.Millisecond, 5*time.Millisecond
		var mu sync.Mutex
		var steps, all []int64
		failures, failAt := 2, int64(-1)
		r.MustSubscribe("steps", events.Filter{Types: []string{"step.*"}}, func(_ context.Context, ev *events.Stored) error {
			mu.Lock()
			defer mu.Unlock()
			if ev.Sequence == failAt && failures > 0 {
				failures--
				return errors.New("downstream unavailable")
			}
			steps = append(steps, ev.Sequence)
			return nil
		})
		r.MustSubscribe("all", events.Filter{}, func(_ context.Context, ev *events.Stored) error {
			mu.Lock()
			defer mu.Unlock()
			all = append(all, ev.Sequence)
			return nil
		})
		release := make(chan struct{})
		r.MustSubscribe("stuck", events.Filter{}, func(ctx context.Context, _ *events.Stored) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx, b.log) }()
		// The subscribers start at the head Run finds: append markers until
		// one arrives, then the events under test come after.
		require.Eventually(t, func() bool {
			_ = b.append(ctx, events.Event{Type: "test.marker"})
			mu.Lock()
			defer mu.Unlock()
			return len(all) > 0
		}, 10*time.Second, 20*time.Millisecond)
		require.Error(t, r.Subscribe("late", events.Filter{}, func(context.Context, *events.Stored) error { return nil }),
			"Subscribe is refused once Run runs")
		n, err := db.Client.Event.Query().Count(ctx)
		require.NoError(t, err)
		base := int64(n)
		b.waitHead(t, base)
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return all[len(all)-1] == base
		}, 10*time.Second, 5*time.Millisecond)
		mu.Lock()
		all = nil
		failAt = base + 2
		mu.Unlock()

		b.appendTx(t, events.Event{Type: events.StepEnqueued}, events.Event{Type: events.StepClaimed})
		b.appendTx(t, events.Event{Type: events.TaskStarted}, events.Event{Type: events.StepCompleted})
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(all) == 4 && len(steps) == 3
		}, 10*time.Second, 5*time.Millisecond)
		mu.Lock()
		require.Equal(t, []int64{base + 1, base + 2, base + 3, base + 4}, all)
		require.Equal(t, []int64{base + 1, base + 2, base + 4}, steps, "the failed event was delivered again, in its place")
		require.Zero(t, failures)
		mu.Unlock()
		close(release)
		stop()
		require.NoError(t, <-done)
		require.Error(t, r.Run(ctx, b.log), "Run runs once")
	})
}
