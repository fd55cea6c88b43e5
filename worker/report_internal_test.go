package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReportRetriesTransientErrorsWithinTheLease: Unavailable is retried
// with backoff until it succeeds, the attempts run out or the lease would
// end first; Aborted is final at once.
func TestReportRetriesTransientErrorsWithinTheLease(t *testing.T) {
	t.Parallel()
	w := New(nil, "w", Options{Logger: slog.New(slog.DiscardHandler)})
	log := w.log
	farLease := func() time.Time { return time.Now().Add(time.Hour) }

	calls := 0
	err := w.report(context.Background(), log, farLease, "CompleteStep", func(context.Context) error {
		calls++
		if calls < 3 {
			return status.Error(codes.Unavailable, "down")
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls)

	calls = 0
	err = w.report(context.Background(), log, farLease, "CompleteStep", func(context.Context) error {
		calls++
		return status.Error(codes.Aborted, "lease lost")
	})
	require.Equal(t, codes.Aborted, status.Code(err))
	require.Equal(t, 1, calls)

	calls = 0
	err = w.report(context.Background(), log, farLease, "FailStep", func(context.Context) error {
		calls++
		return status.Error(codes.DeadlineExceeded, "slow")
	})
	require.Equal(t, codes.DeadlineExceeded, status.Code(err))
	require.Equal(t, reportAttempts, calls)

	// With the lease ending in 230ms only the retries that fit are made
	// (a backoff of 80-100ms fits, then 160-200ms would pass the lease).
	calls = 0
	leaseEnd := time.Now().Add(230 * time.Millisecond)
	err = w.report(context.Background(), log, func() time.Time { return leaseEnd }, "CompleteStep", func(context.Context) error {
		calls++
		return status.Error(codes.Unavailable, "down")
	})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Equal(t, 2, calls)
}
