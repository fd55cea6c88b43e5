// Package reqcheck checks the values of a decoded request that protobuf's
// decoder accepts but the contract does not: timestamps outside years
// 1–9999, durations with out-of-range nanos, enum numbers outside the
// declared set, NaN or ±Inf numbers, and Struct values with no kind. The
// server runs it on every request before any handler, by walking the
// message with protoreflect, so a field added to the contract is covered
// without anyone remembering to.
package reqcheck
