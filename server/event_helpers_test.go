package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/ent/event"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
)

// chain is a → b, both served by "work" in namespace ns, with no backoff,
// two attempts and a one-minute lease.
func chain(ns string) *taskerv1.TaskTemplate {
	return &taskerv1.TaskTemplate{
		Namespace: ns, Name: "chain", Version: "1.0.0",
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts: proto.Int32(2), InitialBackoff: durationpb.New(0), MaxBackoff: durationpb.New(0),
		},
		LeaseDuration: durationpb.New(time.Minute),
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "work"},
			{Name: "b", Handler: "work", DependsOn: []string{"a"}},
		},
	}
}

func registerChain(ctx context.Context, t *testing.T, b *bundle, ns string) {
	t.Helper()
	_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: chain(ns)})
	require.NoError(t, err)
}

// createChain creates a chain task in ns with context {"n": n}.
func createChain(ctx context.Context, b *bundle, ns string, n int) (*taskerv1.Task, error) {
	c, err := structpb.NewStruct(map[string]any{"n": n})
	if err != nil {
		return nil, err
	}
	resp, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: ns, Name: "chain", Context: c})
	if err != nil {
		return nil, err
	}
	return resp.GetTask(), nil
}

// workSteps claims and completes steps of ns as workerID until it has
// completed n of them.
func workSteps(ctx context.Context, b *bundle, ns, workerID string, n int) error {
	for done := 0; done < n; {
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: workerID, Handlers: []*taskerv1.HandlerRef{{Namespace: ns, Handler: "work"}},
			MaxSteps: 10, Wait: durationpb.New(time.Second),
		})
		if err != nil {
			return err
		}
		for _, s := range resp.GetSteps() {
			if _, err := b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{StepId: s.GetStepId(), LeaseToken: s.GetLeaseToken()}); err != nil {
				return err
			}
			done++
		}
	}
	return nil
}

// follower reads a Subscribe stream in the background and keeps what it
// received.
type follower struct {
	started *taskerv1.SubscriptionStarted
	cancel  context.CancelFunc

	mu      sync.Mutex
	events  []*taskerv1.Event
	scanned int64
	err     error
	ended   chan struct{}
}

// follow opens a stream, requires its first message to be
// SubscriptionStarted and reads the rest in the background until the
// stream ends or the test does.
func follow(ctx context.Context, t *testing.T, client taskerv1.EventServiceClient, req *taskerv1.SubscribeRequest) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := client.Subscribe(ctx, req)
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.NotNil(t, first.GetStarted(), "the first message is SubscriptionStarted: %v", first)
	f := &follower{started: first.GetStarted(), cancel: cancel, scanned: first.GetStarted().GetStartAfterSequence(), ended: make(chan struct{})}
	go func() {
		defer close(f.ended)
		for {
			msg, err := stream.Recv()
			f.mu.Lock()
			switch {
			case err != nil:
				f.err = err
			case msg.GetEvent() != nil:
				f.events = append(f.events, msg.GetEvent())
				f.scanned = max(f.scanned, msg.GetEvent().GetSequence())
			case msg.GetHeartbeat() != nil:
				f.scanned = max(f.scanned, msg.GetHeartbeat().GetScannedSequence())
			}
			f.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return f
}

// waitScanned waits until the stream has reported every sequence up to
// head as seen or scanned.
func (f *follower) waitScanned(t *testing.T, head int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.scanned >= head || f.err != nil
	}, 20*time.Second, 5*time.Millisecond, "stream never scanned to %d", head)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NoError(t, f.err)
}

// waitEnd waits for the stream to end and returns how: nil for OK.
func (f *follower) waitEnd(t *testing.T) error {
	t.Helper()
	select {
	case <-f.ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not end")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if errors.Is(f.err, io.EOF) {
		return nil
	}
	return f.err
}

func (f *follower) received() []*taskerv1.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*taskerv1.Event(nil), f.events...)
}

// lastSeen is where to resume: the last event or heartbeat.
func (f *follower) lastSeen() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scanned
}

// settledHead waits until every event appended to db is numbered and
// returns the head: with no writer left, the final head.
func settledHead(ctx context.Context, t *testing.T, db *storage.DB) int64 {
	t.Helper()
	var head int64
	require.Eventually(t, func() bool {
		n, err := db.Reader.Event.Query().Where(event.SequenceIsNil()).Count(ctx)
		if err != nil || n > 0 {
			return false
		}
		total, err := db.Reader.Event.Query().Count(ctx)
		if err != nil {
			return false
		}
		head = int64(total) // nothing is deleted in these tests
		return true
	}, 20*time.Second, 5*time.Millisecond)
	return head
}

// listAll pages ListEvents with filter after after to the end: the truth a
// stream is compared with.
func listAll(ctx context.Context, t *testing.T, client taskerv1.EventServiceClient, filter *taskerv1.EventFilter, after int64) []*taskerv1.Event {
	t.Helper()
	var out []*taskerv1.Event
	for {
		resp, err := client.ListEvents(ctx, &taskerv1.ListEventsRequest{Filter: filter, AfterSequence: after, PageSize: 1000})
		require.NoError(t, err)
		out = append(out, resp.GetEvents()...)
		if resp.GetScannedSequence() >= resp.GetHeadSequence() {
			return out
		}
		after = resp.GetScannedSequence()
	}
}

func seqs(evs []*taskerv1.Event) []int64 {
	out := make([]int64, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.GetSequence())
	}
	return out
}

// requireSameEvents asserts that got are exactly want, in order, field by
// field.
func requireSameEvents(t *testing.T, want, got []*taskerv1.Event, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, seqs(want), seqs(got), msgAndArgs...)
	for i := range want {
		require.True(t, proto.Equal(want[i], got[i]), "event %d differs: %v vs %v", want[i].GetSequence(), want[i], got[i])
	}
}

// lockedBuffer collects a server's log for assertions.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// heartbeat is the fastest heartbeat the contract allows, which keeps the
// tests quick.
var heartbeat = durationpb.New(100 * time.Millisecond)
