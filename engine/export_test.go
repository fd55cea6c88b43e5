package engine

import (
	"context"
	"time"
)

// PruneWorkers exposes the reaper's pruning of forgotten workers to tests.
var PruneWorkers = (*Engine).pruneWorkers

// SetClock makes e read the time from now, for tests that need exact
// timestamps.
func SetClock(e *Engine, now func() time.Time) { e.now = now }

// ReapOnce runs one pass of the reaper and returns when it is done.
func ReapOnce(ctx context.Context, e *Engine) error {
	_, err := e.reapOnce(ctx)
	return err
}
