package worker_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/auth"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// TestWorkerWithToken runs a DAG through a worker whose token holds only
// steps:work and steps:read on its namespace, on a server requiring
// tokens.
func TestWorkerWithToken(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := testContext(t)
		store := auth.NewStore(db)
		mint := func(name string, scopes []auth.Scope, namespaces ...string) string {
			secret, _, err := store.Create(ctx, auth.CreateParams{Name: name, Scopes: scopes, Namespaces: namespaces})
			require.NoError(t, err)
			return secret
		}
		log := slog.New(slog.DiscardHandler)
		srv := servertest.Start(t, db, servertest.Options{
			Config:      server.Config{Authenticator: auth.NewAuthenticator(store, log, auth.AuthenticatorOptions{})},
			DialOptions: []grpc.DialOption{worker.WithToken(mint("admin", []auth.Scope{auth.Admin}, "*"))},
		})
		b := connect(t, srv)
		tpl := tmpl("dag", "diamond", node("a", "node"), node("b", "node", "a"), node("c", "node", "a"), node("d", "node", "b", "c"))
		tpl.LeaseDuration = durationpb.New(5 * time.Second)
		b.register(t, tpl)

		dial := func(secret string) *grpc.ClientConn {
			conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), worker.WithToken(secret))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			return conn
		}
		w := worker.New(dial(mint("dag-workers", []auth.Scope{auth.StepsWork, auth.StepsRead}, "dag")), "dag-1",
			worker.Options{Concurrency: 4, ClaimWait: time.Second, ShutdownTimeout: 2 * time.Second, Logger: b.log})
		w.MustRegister("dag", "node", pathHandler(newCalls(), &sync.Map{}))
		start(t, w)
		task := b.wait(t, b.create(t, "dag", "diamond", "", nil).GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_COMPLETE, task.GetState())
		require.InDelta(t, 2.0, b.step(t, task, "d").GetResult().AsMap()["paths"], 0)

		// A token for another namespace: its claims are refused. The SDK
		// keeps retrying them with backoff and a warning, so a worker
		// outlives a token being replaced.
		_, err := taskerv1.NewStepServiceClient(dial(mint("other-workers", []auth.Scope{auth.StepsWork}, "billing"))).ClaimSteps(ctx,
			&taskerv1.ClaimStepsRequest{WorkerId: "billing-1", MaxSteps: 1, Handlers: []*taskerv1.HandlerRef{{Namespace: "dag", Handler: "node"}}})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	})
}
