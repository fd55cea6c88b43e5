package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
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
