package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestShutdownEndsLongPolls checks that shutdown does not wait for a
// long-polling claim's full wait: the poll returns empty at once and Serve
// returns.
func TestShutdownEndsLongPolls(t *testing.T) {
	t.Parallel()
	b := setup(t, storagetest.Open(t, "sqlite"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	type result struct {
		resp *taskerv1.ClaimStepsResponse
		err  error
	}
	polled := make(chan result, 1)
	go func() {
		resp, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "w", Handlers: []*taskerv1.HandlerRef{{Namespace: "ns", Handler: "h"}},
			MaxSteps: 1, Wait: durationpb.New(60 * time.Second),
		})
		polled <- result{resp, err}
	}()
	// Shut down once the poll is waiting in the server, so the test
	// proves that shutdown ends a waiting poll.
	require.Eventually(t, func() bool { return b.engine.SleepingClaimers() == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, b.stop())
	r := <-polled
	require.NoError(t, r.err, "the poll ends cleanly before its 60s wait (the test context allows 20s)")
	require.Empty(t, r.resp.GetSteps())
}

// TestPreStopDelay: once shutdown starts, /readyz answers 503 and gRPC
// health NOT_SERVING while calls are still served and /livez answers 200,
// until the pre-stop delay has passed; then Serve returns.
func TestPreStopDelay(t *testing.T) {
	t.Parallel()
	b := serve(t, storagetest.Open(t, "sqlite"), servertest.Options{Admin: true, Config: server.Config{PreStopDelay: 3 * time.Second}})
	ctx := testContext(t)
	require.Equal(t, http.StatusOK, adminStatus(ctx, t, b.adminAddr, "/readyz"))

	stopped := make(chan error, 1)
	go func() { stopped <- b.stop() }()
	require.Eventually(t, func() bool {
		return adminStatus(ctx, t, b.adminAddr, "/readyz") == http.StatusServiceUnavailable
	}, 10*time.Second, 10*time.Millisecond)
	h, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "tasker.v1.TaskService"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, h.GetStatus())
	require.Equal(t, http.StatusOK, adminStatus(ctx, t, b.adminAddr, "/livez"))
	_, err = b.registry.ListNamespaces(ctx, &taskerv1.ListNamespacesRequest{})
	require.NoError(t, err, "calls are served during the pre-stop delay")
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned before the delay passed: %v", err)
	default:
	}
	require.NoError(t, <-stopped)
}
