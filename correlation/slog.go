package correlation

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Handler adds to every record logged with a context the correlation id
// (correlation_id), the task_id and step_id it is about when known
// (WithTask, WithStep) and, when a span is active, its trace_id and span_id,
// so a log line joins the call's events and trace. Lines logged without
// one (or with a context that carries neither) are passed on unchanged.
type Handler struct {
	next slog.Handler
}

// NewHandler wraps next; a next that is already a Handler is returned as
// it is, so wrapping twice adds the attributes once.
func NewHandler(next slog.Handler) *Handler {
	if h, ok := next.(*Handler); ok {
		return h
	}
	return &Handler{next: next}
}

// Enabled reports whether next handles records at l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle adds the context's ids to r and passes it on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := FromContext(ctx); id != "" {
			r.AddAttrs(slog.String("correlation_id", id))
		}
		if id := TaskFromContext(ctx); id != "" {
			r.AddAttrs(slog.String("task_id", id))
		}
		if id := StepFromContext(ctx); id != "" {
			r.AddAttrs(slog.String("step_id", id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a Handler over next with attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs)}
}

// WithGroup returns a Handler over next with the group; the ids then go
// inside the group too.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name)}
}

// Logger returns log with its handler wrapped in a Handler.
func Logger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(*Handler); ok {
		return log
	}
	return slog.New(NewHandler(log.Handler()))
}
