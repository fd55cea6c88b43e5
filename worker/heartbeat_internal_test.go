package worker

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// leaseServer answers ExtendLease: OK for every lease except lost, which it
// answers Aborted TIMED_OUT. It records the size of each call.
type leaseServer struct {
	taskerv1.StepServiceClient
	lost  string
	sizes []int
}

func (f *leaseServer) ExtendLease(_ context.Context, req *taskerv1.ExtendLeaseRequest, _ ...grpc.CallOption) (*taskerv1.ExtendLeaseResponse, error) {
	f.sizes = append(f.sizes, len(req.GetLeases()))
	resp := &taskerv1.ExtendLeaseResponse{}
	for _, l := range req.GetLeases() {
		ext := &taskerv1.LeaseExtension{Result: &taskerv1.EntryResult{}, LeaseExpiresAt: timestamppb.New(time.Now().Add(time.Minute))}
		if l.GetStepId() == f.lost {
			ext = &taskerv1.LeaseExtension{Result: &taskerv1.EntryResult{Code: int32(codes.Aborted), Reason: "TIMED_OUT", Message: "too slow"}}
		}
		resp.Extensions = append(resp.Extensions, ext)
	}
	return resp, nil
}

// TestRenewBatchesAndCancelsLostLeases: one beat renews every lease held in
// calls of at most 500, and a refused lease cancels only its handler.
func TestRenewBatchesAndCancelsLostLeases(t *testing.T) {
	t.Parallel()
	fake := &leaseServer{lost: "step-700"}
	w := New(nil, "w", Options{Logger: slog.New(slog.DiscardHandler)})
	w.steps = fake
	ctxs := map[string]context.Context{}
	for i := range 1200 {
		id := fmt.Sprintf("step-%d", i)
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		ctxs[id] = ctx
		e := &execution{step: &Step{ID: id}, token: "t", cancel: cancel, lease: time.Second, log: w.log}
		w.running[e] = struct{}{}
	}
	w.renew(context.Background())
	require.Equal(t, []int{500, 500, 200}, fake.sizes)

	cause := context.Cause(ctxs["step-700"])
	lost := &LeaseLostError{}
	require.ErrorAs(t, cause, &lost)
	require.Equal(t, "TIMED_OUT", lost.Reason)
	require.Equal(t, codes.Aborted, lost.Code)
	require.NoError(t, ctxs["step-699"].Err())
	for e := range w.running {
		if e.step.ID == "step-700" {
			require.Equal(t, stateLost, e.state)
		} else {
			require.Equal(t, stateRunning, e.state)
			require.True(t, e.expiresAt.After(time.Now().Add(30*time.Second)), "expiry renewed")
		}
	}

	// The lost lease is no longer renewed.
	fake.sizes = nil
	w.renew(context.Background())
	require.Equal(t, []int{500, 500, 199}, fake.sizes)

	iv, ok := w.interval()
	require.True(t, ok)
	require.Equal(t, time.Second/3, iv)
}
