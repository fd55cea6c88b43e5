package server

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerhq/tasker/engine"
)

// traceContext is the W3C trace context format tasks store and claims hand
// to workers.
var traceContext = propagation.TraceContext{}

// traceParent is the traceparent of ctx's span, "" when it has none.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// stepSpan records a claimed attempt's span in its task's trace, the
// trace of the CreateTask call: it runs from when the step became due to
// its claim (the time it waited), is linked to the ClaimSteps call that
// took it, and is the parent of the worker's span of the run, whose
// traceparent it returns. "" when the task has no trace context.
func stepSpan(ctx context.Context, tracer trace.Tracer, c engine.Claim, workerID string) string {
	if c.Task.TraceParent == "" {
		return ""
	}
	parent := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": c.Task.TraceParent})
	if !trace.SpanContextFromContext(parent).IsValid() {
		return ""
	}
	claimed := c.Step.UpdatedAt
	start := claimed
	if a := c.Step.AvailableAt; a != nil && a.Before(claimed) {
		start = *a
	}
	sctx, span := tracer.Start(parent, "step "+c.Step.Name,
		trace.WithTimestamp(start),
		trace.WithLinks(trace.LinkFromContext(ctx)),
		trace.WithAttributes(
			attribute.String("tasker.step_id", c.Step.ID.String()), attribute.String("tasker.task_id", c.Task.ID.String()),
			attribute.String("tasker.namespace", c.Step.Namespace), attribute.String("tasker.handler", c.Step.Handler),
			attribute.Int("tasker.attempt", c.Step.Attempts), attribute.String("tasker.worker_id", workerID),
		))
	span.End(trace.WithTimestamp(claimed))
	return traceParent(sctx)
}
