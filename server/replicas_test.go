package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// openReplicaDBs opens two independent pools on one fresh PostgreSQL
// database, as two `tasker serve` processes would.
func openReplicaDBs(t *testing.T) (*storage.DB, *storage.DB) {
	t.Helper()
	url := storagetest.PostgresURL(t)
	open := func() *storage.DB {
		db, err := storage.Open(context.Background(), url, storage.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		require.NoError(t, db.Migrate(context.Background()))
		return db
	}
	return open(), open()
}

// TestReplicaWakesLongPoll: a worker long-polling replica B is woken by a
// task created through replica A (LISTEN/NOTIFY), well before its wait ends.
func TestReplicaWakesLongPoll(t *testing.T) {
	t.Parallel()
	dbA, dbB := openReplicaDBs(t)
	a, b := setup(t, dbA), setup(t, dbB)
	ctx := testContext(t)
	_, err := a.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
	require.NoError(t, err)

	// The poll's own wait is 60s; the call's deadline is 15s: only a
	// wake-up from A's commit can make it succeed.
	pollCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	claimed := make(chan *taskerv1.ClaimStepsResponse, 1)
	errs := make(chan error, 1)
	go func() {
		resp, err := b.steps.ClaimSteps(pollCtx, &taskerv1.ClaimStepsRequest{
			WorkerId: "wb", Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}},
			MaxSteps: 1, Wait: durationpb.New(60 * time.Second),
		})
		errs <- err
		claimed <- resp
	}()
	// Create the task only once B listens for other replicas' work and
	// the poll has looked, found nothing and sleeps: then nothing but the
	// notification of A's commit can wake it.
	require.Eventually(t, func() bool {
		return a.listening() && b.listening() && b.engine.SleepingClaimers() == 1
	}, 10*time.Second, 5*time.Millisecond, "both replicas listen and the poll sleeps on B")
	created, err := a.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "r1")})
	require.NoError(t, err)
	require.NoError(t, <-errs)
	resp := <-claimed
	require.Len(t, resp.GetSteps(), 1)
	require.Equal(t, created.GetTask().GetId(), resp.GetSteps()[0].GetTaskId())
}
