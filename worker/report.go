package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/backoff"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// complete reports a handler's result. A result the server cannot take
// (not a JSON document, or over its size limit) fails the step for good
// instead: running the handler again would produce the same.
func (w *Worker) complete(ctx context.Context, e *execution, result map[string]any, took time.Duration) {
	doc, err := toStruct(result)
	if err != nil {
		w.fail(ctx, e, NonRetryable(WithErrorType(fmt.Errorf("the handler's result is not a JSON document: %w", err), "invalid_result")), took)
		return
	}
	entry := &taskerv1.StepCompletion{StepId: e.step.ID, LeaseToken: e.token, Result: doc}
	err = w.report(ctx, e.log, w.leaseEnd(e), "CompleteStep", func(ctx context.Context) error {
		r, err := w.completions.do(ctx, entry)
		if err != nil {
			return err
		}
		return entryError(r)
	})
	if status.Code(err) == codes.InvalidArgument {
		w.fail(ctx, e, NonRetryable(WithErrorType(fmt.Errorf("the server refused the handler's result: %s", status.Convert(err).Message()), "invalid_result")), took)
		return
	}
	if err != nil {
		w.refused(ctx, e.log, "CompleteStep", err)
		return
	}
	e.log.InfoContext(ctx, "step completed", durationAttr("took", took))
}

// fail reports a handler's error as FailStep, with the type, retryability
// and retry delay the error carries.
func (w *Worker) fail(ctx context.Context, e *execution, handlerErr error, took time.Duration) {
	f := describe(handlerErr)
	req := &taskerv1.StepFailure{
		StepId:       e.step.ID,
		LeaseToken:   e.token,
		Error:        &taskerv1.StepError{Message: errorMessage(handlerErr), Type: f.typ},
		NonRetryable: f.nonRetryable,
	}
	if f.retryAfter > 0 {
		req.RetryAfter = durationpb.New(f.retryAfter)
	}
	var resp *taskerv1.FailureOutcome
	err := w.report(ctx, e.log, w.leaseEnd(e), "FailStep", func(ctx context.Context) error {
		var err error
		if resp, err = w.failures.do(ctx, req); err != nil {
			return err
		}
		return entryError(resp.GetResult())
	})
	if err != nil {
		w.refused(ctx, e.log, "FailStep", err)
		return
	}
	attrs := []any{durationAttr("took", took), slog.String("error_type", f.typ)}
	if pe := (*panicError)(nil); errors.As(handlerErr, &pe) {
		// The stack goes to the log once; the step's last error has it too.
		e.log.ErrorContext(ctx, "handler panicked", slog.Any("panic", pe.value), slog.String("stack", string(pe.stack)))
		attrs = append(attrs, slog.String("error", fmt.Sprintf("panic: %v", pe.value)))
	} else {
		attrs = append(attrs, slog.Any("error", handlerErr))
	}
	if resp.GetState() == taskerv1.StepState_STEP_STATE_WAITING_FOR_RETRY {
		attrs = append(attrs, slog.Time("retry_at", resp.GetAvailableAt().AsTime()))
		e.log.InfoContext(ctx, "step failed; retry scheduled", attrs...)
		return
	}
	e.log.WarnContext(ctx, "step failed for good", attrs...)
}

// release gives a claimed step back unrun; the attempt is not counted.
// leaseEnd reports when the lease ends, as last renewed.
func (w *Worker) release(ctx context.Context, log *slog.Logger, s *Step, token string, leaseEnd func() time.Time, reason string) {
	ctx = withCorrelation(ctx, s.CorrelationID)
	err := w.report(ctx, log, leaseEnd, "ReleaseStep", func(ctx context.Context) error {
		_, err := w.steps.ReleaseStep(ctx, &taskerv1.ReleaseStepRequest{StepId: s.ID, LeaseToken: token, Reason: reason})
		return err
	})
	if err != nil {
		w.refused(ctx, log, "ReleaseStep", err)
		return
	}
	log.InfoContext(ctx, "step released", slog.String("reason", reason))
}

// report makes one report call, retrying transient failures with capped,
// jittered exponential backoff for as long as the lease runs, as last
// renewed by the heartbeat: a server restart or a database outage of a few
// seconds must not make a finished step run again. After the lease expires
// the server refuses the report anyway and the reaper has the step retried.
// ctx is never the worker's cancelled context: reports outlive shutdown.
func (w *Worker) report(ctx context.Context, log *slog.Logger, leaseEnd func() time.Time, method string, call func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		err := call(callCtx)
		cancel()
		if err == nil || !transient(err) {
			return err
		}
		wait := w.reportBackoff(attempt)
		if time.Now().Add(wait).After(leaseEnd()) {
			return err
		}
		log.WarnContext(ctx, "report failed; retrying", slog.String("method", method), slog.Int("report_attempt", attempt),
			durationAttr("retry_in", wait), slog.Any("error", err))
		if !sleep(ctx, wait) {
			return err
		}
	}
}

// reportBackoff is the pause after the n-th failed attempt of a report:
// exponential from reportBackoffInitial, capped at reportBackoffMax so a
// server that comes back is noticed within that, jittered.
func reportBackoff(n int) time.Duration {
	return backoff.Exponential(reportBackoffInitial, reportBackoffMax, n)
}

// transient reports errors worth repeating a report for: the server or its
// database could not serve the call now. Repeating is safe: a report that
// already took effect succeeds again with the same lease and content.
// Internal is not among them: the server answers an unreachable database
// with Unavailable, so Internal is a fault that repeating will not cure.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// refused logs a report the server did not take. Aborted (the lease was
// lost, the attempt timed out, the step was cancelled) and NotFound are
// normal outcomes of a race with the reaper or an operator: the result is
// dropped and the server decides what runs next.
func (w *Worker) refused(ctx context.Context, log *slog.Logger, method string, err error) {
	st := status.Convert(err)
	attrs := []any{slog.String("method", method), slog.String("code", st.Code().String()), slog.String("message", st.Message())}
	switch st.Code() {
	case codes.Aborted, codes.NotFound:
		log.InfoContext(ctx, "report refused; result dropped", attrs...)
	case codes.FailedPrecondition:
		log.WarnContext(ctx, "report refused; result dropped", attrs...)
	default:
		log.ErrorContext(ctx, "report failed; the step runs again after its lease expires", attrs...)
	}
}

// leaseEnd returns when e's lease runs out, as last renewed.
func (w *Worker) leaseEnd(e *execution) func() time.Time {
	return func() time.Time {
		w.mu.Lock()
		defer w.mu.Unlock()
		return e.expiresAt
	}
}

// toStruct converts a handler's result to a Struct. Values structpb does
// not take directly ([]string, structs, typed maps) go through JSON, the
// way a result is stored anyway.
func toStruct(m map[string]any) (*structpb.Struct, error) {
	if m == nil {
		return &structpb.Struct{}, nil
	}
	if s, err := structpb.NewStruct(m); err == nil {
		return s, nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	return structpb.NewStruct(generic)
}
