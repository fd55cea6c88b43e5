package worker

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
)

// ErrShutdown is the cause of a handler's context when the worker stopped
// waiting for it during shutdown: the step is given back to the server
// unrun (ReleaseStep) and its result, if any, is dropped.
var ErrShutdown = errors.New("tasker worker: shutdown timeout passed; step released")

// LeaseLostError is the cause of a handler's context when the server
// refused to renew the step's lease: the lease expired or was reaped
// (LEASE_LOST), the attempt passed its execution timeout (TIMED_OUT), or the
// step or its task was cancelled (CANCELLED). The worker reports nothing
// for the step afterwards; read it with context.Cause.
type LeaseLostError struct {
	// StepID is the step whose lease was lost.
	StepID string
	// Code is the status code the server answered: Aborted; NotFound when
	// the step no longer exists; FailedPrecondition when the server says
	// the lease already completed the step.
	Code codes.Code
	// Reason is the server's reason: "LEASE_LOST", "TIMED_OUT" or
	// "CANCELLED"; empty with NotFound.
	Reason string
	// Message is the server's explanation.
	Message string
}

// Error names the step, the reason and the server's message.
func (e *LeaseLostError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = e.Code.String()
	}
	return fmt.Sprintf("tasker worker: lease of step %s lost: %s: %s", e.StepID, reason, e.Message)
}

// failure is what a handler's error says about how to report it. The
// option functions merge into one failure at the top of the chain, so
// NonRetryable(WithErrorType(err, "x")) carries both, and errors.As finds
// everything in the outermost one.
type failure struct {
	err          error
	typ          string
	nonRetryable bool
	retryAfter   time.Duration
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// wrap returns a failure around err that starts from whatever err already
// says, so options compose in any order and through fmt.Errorf("%w").
func wrap(err error) *failure {
	f := &failure{err: err}
	var inner *failure
	if errors.As(err, &inner) {
		f.typ, f.nonRetryable, f.retryAfter = inner.typ, inner.nonRetryable, inner.retryAfter
	}
	return f
}

// NonRetryable marks err as permanent: the step goes to error at once
// instead of being retried, whatever attempts are left. It returns nil
// when err is nil.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	f := wrap(err)
	f.nonRetryable = true
	return f
}

// RetryAfter asks for the next attempt after d instead of the step's
// backoff (the server caps d by the policy's max backoff). It returns nil
// when err is nil; d <= 0 keeps the policy's backoff.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	f := wrap(err)
	f.retryAfter = max(d, 0)
	return f
}

// WithErrorType classifies err with a short type recorded on the step's
// last error, e.g. "timeout" or "http_503" (at most 128 bytes). It returns
// nil when err is nil.
func WithErrorType(err error, typ string) error {
	if err == nil {
		return nil
	}
	f := wrap(err)
	f.typ = typ
	return f
}

// Limits of a reported error (StepError in the contract).
const (
	maxErrorMessageBytes = 16 << 10
	maxErrorTypeBytes    = 128
)

// describe turns a handler's error into what FailStep sends.
func describe(err error) failure {
	out := failure{err: err}
	var f *failure
	if errors.As(err, &f) {
		out.typ, out.nonRetryable, out.retryAfter = f.typ, f.nonRetryable, f.retryAfter
	}
	out.typ = truncate(out.typ, maxErrorTypeBytes)
	return out
}

// errorMessage is err's message, never empty and within the contract's
// bound.
func errorMessage(err error) string {
	msg := err.Error()
	if msg == "" {
		msg = fmt.Sprintf("handler failed with an empty %T", err)
	}
	return truncate(msg, maxErrorMessageBytes)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// panicError is what a recovered handler panic is reported as.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string {
	return fmt.Sprintf("panic: %v\n\n%s", p.value, p.stack)
}
