package engine

import "time"

// PruneWorkers exposes the reaper's pruning of forgotten workers to tests.
var PruneWorkers = (*Engine).pruneWorkers

// SetClock makes e read the time from now, for tests that need exact
// timestamps.
func SetClock(e *Engine, now func() time.Time) { e.now = now }
