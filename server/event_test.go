package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/taskerhq/tasker/ent/event"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestListEvents(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)

		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		var tasks []*taskerv1.Task
		for i := range 3 {
			resp, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{
				Namespace: "shop", Name: "diamond", Context: orderContext(t, fmt.Sprint(i)),
			})
			require.NoError(t, err)
			tasks = append(tasks, resp.GetTask())
		}
		// registry.template_registered, then task.created and step.enqueued
		// (the root step a) per task. On PostgreSQL the sequencer numbers
		// them shortly after the commits.
		const total = 7
		require.Eventually(t, func() bool {
			resp, err := b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{})
			return err == nil && resp.GetHeadSequence() == total
		}, 10*time.Second, 10*time.Millisecond)

		all, err := b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{})
		require.NoError(t, err)
		require.Len(t, all.GetEvents(), total)
		require.Empty(t, all.GetNextPageToken(), "everything fit")
		require.Equal(t, int64(total), all.GetScannedSequence())
		for i, ev := range all.GetEvents() {
			require.Equal(t, int64(i+1), ev.GetSequence())
		}
		require.Equal(t, "registry.template_registered", all.GetEvents()[0].GetType())

		// One task's events, one per page: the token carries the scan on.
		task := tasks[1]
		req := &taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{TaskId: task.GetId()}, PageSize: 1}
		var got []*taskerv1.Event
		pages := 0
		for {
			resp, err := b.events.ListEvents(ctx, req)
			require.NoError(t, err)
			require.Equal(t, int64(total), resp.GetHeadSequence())
			got = append(got, resp.GetEvents()...)
			pages++
			if resp.GetNextPageToken() == "" {
				require.Equal(t, int64(total), resp.GetScannedSequence())
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		require.Len(t, got, 2)
		require.Equal(t, 3, pages, "two full pages, then the scan to the head")
		created, enqueued := got[0], got[1]
		require.Equal(t, "task.created", created.GetType())
		require.Equal(t, "step.enqueued", enqueued.GetType())
		for _, ev := range got {
			require.Equal(t, task.GetId(), ev.GetTaskId())
			require.Equal(t, task.GetCorrelationId(), ev.GetCorrelationId())
			require.Equal(t, "shop", ev.GetNamespace())
			require.Equal(t, "diamond", ev.GetTemplateName())
			require.Equal(t, "1.0.0", ev.GetTemplateVersion())
			require.NotNil(t, ev.GetTime())
			require.WithinDuration(t, time.Now(), ev.GetTime().AsTime(), time.Minute)
		}
		require.Empty(t, created.GetStepId())
		require.NotEmpty(t, enqueued.GetStepId())
		require.Equal(t, "a", enqueued.GetPayload().GetFields()["step_name"].GetStringValue())

		// Type patterns and a range.
		resp, err := b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{
			Filter:        &taskerv1.EventFilter{Types: []string{"step.*"}},
			AfterSequence: 1, UntilSequence: 5,
		})
		require.NoError(t, err)
		require.Len(t, resp.GetEvents(), 2)
		for _, ev := range resp.GetEvents() {
			require.Equal(t, "step.enqueued", ev.GetType())
			require.LessOrEqual(t, ev.GetSequence(), int64(5))
		}
		require.Equal(t, int64(5), resp.GetScannedSequence())
		require.Empty(t, resp.GetNextPageToken(), "the range ends at until_sequence")

		// Bad requests name their field.
		for _, tc := range []struct {
			req   *taskerv1.ListEventsRequest
			field string
		}{
			{&taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{Types: []string{"step.*", "Step.*"}}}, "filter.types[1]"},
			{&taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{TaskId: "nope"}}, "filter.task_id"},
			{&taskerv1.ListEventsRequest{PageSize: 1001}, "page_size"},
			{&taskerv1.ListEventsRequest{AfterSequence: -1}, "after_sequence"},
			{&taskerv1.ListEventsRequest{AfterSequence: 5, UntilSequence: 3}, "until_sequence"},
			{&taskerv1.ListEventsRequest{PageToken: "garbage"}, "page_token"},
			// A token replayed with another filter.
			{&taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{TaskId: tasks[0].GetId()}, PageToken: firstToken(t, b, task.GetId())}, "page_token"},
		} {
			_, err := b.events.ListEvents(ctx, tc.req)
			st := requireCode(t, err, codes.InvalidArgument)
			require.Equal(t, []string{tc.field}, badFields(st))
		}

		// Retention removed the oldest events: resuming before them is
		// LOG_TRUNCATED; a plain listing starts at the oldest retained.
		_, err = db.Client.Event.Delete().Where(event.SequenceLTE(2)).Exec(ctx)
		require.NoError(t, err)
		_, err = b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{AfterSequence: 1})
		st := requireCode(t, err, codes.OutOfRange)
		info := errorInfo(st)
		require.NotNil(t, info)
		require.Equal(t, "LOG_TRUNCATED", info.GetReason())
		require.Equal(t, map[string]string{"oldest_sequence": "3"}, info.GetMetadata())
		resp, err = b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{})
		require.NoError(t, err)
		require.Len(t, resp.GetEvents(), total-2)
		require.Equal(t, int64(3), resp.GetEvents()[0].GetSequence())
		_, err = b.events.ListEvents(ctx, &taskerv1.ListEventsRequest{AfterSequence: 2})
		require.NoError(t, err)
	})
}

// firstToken returns the token after the first page of one event of a
// task's listing.
func firstToken(t *testing.T, b *bundle, taskID string) string {
	t.Helper()
	resp, err := b.events.ListEvents(testContext(t), &taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{TaskId: taskID}, PageSize: 1})
	require.NoError(t, err)
	require.NotEmpty(t, resp.GetNextPageToken())
	return resp.GetNextPageToken()
}
