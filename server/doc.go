// Package server exposes Tasker over gRPC: the four tasker.v1 services,
// grpc.health.v1, server reflection and an HTTP admin port with /healthz and
// /readyz.
//
// It decodes requests, calls the registry and the engine, and encodes
// responses; it holds no business rules. Its interceptor chain gives every
// call a correlation id, a structured log line, recovery from panics and one
// mapping from domain errors (package fault) to gRPC status codes with typed
// details, masking anything unexpected. Shutdown stops new work, ends
// long-polls and streams, drains in-flight calls for a bounded time and then
// stops hard, because grpc.Server.GracefulStop alone waits forever on open
// streams.
package server
