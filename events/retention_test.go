package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestRetentionCount(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		for range 25 {
			b.appendTx(t, events.Event{Type: events.TaskCreated})
		}
		b.waitHead(t, 25)
		r := events.NewRetainer(db, b.logger, events.Retention{MaxCount: 10, BatchSize: 4})
		n, err := r.Trim(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(15), n, "in batches of 4 until 10 are left")
		require.Equal(t, []int64{16, 25}, bounds(t, b))
		n, err = r.Trim(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "nothing more to do")

		// Resuming inside the window works; before it is LOG_TRUNCATED.
		p, err := b.log.List(ctx, events.Query{After: 15})
		require.NoError(t, err)
		require.Len(t, p.Events, 10)
		_, err = b.log.List(ctx, events.Query{After: 14})
		requireTruncated(t, err, "16")
		_, err = b.log.Subscribe(ctx, events.SubscriptionOptions{Start: events.StartAfter, After: 3})
		requireTruncated(t, err, "16")
		s, err := b.log.Subscribe(ctx, events.SubscriptionOptions{Start: events.StartBeginning})
		require.NoError(t, err)
		require.Equal(t, int64(15), s.StartAfter)
		require.Equal(t, int64(16), s.Oldest)

		// The newest event is never removed, so numbering goes on from it.
		n, err = events.NewRetainer(db, b.logger, events.Retention{MaxCount: 1}).Trim(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(9), n)
		require.Equal(t, []int64{25, 25}, bounds(t, b))
		b.appendTx(t, events.Event{Type: events.TaskCreated})
		b.waitHead(t, 26)
	})
}

func TestRetentionAge(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		old := time.Now().Add(-2 * time.Hour)
		for i := range 10 {
			at := time.Now()
			if i < 6 || i == 7 {
				at = old // the 8th is old too, but numbered after a young one
			}
			b.appendTx(t, events.Event{Type: events.TaskCreated, At: at})
		}
		b.waitHead(t, 10)
		n, err := events.NewRetainer(db, b.logger, events.Retention{MaxAge: time.Hour, BatchSize: 4}).Trim(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(6), n, "from the oldest up to the first young event")
		require.Equal(t, []int64{7, 10}, bounds(t, b))

		// Everything old: all but the newest go.
		n, err = events.NewRetainer(db, b.logger, events.Retention{MaxAge: time.Nanosecond, MaxCount: 100}).Trim(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(3), n)
		require.Equal(t, []int64{10, 10}, bounds(t, b))
	})
}

// TestRetentionSkipsUnnumbered: on PostgreSQL, events the sequencer has
// not numbered yet (here: none runs) are never removed.
func TestRetentionSkipsUnnumbered(t *testing.T) {
	t.Parallel()
	db := storagetest.Open(t, "postgres")
	ctx := testContext(t)
	logger := testLogger(t)
	require.NoError(t, db.Tx(ctx, func(tx *ent.Tx) error {
		for i := range 5 {
			if err := tx.Event.Create().SetType(events.TaskCreated).SetPayload([]byte(`{}`)).
				SetCreatedAt(time.Now().Add(-time.Hour)).SetSequence(int64(i + 1)).Exec(ctx); err != nil {
				return err
			}
		}
		return events.Append(ctx, tx, db.SQL(), events.Event{Type: events.TaskCreated, At: time.Now().Add(-time.Hour)},
			events.Event{Type: events.TaskCreated, At: time.Now().Add(-time.Hour)})
	}))
	n, err := events.NewRetainer(db, logger, events.Retention{MaxAge: time.Minute, MaxCount: 1}).Trim(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	left, err := db.Client.Event.Query().Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, left, "the newest numbered event and the two unnumbered ones")
	unnumbered, err := db.Client.Event.Query().Where(event.SequenceIsNil()).Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, unnumbered)
}

// TestRetentionRun: the background loop trims on its interval, and a
// subscription that reads the log in pages and falls behind it ends with
// LOG_TRUNCATED rather than skipping events silently. The subscription is
// made on a log whose reader does not run, so it reads for itself: on the
// replica's reader's feed it would already hold the trimmed events, read
// before they went, and deliver them, which is no gap.
func TestRetentionRun(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		for range 6 {
			b.appendTx(t, events.Event{Type: events.TaskCreated})
		}
		b.waitHead(t, 6)
		sub, err := events.NewLog(db, b.logger).Subscribe(ctx, events.SubscriptionOptions{Start: events.StartBeginning, PageSize: 2})
		require.NoError(t, err)

		var got []int64
		err = sub.Run(ctx, func(_ context.Context, ev *events.Stored) error {
			got = append(got, ev.Sequence)
			if len(got) == 2 {
				// The subscriber is slow: retention passes it meanwhile.
				run(t, events.NewRetainer(db, b.logger, events.Retention{MaxCount: 2, Interval: 10 * time.Millisecond}).Run)
				require.Eventually(t, func() bool { return bounds(t, b)[0] == 5 }, 10*time.Second, 5*time.Millisecond)
			}
			return nil
		}, nil)
		requireTruncated(t, err, "5")
		require.Equal(t, []int64{1, 2}, got)
		require.Equal(t, int64(2), sub.Scanned(), "resume point: after the last delivered event")
	})
}

// bounds returns the oldest and newest retained sequences.
func bounds(t *testing.T, b *bundle) []int64 {
	t.Helper()
	ctx := context.Background()
	oldest, err := b.log.Oldest(ctx)
	require.NoError(t, err)
	head, err := b.log.Head(ctx)
	require.NoError(t, err)
	return []int64{oldest, head}
}

func requireTruncated(t *testing.T, err error, oldest string) {
	t.Helper()
	fe, ok := fault.As(err)
	require.True(t, ok, "not a fault: %v", err)
	require.Equal(t, fault.OutOfRange, fe.Code)
	require.Equal(t, fault.ReasonLogTruncated, fe.Reason)
	require.Equal(t, map[string]string{"oldest_sequence": oldest}, fe.Metadata)
}
