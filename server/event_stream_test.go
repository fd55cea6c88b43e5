package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestSubscribeStreamCap: streams beyond Config.MaxStreams are refused with
// ResourceExhausted, and a closed stream frees its place.
func TestSubscribeStreamCap(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{Config: server.Config{MaxStreams: 2}})
		ctx := testContext(t)
		open := func(ctx context.Context) error {
			stream, err := b.events.Subscribe(ctx, &taskerv1.SubscribeRequest{})
			if err != nil {
				return err
			}
			first, err := stream.Recv()
			if err == nil {
				require.NotNil(t, first.GetStarted())
			}
			return err
		}
		firstCtx, closeFirst := context.WithCancel(ctx)
		require.NoError(t, open(firstCtx))
		require.NoError(t, open(ctx))

		err := open(ctx)
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "--max-streams")

		closeFirst()
		require.Eventually(t, func() bool { return open(ctx) == nil }, 10*time.Second, 10*time.Millisecond,
			"a closed stream frees its place")
	})
}

// TestListenerReconnectWakesWaiters: when the PostgreSQL connections of
// the replicas' listeners are terminated, a replica's long-polling claimer
// and its Subscribe stream still learn of a task created through the other
// replica (the listener's catch-ups while away and after reconnecting),
// and the listener comes back.
func TestListenerReconnectWakesWaiters(t *testing.T) {
	t.Parallel()
	dbA, dbB := openReplicaDBs(t)
	a := serve(t, dbA, servertest.Options{Config: server.Config{Listener: storage.ListenerOptions{
		Ping: 500 * time.Millisecond, Poll: 50 * time.Millisecond, MinBackoff: 300 * time.Millisecond, MaxBackoff: time.Second,
	}}})
	b := setup(t, dbB)
	ctx := testContext(t)
	_, err := a.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
	require.NoError(t, err)

	stream, err := a.events.Subscribe(ctx, &taskerv1.SubscribeRequest{Filter: &taskerv1.EventFilter{Types: []string{"task.created"}}})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.NotNil(t, first.GetStarted())

	// The poll's own wait is 60s; the call's deadline is 15s: only a
	// wake-up can make it succeed.
	pollCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	type claimed struct {
		resp *taskerv1.ClaimStepsResponse
		err  error
	}
	claims := make(chan claimed, 1)
	go func() {
		resp, err := a.steps.ClaimSteps(pollCtx, &taskerv1.ClaimStepsRequest{
			WorkerId: "wa", Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}},
			MaxSteps: 1, Wait: durationpb.New(60 * time.Second),
		})
		claims <- claimed{resp, err}
	}()
	require.Eventually(t, func() bool { return a.engine.Waiting() == 1 }, 10*time.Second, time.Millisecond, "the claimer waits")

	var pids []int
	rows, err := dbA.ReadDB.QueryContext(ctx, `SELECT pg_terminate_backend(pid)::int, pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'tasker-listener'`)
	require.NoError(t, err)
	for rows.Next() {
		var ok, pid int
		require.NoError(t, rows.Scan(&ok, &pid))
		pids = append(pids, pid)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Len(t, pids, 2, "one listener connection per replica")

	created, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "r1")})
	require.NoError(t, err)

	got := <-claims
	require.NoError(t, got.err)
	require.Len(t, got.resp.GetSteps(), 1)
	require.Equal(t, created.GetTask().GetId(), got.resp.GetSteps()[0].GetTaskId())
	msg, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, created.GetTask().GetId(), msg.GetEvent().GetTaskId())

	require.Eventually(t, func() bool {
		var n int
		err := dbA.ReadDB.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND application_name = 'tasker-listener' AND NOT (pid = ANY($1))`, pids).Scan(&n)
		return err == nil && n == 2
	}, 10*time.Second, 10*time.Millisecond, "both listeners reconnected")
}
