// Package bench is `tasker bench`: whole-system scenarios (burn-down,
// linear chains, diamonds, fan-out, event delivery, capacity) run through
// the real gRPC API with workers built on the Go SDK, against a server it
// starts as a child process (so peak RSS and CPU are the server's own), in
// this process (for CPU profiles), or a running one. It reports steps and
// tasks per second, latency percentiles, CPU per step and memory, as a
// table or JSON lines. Hot-path micro-benchmarks live beside their code
// (engine, events) instead.
package bench
