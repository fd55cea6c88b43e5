package fault

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Code classifies an error the way the contract's error table does.
type Code int

// The codes of the error table. Their names match gRPC's canonical codes,
// which the server maps them to.
const (
	InvalidArgument Code = iota + 1
	NotFound
	AlreadyExists
	FailedPrecondition
	Aborted
	OutOfRange
	Unauthenticated
	PermissionDenied
	Unavailable
	ResourceExhausted
)

var codeNames = map[Code]string{
	InvalidArgument:    "invalid argument",
	NotFound:           "not found",
	AlreadyExists:      "already exists",
	FailedPrecondition: "failed precondition",
	Aborted:            "aborted",
	OutOfRange:         "out of range",
	Unauthenticated:    "unauthenticated",
	PermissionDenied:   "permission denied",
	Unavailable:        "unavailable",
	ResourceExhausted:  "resource exhausted",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Reasons carried in ErrorInfo (domain "tasker.v1") and in batch entry
// results.
const (
	ReasonInvalidState     = "INVALID_STATE"
	ReasonAlreadyCompleted = "ALREADY_COMPLETED"
	ReasonLeaseLost        = "LEASE_LOST"
	ReasonTimedOut         = "TIMED_OUT"
	ReasonCancelled        = "CANCELLED"
	ReasonLogTruncated     = "LOG_TRUNCATED"
	// ReasonTokenInvalid: the bearer token is missing, unknown, expired
	// or revoked.
	ReasonTokenInvalid = "TOKEN_INVALID"
	// ReasonScopeMissing: the token lacks the scope in metadata "scope".
	ReasonScopeMissing = "SCOPE_MISSING"
	// ReasonNamespaceDenied: the token may not act on the namespace in
	// metadata "namespace" (empty when the call needs every namespace).
	ReasonNamespaceDenied = "NAMESPACE_DENIED"
	// ReasonRateLimited: the token made more calls than its rate allows;
	// RetryInfo says when the next one will be taken.
	ReasonRateLimited = "RATE_LIMITED"
)

// Violation is one bad field of a request, named by its path in the request
// message (e.g. "template.steps[2].depends_on[0]").
type Violation struct {
	Field       string
	Description string
}

// Error is a domain error with everything the contract promises clients.
type Error struct {
	Code    Code
	Message string
	// Reason is the machine-readable cause (one of the Reason constants), or
	// empty.
	Reason string
	// Metadata accompanies Reason, e.g. {"current_state": "STEP_STATE_COMPLETE"}.
	Metadata map[string]string
	// Violations lists the bad fields of an InvalidArgument error.
	Violations []Violation
	// ResourceType and ResourceName name what was not found or already
	// exists.
	ResourceType string
	ResourceName string
	// RetryAfter, when positive, is how long a client should wait before
	// trying again: the server sends it as RetryInfo with an Unavailable
	// error.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return e.Code.String() + ": " + e.Message
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}

// CodeOf returns the code of the *Error in err's chain, or 0.
func CodeOf(err error) Code {
	if fe, ok := As(err); ok {
		return fe.Code
	}
	return 0
}

// Invalid reports one bad field.
func Invalid(field, format string, args ...any) *Error {
	return Invalids([]Violation{{Field: field, Description: fmt.Sprintf(format, args...)}})
}

// Invalids reports several bad fields at once, so a client fixes them in one
// round trip. It panics when vs is empty: that is a programming error.
func Invalids(vs []Violation) *Error {
	if len(vs) == 0 {
		panic("fault.Invalids: no violations")
	}
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return &Error{Code: InvalidArgument, Message: strings.Join(parts, "; "), Violations: vs}
}

// MaxQuoted is how many bytes of a request value an error quotes: enough to
// recognise it, too little to carry a secret or a large payload into the
// response or the log.
const MaxQuoted = 40

// Clip cuts s to MaxQuoted bytes on a rune boundary, marking the cut with
// "…". Every value of a request quoted in an error goes through it.
func Clip(s string) string { return clipTo(s, MaxQuoted) }

// maxName bounds a resource name quoted in an error: longer than any valid
// name (namespace/name@version is at most 256 bytes), so only names no
// resource can have are cut.
const maxName = 256

func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return "…"
}

// NotFoundf reports an unknown resource, e.g. NotFoundf("task", id).
func NotFoundf(resourceType, name string) *Error {
	return &Error{
		Code:         NotFound,
		Message:      fmt.Sprintf("%s %q not found", resourceType, clipTo(name, maxName)),
		ResourceType: resourceType,
		ResourceName: clipTo(name, maxName),
	}
}

// AlreadyExistsf reports a conflicting resource.
func AlreadyExistsf(resourceType, name, format string, args ...any) *Error {
	return &Error{
		Code:         AlreadyExists,
		Message:      fmt.Sprintf("%s %q: %s", resourceType, clipTo(name, maxName), fmt.Sprintf(format, args...)),
		ResourceType: resourceType,
		ResourceName: clipTo(name, maxName),
	}
}

// InvalidState reports a transition the state machine does not allow from
// the current state.
func InvalidState(resourceType, name, currentState, format string, args ...any) *Error {
	return &Error{
		Code:         FailedPrecondition,
		Reason:       ReasonInvalidState,
		Message:      fmt.Sprintf("%s %s is %s: %s", resourceType, name, currentState, fmt.Sprintf(format, args...)),
		Metadata:     map[string]string{"current_state": currentState},
		ResourceType: resourceType,
		ResourceName: name,
	}
}

// Abortedf reports a worker call that lost its claim; reason is one of
// ReasonLeaseLost, ReasonTimedOut, ReasonCancelled.
func Abortedf(reason, format string, args ...any) *Error {
	return &Error{Code: Aborted, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Unavailablef reports a call that could not be served now but may succeed
// if tried again after retryAfter, e.g. because the database is
// unreachable. A call cut off while it committed may have taken effect;
// repeating it is safe where the contract makes it so (idempotency keys,
// reports under the same lease).
func Unavailablef(retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{Code: Unavailable, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// Unauthenticatedf reports a call without a usable bearer token.
func Unauthenticatedf(format string, args ...any) *Error {
	return &Error{Code: Unauthenticated, Reason: ReasonTokenInvalid, Message: fmt.Sprintf(format, args...)}
}

// ScopeMissing reports a token that lacks the scope a call needs.
func ScopeMissing(method, scope string) *Error {
	return &Error{
		Code: PermissionDenied, Reason: ReasonScopeMissing, Metadata: map[string]string{"scope": scope},
		Message: fmt.Sprintf("%s needs a token with scope %s (or admin)", method, scope),
	}
}

// NamespaceDenied reports a token that may not use scope on namespace ns;
// an empty ns means the call, as asked, covers every namespace.
func NamespaceDenied(scope, ns, format string, args ...any) *Error {
	return &Error{
		Code: PermissionDenied, Reason: ReasonNamespaceDenied,
		Metadata: map[string]string{"scope": scope, "namespace": Clip(ns)},
		Message:  fmt.Sprintf(format, args...),
	}
}
