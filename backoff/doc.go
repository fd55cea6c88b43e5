// Package backoff computes the pauses between attempts of everything in
// Tasker that retries on its own: reconnecting listeners, in-process event
// subscribers, stream resumption in the CLI, worker claims and reports.
// The pause doubles after each failure up to a cap and is jittered, so
// many processes that failed together (a database restart, a dropped
// network) do not come back in lockstep. It is one small package that the
// worker SDK can import without pulling in the server.
package backoff
