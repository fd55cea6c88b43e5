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
