package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/ent/event"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestSubscribeConcurrentWriters: several writers create tasks and
// complete steps at once while three differently filtered streams follow
// the log; each sees every matching event exactly once, in order, with no
// gap: the same events ListEvents returns afterwards.
func TestSubscribeConcurrentWriters(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		ctx := testContext(t)
		filters := []*taskerv1.EventFilter{
			nil,
			{Types: []string{"step.*"}},
			{Namespace: "w1", Types: []string{"task.*", "step.completed"}},
		}
		var followers []*follower
		for _, f := range filters {
			followers = append(followers, follow(ctx, t, b.events, &taskerv1.SubscribeRequest{
				Filter: f, Start: taskerv1.StartPosition_START_POSITION_NOW, HeartbeatInterval: heartbeat,
			}))
		}

		const writers, tasksEach = 4, 5
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() {
				ns := fmt.Sprintf("w%d", w)
				if _, errs[w] = b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: chain(ns)}); errs[w] != nil {
					return
				}
				for i := range tasksEach {
					if _, errs[w] = createChain(ctx, b, ns, i); errs[w] != nil {
						return
					}
				}
				errs[w] = workSteps(ctx, b, ns, "worker-"+ns, 2*tasksEach)
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}

		head := settledHead(ctx, t, db)
		for i, f := range followers {
			f.waitScanned(t, head)
			want := listAll(ctx, t, b.events, filters[i], f.started.GetStartAfterSequence())
			require.NotEmpty(t, want)
			requireSameEvents(t, want, f.received(), "stream %d", i)
		}
		require.Len(t, followers[0].received(), int(head-followers[0].started.GetStartAfterSequence()), "the unfiltered stream saw every event")
	})
}

// TestSubscribeResume: a subscriber that disconnects, and one whose server
// is restarted, resume with after_sequence set to the last sequence they
// saw and receive every later event exactly once, in order.
func TestSubscribeResume(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := testContext(t)
		first := serve(t, db, servertest.Options{})
		registerChain(ctx, t, first, "shop")
		all := &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_BEGINNING, HeartbeatInterval: heartbeat}
		narrow := &taskerv1.SubscribeRequest{
			Filter: &taskerv1.EventFilter{Types: []string{"task.completed"}},
			Start:  taskerv1.StartPosition_START_POSITION_BEGINNING, HeartbeatInterval: heartbeat,
		}
		f1 := follow(ctx, t, first.events, all)
		n1 := follow(ctx, t, first.events, narrow)
		_, err := createChain(ctx, first, "shop", 1)
		require.NoError(t, err)
		require.NoError(t, workSteps(ctx, first, "shop", "w", 2))
		head := settledHead(ctx, t, db)
		f1.waitScanned(t, head)
		n1.waitScanned(t, head)

		// A disconnect: events are written while nobody listens.
		f1.cancel()
		_ = f1.waitEnd(t)
		_, err = createChain(ctx, first, "shop", 2)
		require.NoError(t, err)
		f2 := follow(ctx, t, first.events, resume(all, f1.lastSeen()))
		require.Equal(t, f1.lastSeen(), f2.started.GetStartAfterSequence())
		require.NoError(t, workSteps(ctx, first, "shop", "w", 2))
		head = settledHead(ctx, t, db)
		f2.waitScanned(t, head)

		// A restart: the server stops (ending the streams), writes happen
		// through a new server on the same database, and the streams resume
		// there.
		require.NoError(t, first.stop())
		requireShutdownEnd(t, f2.waitEnd(t))
		requireShutdownEnd(t, n1.waitEnd(t))
		second := serve(t, db, servertest.Options{})
		_, err = createChain(ctx, second, "shop", 3)
		require.NoError(t, err)
		f3 := follow(ctx, t, second.events, resume(all, f2.lastSeen()))
		n2 := follow(ctx, t, second.events, resume(narrow, n1.lastSeen()))
		require.NoError(t, workSteps(ctx, second, "shop", "w", 2))
		head = settledHead(ctx, t, db)
		f3.waitScanned(t, head)
		n2.waitScanned(t, head)

		got := append(append(f1.received(), f2.received()...), f3.received()...)
		requireSameEvents(t, listAll(ctx, t, second.events, nil, 0), got, "every event exactly once across a disconnect and a restart")
		gotNarrow := append(n1.received(), n2.received()...)
		requireSameEvents(t, listAll(ctx, t, second.events, narrow.GetFilter(), 0), gotNarrow)
		require.Len(t, gotNarrow, 3)
	})
}

// resume returns req resumed after seq.
func resume(req *taskerv1.SubscribeRequest, seq int64) *taskerv1.SubscribeRequest {
	return &taskerv1.SubscribeRequest{
		Filter: req.GetFilter(), Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: seq,
		UntilTaskFinished: req.GetUntilTaskFinished(), HeartbeatInterval: req.GetHeartbeatInterval(),
	}
}

// requireShutdownEnd checks how shutdown ends a stream.
func requireShutdownEnd(t *testing.T, err error) {
	t.Helper()
	st := requireCode(t, err, codes.Unavailable)
	require.Contains(t, st.Message(), "server shutting down")
}

func TestSubscribeFilters(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		ctx := testContext(t)
		registerChain(ctx, t, b, "shop")
		registerChain(ctx, t, b, "billing")
		shop, err := createChain(ctx, b, "shop", 1)
		require.NoError(t, err)
		require.NoError(t, workSteps(ctx, b, "shop", "w", 2))
		billing, err := createChain(ctx, b, "billing", 1)
		require.NoError(t, err)
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "billing.invoice_sent", TaskId: billing.GetId()})
		require.NoError(t, err)
		_, err = b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "audit.note"})
		require.NoError(t, err)
		head := settledHead(ctx, t, db)

		for _, tc := range []struct {
			name   string
			filter *taskerv1.EventFilter
			types  []string // the expected types, in order
		}{
			{"namespace", &taskerv1.EventFilter{Namespace: "billing"}, []string{"registry.template_registered", "task.created", "step.enqueued", "billing.invoice_sent"}},
			{"template and types", &taskerv1.EventFilter{TemplateName: "chain", Types: []string{"task.*"}},
				[]string{"task.created", "task.started", "task.completed", "task.created"}},
			{"task", &taskerv1.EventFilter{TaskId: shop.GetId(), Types: []string{"step.completed", "task.completed"}},
				[]string{"step.completed", "step.completed", "task.completed"}},
			{"correlation id", &taskerv1.EventFilter{CorrelationId: billing.GetCorrelationId()}, []string{"task.created", "step.enqueued", "billing.invoice_sent"}},
			{"custom prefix", &taskerv1.EventFilter{Types: []string{"billing.*", "audit.note"}}, []string{"billing.invoice_sent", "audit.note"}},
			{"nothing", &taskerv1.EventFilter{Namespace: "nope"}, nil},
		} {
			f := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{
				Filter: tc.filter, Start: taskerv1.StartPosition_START_POSITION_BEGINNING, HeartbeatInterval: heartbeat,
			})
			f.waitScanned(t, head)
			var types []string
			for _, ev := range f.received() {
				types = append(types, ev.GetType())
			}
			require.Equal(t, tc.types, types, tc.name)
			requireSameEvents(t, listAll(ctx, t, b.events, tc.filter, 0), f.received(), tc.name)
			f.cancel()
		}
	})
}

// TestSubscribeSlowSubscriber: a subscriber that stops reading blocks only
// its own stream (gRPC flow control); the engine and another subscriber go
// on to the end, and the slow one, once it reads again, gets everything
// exactly once, in order.
func TestSubscribeSlowSubscriber(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		ctx := testContext(t)
		registerChain(ctx, t, b, "shop")
		settledHead(ctx, t, db) // both streams start after the registration

		// Fixed 64 KiB windows (no dynamic growth) make the slow stream's
		// buffers small: a few hundred KiB of events fill them.
		slowConn, err := grpc.NewClient(b.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		require.NoError(t, err)
		defer slowConn.Close()
		slowCtx, cancelSlow := context.WithCancel(ctx)
		defer cancelSlow()
		slow, err := taskerv1.NewEventServiceClient(slowConn).Subscribe(slowCtx, &taskerv1.SubscribeRequest{HeartbeatInterval: heartbeat})
		require.NoError(t, err)
		first, err := slow.Recv()
		require.NoError(t, err)
		start := first.GetStarted().GetStartAfterSequence()
		fast := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{HeartbeatInterval: heartbeat})

		// 640 KiB of events, several times what the slow stream can hold
		// unread (its window, the server's write quota and buffers): its
		// server side is now blocked in Send.
		payload, err := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", 16<<10)})
		require.NoError(t, err)
		for range 40 {
			_, err := b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "load.blob", Payload: payload})
			require.NoError(t, err)
		}
		// The engine still runs tasks to the end, and the fast stream
		// follows all of it.
		for i := range 5 {
			_, err := createChain(ctx, b, "shop", i)
			require.NoError(t, err)
		}
		require.NoError(t, workSteps(ctx, b, "shop", "w", 10))
		head := settledHead(ctx, t, db)
		fast.waitScanned(t, head)
		want := listAll(ctx, t, b.events, nil, start)
		require.Equal(t, start, fast.started.GetStartAfterSequence())
		requireSameEvents(t, want, fast.received())

		// The slow stream catches up.
		var got []*taskerv1.Event
		for len(got) < len(want) {
			msg, err := slow.Recv()
			require.NoError(t, err)
			if msg.GetEvent() != nil {
				got = append(got, msg.GetEvent())
			}
		}
		requireSameEvents(t, want, got)
	})
}

// TestSubscribeAcrossReplicas: replica A writes, a subscriber of replica B
// sees every event, in order, woken by the sequencer's NOTIFY.
func TestSubscribeAcrossReplicas(t *testing.T) {
	t.Parallel()
	dbA, dbB := openReplicaDBs(t)
	a := serve(t, dbA, servertest.Options{})
	b := serve(t, dbB, servertest.Options{})
	ctx := testContext(t)
	f := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_BEGINNING, HeartbeatInterval: heartbeat})
	registerChain(ctx, t, a, "shop")
	for i := range 3 {
		_, err := createChain(ctx, a, "shop", i)
		require.NoError(t, err)
	}
	require.NoError(t, workSteps(ctx, a, "shop", "wa", 6))
	_, err := a.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "audit.note"})
	require.NoError(t, err)
	head := settledHead(ctx, t, dbA)
	f.waitScanned(t, head)
	requireSameEvents(t, listAll(ctx, t, a.events, nil, 0), f.received())
	require.Len(t, f.received(), int(head))
}

func TestSubscribeUntilTaskFinished(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		ctx := testContext(t)
		registerChain(ctx, t, b, "shop")
		task, err := createChain(ctx, b, "shop", 1)
		require.NoError(t, err)
		until := func(start taskerv1.StartPosition, types ...string) *taskerv1.SubscribeRequest {
			return &taskerv1.SubscribeRequest{
				Filter: &taskerv1.EventFilter{TaskId: task.GetId(), Types: types}, Start: start,
				UntilTaskFinished: true, HeartbeatInterval: heartbeat,
			}
		}
		// Step events only: the stream still ends on task.completed, which
		// its filter leaves out, once every step event before it is in.
		steps := follow(ctx, t, b.events, until(taskerv1.StartPosition_START_POSITION_BEGINNING, "step.*"))
		everything := follow(ctx, t, b.events, until(taskerv1.StartPosition_START_POSITION_NOW))
		require.NoError(t, workSteps(ctx, b, "shop", "w", 2))
		require.NoError(t, steps.waitEnd(t), "OK once the task finished")
		require.NoError(t, everything.waitEnd(t))
		requireSameEvents(t, listAll(ctx, t, b.events, &taskerv1.EventFilter{TaskId: task.GetId(), Types: []string{"step.*"}}, 0), steps.received())
		got := everything.received()
		require.Equal(t, "task.completed", got[len(got)-1].GetType(), "the finishing event is the last")

		// Already finished: from the beginning the whole story, then OK;
		// from now nothing, and OK at once.
		again := follow(ctx, t, b.events, until(taskerv1.StartPosition_START_POSITION_BEGINNING))
		require.NoError(t, again.waitEnd(t))
		requireSameEvents(t, listAll(ctx, t, b.events, &taskerv1.EventFilter{TaskId: task.GetId()}, 0), again.received())
		now := follow(ctx, t, b.events, until(taskerv1.StartPosition_START_POSITION_NOW))
		require.NoError(t, now.waitEnd(t))
		require.Empty(t, now.received())

		// A task in error counts as finished.
		failing, err := createChain(ctx, b, "shop", 2)
		require.NoError(t, err)
		f := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{
			Filter: &taskerv1.EventFilter{TaskId: failing.GetId()}, UntilTaskFinished: true, HeartbeatInterval: heartbeat,
		})
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "w", Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}}, MaxSteps: 1, Wait: durationpb.New(5 * time.Second),
		})
		require.NoError(t, err)
		require.Len(t, resp.GetSteps(), 1)
		_, err = b.steps.FailStep(ctx, &taskerv1.FailStepRequest{
			StepId: resp.GetSteps()[0].GetStepId(), LeaseToken: resp.GetSteps()[0].GetLeaseToken(), NonRetryable: true,
			Error: &taskerv1.StepError{Message: "no"},
		})
		require.NoError(t, err)
		require.NoError(t, f.waitEnd(t))
		got = f.received()
		require.Equal(t, "task.failed", got[len(got)-1].GetType())
	})
}

// TestSubscribeShutdown: open streams end with Unavailable as soon as
// shutdown starts; they do not hold the drain back.
func TestSubscribeShutdown(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{Config: server.Config{ShutdownTimeout: time.Minute}})
		ctx := testContext(t)
		idle := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{HeartbeatInterval: durationpb.New(5 * time.Minute)})
		beating := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{
			Start: taskerv1.StartPosition_START_POSITION_BEGINNING, HeartbeatInterval: heartbeat,
		})
		begun := time.Now()
		require.NoError(t, b.stop())
		require.Less(t, time.Since(begun), 30*time.Second, "the streams ended, not the drain timeout")
		requireShutdownEnd(t, idle.waitEnd(t))
		requireShutdownEnd(t, beating.waitEnd(t))
	})
}

func TestSubscribeRefusals(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{})
		ctx := testContext(t)
		for range 3 {
			_, err := b.events.PublishEvent(ctx, &taskerv1.PublishEventRequest{Type: "audit.note"})
			require.NoError(t, err)
		}
		// A stream answers with the correlation id in its header, as unary
		// calls do.
		stream, err := b.events.Subscribe(metadata.AppendToOutgoingContext(ctx, "x-correlation-id", "sub-1"), &taskerv1.SubscribeRequest{})
		require.NoError(t, err)
		header, err := stream.Header()
		require.NoError(t, err)
		require.Equal(t, []string{"sub-1"}, header.Get("x-correlation-id"))

		subscribeErr := func(req *taskerv1.SubscribeRequest) error {
			stream, err := b.events.Subscribe(ctx, req)
			require.NoError(t, err)
			_, err = stream.Recv()
			return err
		}
		for _, tc := range []struct {
			req   *taskerv1.SubscribeRequest
			field string
		}{
			{&taskerv1.SubscribeRequest{Filter: &taskerv1.EventFilter{Types: []string{"Step.*"}}}, "filter.types[0]"},
			{&taskerv1.SubscribeRequest{Filter: &taskerv1.EventFilter{TaskId: "nope"}}, "filter.task_id"},
			{&taskerv1.SubscribeRequest{UntilTaskFinished: true}, "filter.task_id"},
			{&taskerv1.SubscribeRequest{AfterSequence: 1}, "after_sequence"},
			{&taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: -1}, "after_sequence"},
			{&taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: 99}, "after_sequence"},
			{&taskerv1.SubscribeRequest{Start: taskerv1.StartPosition(42)}, "start"},
			{&taskerv1.SubscribeRequest{HeartbeatInterval: durationpb.New(10 * time.Millisecond)}, "heartbeat_interval"},
			{&taskerv1.SubscribeRequest{HeartbeatInterval: durationpb.New(time.Hour)}, "heartbeat_interval"},
		} {
			st := requireCode(t, subscribeErr(tc.req), codes.InvalidArgument)
			require.Equal(t, []string{tc.field}, badFields(st), "%v", tc.req)
		}
		err = subscribeErr(&taskerv1.SubscribeRequest{
			Filter: &taskerv1.EventFilter{TaskId: "123e4567-e89b-12d3-a456-426614174000"}, UntilTaskFinished: true,
		})
		requireCode(t, err, codes.NotFound)

		// Retention took the oldest events: resuming before the window is
		// OutOfRange; resuming at its edge works.
		_, err = db.Client.Event.Delete().Where(event.SequenceLTE(2)).Exec(ctx)
		require.NoError(t, err)
		err = subscribeErr(&taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: 1})
		st := requireCode(t, err, codes.OutOfRange)
		info := errorInfo(st)
		require.NotNil(t, info)
		require.Equal(t, "LOG_TRUNCATED", info.GetReason())
		require.Equal(t, map[string]string{"oldest_sequence": "3"}, info.GetMetadata())
		f := follow(ctx, t, b.events, &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: 2, HeartbeatInterval: heartbeat})
		f.waitScanned(t, 3)
		require.Equal(t, []int64{3}, seqs(f.received()))
		f = follow(ctx, t, b.events, &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_BEGINNING})
		require.Equal(t, int64(2), f.started.GetStartAfterSequence())
		require.Equal(t, int64(3), f.started.GetOldestSequence())
		require.Equal(t, int64(3), f.started.GetHeadSequence())
	})
}
