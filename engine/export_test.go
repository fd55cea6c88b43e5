package engine

// PruneWorkers exposes the reaper's pruning of forgotten workers to tests.
var PruneWorkers = (*Engine).pruneWorkers
