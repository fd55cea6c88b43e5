package correlation

import (
	"context"
	"regexp"

	"github.com/google/uuid"
)

// Header is the gRPC metadata key (and HTTP header) carrying the id.
const Header = "x-correlation-id"

type ctxKey struct{}

// valid bounds what a client may send: ids end up in logs and indexes.
var valid = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

// Valid reports whether id may be used as a correlation id.
func Valid(id string) bool { return valid.MatchString(id) }

// New returns a fresh id.
func New() string { return uuid.NewString() }

// WithID returns ctx carrying id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the id carried by ctx, or "".
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

type taskKey struct{}
type stepKey struct{}

// WithTask returns ctx carrying the id of the task a call or operation is
// about; Handler adds it to log lines as task_id.
func WithTask(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, taskKey{}, id)
}

// WithStep returns ctx carrying the id of the step a call or operation is
// about; Handler adds it to log lines as step_id.
func WithStep(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, stepKey{}, id)
}

// TaskFromContext and StepFromContext return the ids WithTask and
// WithStep put in ctx, or "".
func TaskFromContext(ctx context.Context) string {
	id, _ := ctx.Value(taskKey{}).(string)
	return id
}

// StepFromContext returns the step id WithStep put in ctx, or "".
func StepFromContext(ctx context.Context) string {
	id, _ := ctx.Value(stepKey{}).(string)
	return id
}
