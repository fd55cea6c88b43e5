package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWorkerCacheIsBounded: the in-memory worker table never holds more
// than maxCachedWorkers, drops workers not seen for workerSeenEvery first,
// and keeps the newest.
func TestWorkerCacheIsBounded(t *testing.T) {
	t.Parallel()
	c := workerCache{seen: map[string]workerSeen{}}
	t0 := time.Unix(1_000_000, 0)
	for i := range maxCachedWorkers {
		c.put(fmt.Sprintf("old%d", i), workerSeen{at: t0})
	}
	require.Len(t, c.seen, maxCachedWorkers)

	later := t0.Add(workerSeenEvery)
	c.put("fresh0", workerSeen{at: later})
	require.Len(t, c.seen, 1, "the stale workers are forgotten")

	for i := 1; i < 3*maxCachedWorkers; i++ {
		c.put(fmt.Sprintf("fresh%d", i), workerSeen{at: later})
		require.LessOrEqual(t, len(c.seen), maxCachedWorkers)
	}
	require.Contains(t, c.seen, fmt.Sprintf("fresh%d", 3*maxCachedWorkers-1))
	c.put("fresh1", workerSeen{at: later.Add(time.Second)})
	require.LessOrEqual(t, len(c.seen), maxCachedWorkers)
}
