package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/registry"
)

// Step is a claimed step handed to a HandlerFunc.
type Step struct {
	ID            uuid.UUID
	TaskID        uuid.UUID
	Namespace     string
	Name          string
	Handler       string
	Attempt       int
	CorrelationID string
	// Config is the step's config as JSON; for an http step, its
	// HttpStepConfig (registry.DecodeHTTPConfig reads it).
	Config json.RawMessage
	// Context is the task context as JSON.
	Context json.RawMessage
	// Parents holds each parent's result by step name (nil: none).
	Parents map[string]json.RawMessage
}

// HandlerFunc runs one attempt of a step and returns its result (a JSON
// object) or an error. ctx ends when the lease is lost, the step's
// execution timeout passes, the step or task is cancelled, or the server
// stops; context.Cause tells which. An error is retryable unless it is an
// *Error saying otherwise.
type HandlerFunc func(ctx context.Context, s *Step) (map[string]any, error)

// Error is a handler's failure with what FailStep should record.
type Error struct {
	// Type is the error type recorded on the step, e.g. "http_status".
	Type string
	// Message is the error message recorded on the step; it is stored and
	// published, so it must hold no secret.
	Message string
	// NonRetryable fails the step for good.
	NonRetryable bool
	// RetryAfter, when positive, replaces the retry policy's backoff
	// (capped by its max backoff).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Permanent returns a non-retryable *Error.
func Permanent(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...), NonRetryable: true}
}

// Retryable returns a retryable *Error; retryAfter 0 keeps the policy's
// backoff.
func Retryable(typ string, retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// Options are a registration's settings.
type Options struct {
	// Concurrency caps how many of the handler's steps run at once in this
	// process; 0 means 16.
	Concurrency int
}

const defaultHandlerConcurrency = 16

// Key names a registration: a handler in a namespace, or in every
// namespace that uses it when Namespace is empty.
type Key struct {
	Namespace, Handler string
}

type registration struct {
	fn   HandlerFunc
	opts Options
}

// Registry maps (namespace, handler) to the HandlerFunc that runs its
// steps in process. Registering a key again replaces its function (the
// concurrency cap of a running Runner stays what it was); the mutex is
// there because an embedding program may register while the Runner runs.
type Registry struct {
	mu       sync.RWMutex
	handlers map[Key]registration
	// changed is closed, and replaced, when a new key is registered, so a
	// running Runner starts serving it.
	changed chan struct{}
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[Key]registration{}, changed: make(chan struct{})}
}

// ErrInvalidKey is wrapped by Register's error for a malformed key.
var ErrInvalidKey = errors.New("builtin: invalid handler key")

// Register serves the handler's steps with fn, replacing an earlier
// registration of the same key. namespace "" serves the handler in every
// namespace whose templates use it. handler is a worker handler name
// (registry.CheckHandler) or a built-in's "builtin:<name>".
func (r *Registry) Register(namespace, handler string, fn HandlerFunc, opts Options) error {
	if fn == nil {
		return fmt.Errorf("%w: nil HandlerFunc for %s", ErrInvalidKey, handler)
	}
	if namespace != "" {
		if msg := registry.CheckNamespace(namespace); msg != "" {
			return fmt.Errorf("%w: namespace %s", ErrInvalidKey, msg)
		}
	}
	if _, ok := registry.IsBuiltinHandler(handler); !ok {
		if msg := registry.CheckHandler(handler); msg != "" {
			return fmt.Errorf("%w: handler %s", ErrInvalidKey, msg)
		}
	}
	if opts.Concurrency < 0 {
		return fmt.Errorf("%w: negative concurrency", ErrInvalidKey)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = defaultHandlerConcurrency
	}
	k := Key{Namespace: namespace, Handler: handler}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, known := r.handlers[k]
	r.handlers[k] = registration{fn: fn, opts: opts}
	if !known {
		close(r.changed)
		r.changed = make(chan struct{})
	}
	return nil
}

// MustRegister is Register that panics on an error, for start-up code.
func (r *Registry) MustRegister(namespace, handler string, fn HandlerFunc, opts Options) {
	if err := r.Register(namespace, handler, fn, opts); err != nil {
		panic(err)
	}
}

// Keys returns the registered keys, ordered.
func (r *Registry) Keys() []Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	keys := make([]Key, 0, len(r.handlers))
	for k := range r.handlers {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Handler < keys[j].Handler
	})
	return keys
}

func (r *Registry) lookup(k Key) (registration, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg, ok := r.handlers[k]
	return reg, ok
}

func (r *Registry) watch() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.changed
}
