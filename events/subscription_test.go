package events_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestSubscription: a filtered subscription delivers the matching events
// in order across pages and appends, and its heartbeats report scans past
// events it skipped.
func TestSubscription(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		b.appendTx(t, events.Event{Type: events.TaskCreated}, events.Event{Type: events.StepEnqueued},
			events.Event{Type: events.StepClaimed}, events.Event{Type: events.TaskStarted}, events.Event{Type: events.StepCompleted})
		b.waitHead(t, 5)

		sub, err := b.log.Subscribe(ctx, events.SubscriptionOptions{
			Filter: events.Filter{Types: []string{"step.*"}}, Start: events.StartAfter, After: 2,
			Heartbeat: 20 * time.Millisecond, PageSize: 2,
		})
		require.NoError(t, err)
		require.Equal(t, int64(5), sub.Head)
		require.Equal(t, int64(2), sub.StartAfter)
		require.Equal(t, int64(1), sub.Oldest)

		var mu sync.Mutex
		var got []int64
		var scanned int64
		backwards := false
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- sub.Run(runCtx, func(_ context.Context, ev *events.Stored) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, ev.Sequence)
				return nil
			}, func(_ context.Context, s int64) error {
				mu.Lock()
				defer mu.Unlock()
				if s < scanned {
					backwards = true
				}
				scanned = s
				return nil
			})
		}()
		scannedTo := func(n int64) func() bool {
			return func() bool {
				mu.Lock()
				defer mu.Unlock()
				return scanned >= n
			}
		}
		require.Eventually(t, scannedTo(5), 10*time.Second, 5*time.Millisecond)
		b.appendTx(t, events.Event{Type: events.TaskCompleted}, events.Event{Type: "billing.sent"})
		b.appendTx(t, events.Event{Type: events.StepCancelled})
		b.waitHead(t, 8)
		require.Eventually(t, scannedTo(8), 10*time.Second, 5*time.Millisecond)
		b.appendTx(t, events.Event{Type: events.TaskCompleted})
		b.waitHead(t, 9)
		require.Eventually(t, scannedTo(9), 10*time.Second, 5*time.Millisecond, "a heartbeat reports a scan that matched nothing")
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		require.Equal(t, []int64{3, 5, 8}, got)
		require.False(t, backwards, "heartbeats never go back")
		require.Equal(t, int64(9), sub.Scanned())
	})
}

func TestSubscribeRefusals(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		b.appendTx(t, events.Event{Type: events.TaskCreated})
		b.waitHead(t, 1)
		for _, tc := range []struct {
			opts  events.SubscriptionOptions
			field string
		}{
			{events.SubscriptionOptions{Start: events.StartNow, After: 1}, "after_sequence"},
			{events.SubscriptionOptions{Start: events.StartAfter, After: -1}, "after_sequence"},
			{events.SubscriptionOptions{Start: events.StartAfter, After: 2}, "after_sequence"},
			{events.SubscriptionOptions{Start: events.Start(9)}, "start"},
			{events.SubscriptionOptions{UntilTaskFinished: true}, "filter.task_id"},
			{events.SubscriptionOptions{Filter: events.Filter{TaskID: "x"}}, "filter.task_id"},
		} {
			_, err := b.log.Subscribe(ctx, tc.opts)
			require.Equal(t, []string{tc.field}, violations(t, err), "%+v", tc.opts)
		}
		_, err := b.log.Subscribe(ctx, events.SubscriptionOptions{Filter: events.Filter{TaskID: uuid.NewString()}, UntilTaskFinished: true})
		require.Equal(t, fault.NotFound, fault.CodeOf(err))
	})
}
