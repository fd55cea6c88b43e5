package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestList(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		task1, task2, step := uuid.New(), uuid.New(), uuid.New()
		// "step_x." and "stepx." start like "step." up to a LIKE wildcard
		// or a collation's taste; they must not match "step.*".
		all := []events.Event{
			{Type: events.TaskCreated, Namespace: "shop", TemplateName: "order", TemplateVersion: "1.0.0", TaskID: &task1, CorrelationID: "c1", Payload: map[string]any{"n": 1}},
			{Type: events.StepEnqueued, Namespace: "shop", TemplateName: "order", TaskID: &task1, StepID: &step, CorrelationID: "c1"},
			{Type: "step_x.done", Namespace: "shop", CorrelationID: "c2"},
			{Type: "stepx.done", Namespace: "shop", CorrelationID: "c2"},
			{Type: events.StepCompleted, Namespace: "shop", TemplateName: "order", TaskID: &task1, StepID: &step, CorrelationID: "c1"},
			{Type: events.TaskCreated, Namespace: "billing", TemplateName: "invoice", TaskID: &task2, CorrelationID: "c3"},
			{Type: "billing.invoice_sent", Namespace: "billing", TaskID: &task2, CorrelationID: "c3"},
		}
		b.appendTx(t, all[:3]...)
		b.appendTx(t, all[3:]...)
		b.waitHead(t, int64(len(all)))

		p, err := b.log.List(ctx, events.Query{})
		require.NoError(t, err)
		require.Len(t, p.Events, len(all))
		for i, ev := range p.Events {
			require.Equal(t, int64(i+1), ev.Sequence)
			require.Equal(t, all[i].Type, ev.Type)
		}
		require.Equal(t, int64(7), p.Scanned)
		require.Equal(t, int64(7), p.Head)
		require.JSONEq(t, `{"n":1}`, string(p.Events[0].Payload))
		require.Equal(t, task1, *p.Events[1].TaskID)
		require.Equal(t, step, *p.Events[1].StepID)
		require.Equal(t, "1.0.0", p.Events[0].TemplateVersion)

		for _, tc := range []struct {
			name string
			f    events.Filter
			want []int64
		}{
			{"prefix", events.Filter{Types: []string{"step.*"}}, []int64{2, 5}},
			{"underscore prefix", events.Filter{Types: []string{"step_x.*"}}, []int64{3}},
			{"exact and prefix", events.Filter{Types: []string{"task.created", "billing.*"}}, []int64{1, 6, 7}},
			{"star", events.Filter{Types: []string{"step.*", "*"}}, []int64{1, 2, 3, 4, 5, 6, 7}},
			{"namespace", events.Filter{Namespace: "billing"}, []int64{6, 7}},
			{"template", events.Filter{TemplateName: "order"}, []int64{1, 2, 5}},
			{"task", events.Filter{TaskID: task1.String()}, []int64{1, 2, 5}},
			{"correlation", events.Filter{CorrelationID: "c2"}, []int64{3, 4}},
			{"all of them", events.Filter{Namespace: "shop", TaskID: task1.String(), Types: []string{"step.*"}}, []int64{2, 5}},
			{"nothing", events.Filter{Types: []string{"workflow.*"}}, nil},
		} {
			m, err := events.ParseFilter(tc.f)
			require.NoError(t, err)
			p, err := b.log.List(ctx, events.Query{Filter: tc.f})
			require.NoError(t, err, tc.name)
			require.Equal(t, tc.want, sequences(p.Events), tc.name)
			require.Equal(t, int64(7), p.Scanned, "%s: a page that is not full scanned to the head", tc.name)
			var matched []int64
			for i, ev := range all {
				if m.Match(&events.Stored{Type: ev.Type, Namespace: ev.Namespace, TemplateName: ev.TemplateName, CorrelationID: ev.CorrelationID, TaskID: ev.TaskID}) {
					matched = append(matched, int64(i+1))
				}
			}
			require.Equal(t, tc.want, matched, "%s: Match selects what SQL selects", tc.name)
		}

		// Paging: a full page scanned up to its last event; the next starts
		// after it.
		shop := events.Filter{Namespace: "shop"}
		p, err = b.log.List(ctx, events.Query{Filter: shop, Limit: 2})
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, sequences(p.Events))
		require.Equal(t, int64(2), p.Scanned)
		p, err = b.log.List(ctx, events.Query{Filter: shop, After: p.Scanned, Limit: 3})
		require.NoError(t, err)
		require.Equal(t, []int64{3, 4, 5}, sequences(p.Events))
		require.Equal(t, int64(5), p.Scanned)
		p, err = b.log.List(ctx, events.Query{Filter: shop, After: p.Scanned, Limit: 3})
		require.NoError(t, err)
		require.Empty(t, p.Events)
		require.Equal(t, int64(7), p.Scanned)

		// Until bounds both the events and the scan.
		p, err = b.log.List(ctx, events.Query{After: 1, Until: 3})
		require.NoError(t, err)
		require.Equal(t, []int64{2, 3}, sequences(p.Events))
		require.Equal(t, int64(3), p.Scanned)
		require.Equal(t, int64(7), p.Head)
		p, err = b.log.List(ctx, events.Query{After: 3, Until: 3})
		require.NoError(t, err)
		require.Empty(t, p.Events)
		require.Equal(t, int64(3), p.Scanned)

		// Past the head: nothing, and Scanned never goes backwards.
		p, err = b.log.List(ctx, events.Query{After: 50})
		require.NoError(t, err)
		require.Empty(t, p.Events)
		require.Equal(t, int64(50), p.Scanned)

		// Bad queries.
		_, err = b.log.List(ctx, events.Query{After: -1})
		require.Equal(t, []string{"after_sequence"}, violations(t, err))
		_, err = b.log.List(ctx, events.Query{Until: -1})
		require.Equal(t, []string{"until_sequence"}, violations(t, err))
		_, err = b.log.List(ctx, events.Query{After: 5, Until: 4})
		require.Equal(t, []string{"until_sequence"}, violations(t, err))
		_, err = b.log.List(ctx, events.Query{Filter: events.Filter{Types: []string{"step.*", "STEP"}}})
		require.Equal(t, []string{"filter.types[1]"}, violations(t, err))
	})
}

func TestListEmpty(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		l := events.NewLog(db, testLogger(t))
		ctx := testContext(t)
		p, err := l.List(ctx, events.Query{})
		require.NoError(t, err, "a fresh log is never truncated")
		require.Empty(t, p.Events)
		require.Zero(t, p.Scanned)
		require.Zero(t, p.Head)
		oldest, err := l.Oldest(ctx)
		require.NoError(t, err)
		require.Zero(t, oldest)
	})
}

func TestListTruncated(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		for range 5 {
			b.appendTx(t, events.Event{Type: events.TaskCreated})
		}
		b.waitHead(t, 5)
		// Retention removes the oldest events.
		n, err := db.Client.Event.Delete().Where(event.SequenceLTE(2)).Exec(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		oldest, err := b.log.Oldest(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(3), oldest)

		for _, after := range []int64{0, 1} {
			_, err = b.log.List(ctx, events.Query{After: after})
			fe, ok := fault.As(err)
			require.True(t, ok, "after %d: %v", after, err)
			require.Equal(t, fault.OutOfRange, fe.Code)
			require.Equal(t, fault.ReasonLogTruncated, fe.Reason)
			require.Equal(t, map[string]string{"oldest_sequence": "3"}, fe.Metadata)
		}
		p, err := b.log.List(ctx, events.Query{After: 2})
		require.NoError(t, err, "resuming right before the oldest event misses nothing")
		require.Equal(t, []int64{3, 4, 5}, sequences(p.Events))
	})
}

func TestWait(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)

		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, b.log.Wait(short, 0), context.DeadlineExceeded, "nothing to wait for yet")

		woke := make(chan error, 1)
		go func() { woke <- b.log.Wait(ctx, 0) }()
		b.appendTx(t, events.Event{Type: events.TaskCreated})
		select {
		case err := <-woke:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not wake")
		}
		require.NoError(t, b.log.Wait(ctx, 0), "the head is already past")

		// A second log of the same database, as another process would have:
		// it learns of the head from the database, not from Notify.
		other := events.NewLog(db, b.logger)
		run(t, other.Run)
		require.NoError(t, other.Wait(ctx, 0))
		woke2 := make(chan error, 1)
		go func() { woke2 <- other.Wait(ctx, 1) }()
		b.appendTx(t, events.Event{Type: events.TaskCreated})
		other.Appended() // on SQLite the other process has no way to know; on PostgreSQL this does nothing
		select {
		case err := <-woke2:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the other log's Wait did not wake")
		}
	})
}

func sequences(evs []*events.Stored) []int64 {
	var s []int64
	for _, ev := range evs {
		s = append(s, ev.Sequence)
	}
	return s
}
