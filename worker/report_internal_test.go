package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReportRetriesTransientErrorsWithinTheLease: Unavailable,
// DeadlineExceeded and ResourceExhausted are retried until the report
// lands, well past the five attempts of old; other codes are final at once.
func TestReportRetriesTransientErrorsWithinTheLease(t *testing.T) {
	t.Parallel()
	w := New(nil, "w", Options{Logger: slog.New(slog.DiscardHandler)})
	w.reportBackoff = func(int) time.Duration { return time.Millisecond }
	farLease := func() time.Time { return time.Now().Add(time.Hour) }

	for _, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted} {
		calls := 0
		err := w.report(context.Background(), w.log, farLease, "CompleteStep", func(context.Context) error {
			calls++
			if calls < 20 {
				return status.Error(code, "not now")
			}
			return nil
		})
		require.NoError(t, err, code)
		require.Equal(t, 20, calls, code)
	}

	for _, code := range []codes.Code{codes.Aborted, codes.FailedPrecondition, codes.InvalidArgument, codes.NotFound, codes.Internal} {
		calls := 0
		err := w.report(context.Background(), w.log, farLease, "FailStep", func(context.Context) error {
			calls++
			return status.Error(code, "final")
		})
		require.Equal(t, code, status.Code(err))
		require.Equal(t, 1, calls, code)
	}
}

// TestReportStopsAtTheLatestLeaseEnd: retries go on while the lease, as
// last renewed, still runs, and stop before a pause would pass its end.
func TestReportStopsAtTheLatestLeaseEnd(t *testing.T) {
	t.Parallel()
	w := New(nil, "w", Options{Logger: slog.New(slog.DiscardHandler)})
	w.reportBackoff = func(int) time.Duration { return 10 * time.Millisecond }

	// The heartbeat renews the lease on each of the first 10 attempts;
	// then it stops, and the lease ends 25ms after the last renewal.
	var leaseEnd atomic.Int64
	leaseEnd.Store(time.Now().Add(25 * time.Millisecond).UnixNano())
	calls := 0
	err := w.report(context.Background(), w.log, func() time.Time { return time.Unix(0, leaseEnd.Load()) }, "CompleteStep",
		func(context.Context) error {
			calls++
			if calls <= 10 {
				leaseEnd.Store(time.Now().Add(25 * time.Millisecond).UnixNano())
			}
			return status.Error(codes.Unavailable, "down")
		})
	require.Equal(t, codes.Unavailable, status.Code(err))
	// After the last renewal (call 10) at most two 10ms pauses fit in
	// 25ms: calls 11 and 12; never fewer than 11, as each renewal made
	// room for one more.
	require.GreaterOrEqual(t, calls, 11)
	require.LessOrEqual(t, calls, 12)

	// A lease already over: the first attempt is still made, once.
	calls = 0
	err = w.report(context.Background(), w.log, func() time.Time { return time.Now().Add(-time.Second) }, "CompleteStep",
		func(context.Context) error {
			calls++
			return status.Error(codes.Unavailable, "down")
		})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Equal(t, 1, calls)
}

// TestReportBackoff: exponential from the initial pause, capped, jittered
// down by at most a fifth.
func TestReportBackoff(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{1: reportBackoffInitial, 2: 2 * reportBackoffInitial, 5: 16 * reportBackoffInitial, 6: reportBackoffMax, 60: reportBackoffMax} {
		got := reportBackoff(n)
		require.LessOrEqual(t, got, want, n)
		require.GreaterOrEqual(t, got, want-want/5, n)
	}
}
