package engine

import "time"

// SetClock makes e read the time from now, for tests that need exact
// timestamps.
func SetClock(e *Engine, now func() time.Time) { e.now = now }
