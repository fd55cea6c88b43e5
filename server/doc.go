// Package server exposes Tasker over gRPC: the four tasker.v1 services,
// grpc.health.v1, server reflection and an HTTP admin port with /healthz,
// /livez, /readyz and /metrics.
//
// /metrics serves, in the Prometheus text format, the OpenTelemetry
// instruments the engine counts into after each commit (engine.Recorder),
// gauges of the queue, the registry, the event log and the database pools
// (gauges.go), and otelgrpc's RPC metrics; each server has its own meter
// provider and registry, and ComponentsWith adds readers such as OTLP.
// RPC spans go to Config.TracerProvider; a claimed attempt's span joins
// the trace of the task's CreateTask call (stepspan.go). The log lines of
// a call carry its correlation, task, step, trace and span ids
// (correlation.Handler).
//
// It decodes requests, calls the registry and the engine, and encodes
// responses; it holds no business rules. Its interceptor chain gives every
// call a correlation id, a structured log line, recovery from panics and one
// mapping from domain errors (package fault) to gRPC status codes with typed
// details, masking anything unexpected; driver errors that reach it are
// first interpreted by storage, so an unreachable database answers
// Unavailable with RetryInfo on every path. One readiness probe of the
// database, run periodically and at once when a call finds the database
// unavailable, sets both the gRPC health statuses and /readyz. Shutdown stops new work, ends
// long-polls and streams, drains in-flight calls for a bounded time and then
// stops hard, because grpc.Server.GracefulStop alone waits forever on open
// streams.
package server
