// Package builtin runs steps inside the server: the server's own worker.
//
// A Registry maps (namespace, handler) to a HandlerFunc; a Go program that
// embeds the server registers its own, and the "http" built-in (HTTP, one
// HTTP call per step, configured by a template's HttpStepConfig) is one
// registration, for every namespace, under the handler name
// "builtin:http" that no remote worker can claim. The Runner claims the
// registered handlers' steps through the engine exactly as a remote worker
// does over gRPC: the same claim, lease (renewed while the handler runs),
// execution timeout, retry, cancellation, transitions and events. A lost
// lease (expired, timed out, cancelled) cancels the handler's context, which
// aborts an HTTP request in flight; a handler's error becomes FailStep with
// the type, retryability and retry-after it carries (Error).
//
// Delivery is at least once, as for any worker: a server that stops or
// crashes while a step runs gives the step back (graceful stop, after a
// bounded wait) or loses its lease (crash), and the step runs again, on
// this server after a restart or on another replica. An HTTP step whose
// request reached the remote service may therefore be sent twice; make the
// call idempotent, e.g. with an idempotency key header rendered from
// {{ .step.task_id }} and the step name.
package builtin
