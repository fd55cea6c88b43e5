package backoff_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/backoff"
)

func TestBackoffDoublesToMaxWithJitter(t *testing.T) {
	t.Parallel()
	b := backoff.New(100*time.Millisecond, time.Second)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.Next()
		require.LessOrEqual(t, d, w, "pause %d", i)
		require.GreaterOrEqual(t, d, w-w/5, "pause %d", i)
	}
	b.Reset()
	require.LessOrEqual(t, b.Next(), 100*time.Millisecond, "Reset starts again from Min")
}

func TestBackoffJitterSpreads(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[backoff.Jitter(time.Second)] = true
	}
	require.Greater(t, len(seen), 1, "pauses of many clients differ")
	require.Equal(t, time.Duration(0), backoff.Jitter(0))
}

func TestExponential(t *testing.T) {
	t.Parallel()
	for n, w := range map[int]time.Duration{1: 100, 2: 200, 3: 400, 5: 1000, 60: 1000} {
		w *= time.Millisecond
		d := backoff.Exponential(100*time.Millisecond, time.Second, n)
		require.LessOrEqual(t, d, w, "failure %d", n)
		require.GreaterOrEqual(t, d, w-w/5, "failure %d", n)
	}
}
