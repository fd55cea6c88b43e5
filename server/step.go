package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// maxBatch bounds the entries of batched worker calls.
const maxBatch = 100

// maxLeases bounds the entries of ExtendLease.
const maxLeases = 500

// claimBudget is how many bytes of parents' results a claim response may
// carry: the default client receive limit (4 MiB) less room for the steps'
// own fields. Results past it are marked omitted and read with GetStep.
const claimBudget = 3 << 20

// stepService implements tasker.v1.StepService: the worker protocol over
// the engine. The operator RPCs come with engine operations and answer
// Unimplemented until then.
type stepService struct {
	taskerv1.UnimplementedStepServiceServer
	engine   *engine.Engine
	log      *slog.Logger
	errs     *errorMapper
	stopping <-chan struct{}
	// tracer records the claimed attempts' spans (stepSpan).
	tracer trace.Tracer
}

func (s *stepService) GetStep(ctx context.Context, req *taskerv1.GetStepRequest) (*taskerv1.GetStepResponse, error) {
	st, deps, corr, err := s.engine.GetStep(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	out := stepToProto(st, deps, true)
	out.CorrelationId = corr
	return &taskerv1.GetStepResponse{Step: out}, nil
}

func (s *stepService) ListSteps(ctx context.Context, req *taskerv1.ListStepsRequest) (*taskerv1.ListStepsResponse, error) {
	p := engine.ListStepsParams{
		TaskID: req.GetTaskId(), Namespace: req.GetNamespace(), Handler: req.GetHandler(),
		PageSize: req.GetPageSize(), PageToken: req.GetPageToken(),
	}
	for i, st := range req.GetStates() {
		state, ok := stepStatesFromProto[st]
		if !ok {
			return nil, fault.Invalid(indexed("states", i), "is not a step state: %v", st)
		}
		p.States = append(p.States, state)
	}
	full := req.GetView() == taskerv1.StepView_STEP_VIEW_FULL
	converted := map[*engine.Step]*taskerv1.Step{}
	p.MaxBytes, p.Size = maxPageBytes, func(st *engine.Step) int {
		converted[st] = stepToProto(st, nil, full)
		return itemSize(converted[st])
	}
	steps, next, err := s.engine.ListSteps(ctx, p)
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ListStepsResponse{NextPageToken: next}
	for _, st := range steps {
		resp.Steps = append(resp.Steps, converted[st])
	}
	return resp, nil
}

func (s *stepService) ClaimSteps(ctx context.Context, req *taskerv1.ClaimStepsRequest) (*taskerv1.ClaimStepsResponse, error) {
	p := engine.ClaimParams{WorkerID: req.GetWorkerId(), Max: int(req.GetMaxSteps())}
	if w := req.GetWait(); w != nil {
		if err := w.CheckValid(); err != nil {
			return nil, fault.Invalid("wait", "is not a valid duration: %v", err)
		}
		p.Wait = w.AsDuration()
	}
	for _, h := range req.GetHandlers() {
		p.Handlers = append(p.Handlers, engine.HandlerRef{Namespace: h.GetNamespace(), Handler: h.GetHandler()})
	}
	claims, err := s.engine.ClaimSteps(ctx, p, s.stopping)
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ClaimStepsResponse{}
	budget := claimBudget
	for _, c := range claims {
		cs := &taskerv1.ClaimedStep{
			StepId:            c.Step.ID.String(),
			TaskId:            c.Task.ID.String(),
			Handler:           &taskerv1.HandlerRef{Namespace: c.Step.Namespace, Handler: c.Step.Handler},
			StepName:          c.Step.Name,
			TemplateName:      c.Task.TemplateName,
			TemplateVersion:   c.Task.TemplateVersion,
			CorrelationId:     c.Task.CorrelationID,
			Config:            document(c.Step.Config),
			Context:           document(c.Task.Context),
			Attempt:           count(c.Step.Attempts),
			MaxAttempts:       count(c.Step.AttemptBudget),
			LeaseToken:        c.LeaseToken,
			LeaseExpiresAt:    timestamppb.New(*c.Step.LeaseExpiresAt),
			ExecutionDeadline: timestamp(c.Step.ExecutionDeadline),
			Priority:          c.Step.Priority,
			Traceparent:       stepSpan(ctx, s.tracer, c, p.WorkerID),
		}
		budget -= proto.Size(cs)
		for _, p := range c.Parents {
			pr := &taskerv1.ParentResult{StepName: p.Name, StepId: p.StepID.String()}
			if len(p.Result) > 0 {
				if len(p.Result) <= budget {
					pr.Result = document(p.Result)
					budget -= len(p.Result)
				} else {
					pr.Omitted = true
				}
			}
			cs.ParentResults = append(cs.ParentResults, pr)
		}
		resp.Steps = append(resp.Steps, cs)
	}
	return resp, nil
}

func lease(stepID, token string) engine.Lease {
	return engine.Lease{StepID: stepID, Token: token}
}

func (s *stepService) ExtendLease(ctx context.Context, req *taskerv1.ExtendLeaseRequest) (*taskerv1.ExtendLeaseResponse, error) {
	if n := len(req.GetLeases()); n == 0 || n > maxLeases {
		return nil, fault.Invalid("leases", "must hold 1 to %d leases", maxLeases)
	}
	var extendBy time.Duration
	if d := req.GetExtendBy(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fault.Invalid("extend_by", "is not a valid duration: %v", err)
		}
		if extendBy = d.AsDuration(); extendBy < time.Second || extendBy > time.Hour {
			return nil, fault.Invalid("extend_by", "must be between 1s and 1h")
		}
	}
	s.engine.WorkerHeartbeat(ctx, req.GetWorkerId())
	resp := &taskerv1.ExtendLeaseResponse{Extensions: make([]*taskerv1.LeaseExtension, len(req.GetLeases()))}
	eachEntry(len(req.GetLeases()), func(i int) {
		l := req.GetLeases()[i]
		expires, err := s.engine.ExtendLease(ctx, lease(l.GetStepId(), l.GetLeaseToken()), extendBy)
		ext := &taskerv1.LeaseExtension{Result: s.errs.entryResult(ctx, "ExtendLease", err)}
		if err == nil {
			ext.LeaseExpiresAt = timestamppb.New(expires)
		}
		resp.Extensions[i] = ext
	})
	return resp, nil
}

func (s *stepService) CompleteStep(ctx context.Context, req *taskerv1.CompleteStepRequest) (*taskerv1.CompleteStepResponse, error) {
	if err := s.engine.CompleteStep(ctx, lease(req.GetStepId(), req.GetLeaseToken()), req.GetResult().AsMap()); err != nil {
		return nil, err
	}
	return &taskerv1.CompleteStepResponse{}, nil
}

func failParams(stepID, token string, e *taskerv1.StepError, nonRetryable bool, retryAfter *durationpb.Duration) engine.FailParams {
	return engine.FailParams{
		Lease: lease(stepID, token), Message: e.GetMessage(), Type: e.GetType(), NonRetryable: nonRetryable,
		RetryAfter: retryAfter.AsDuration(), // nil-safe: an unset retry_after is 0
	}
}

func (s *stepService) FailStep(ctx context.Context, req *taskerv1.FailStepRequest) (*taskerv1.FailStepResponse, error) {
	out, err := s.engine.FailStep(ctx, failParams(req.GetStepId(), req.GetLeaseToken(), req.GetError(), req.GetNonRetryable(), req.GetRetryAfter()))
	if err != nil {
		return nil, err
	}
	return &taskerv1.FailStepResponse{State: stepStatesToProto[out.State], AvailableAt: timestamp(out.AvailableAt)}, nil
}

func (s *stepService) ReleaseStep(ctx context.Context, req *taskerv1.ReleaseStepRequest) (*taskerv1.ReleaseStepResponse, error) {
	if err := s.engine.ReleaseStep(ctx, lease(req.GetStepId(), req.GetLeaseToken()), req.GetReason()); err != nil {
		return nil, err
	}
	return &taskerv1.ReleaseStepResponse{}, nil
}

func (s *stepService) BatchCompleteSteps(ctx context.Context, req *taskerv1.BatchCompleteStepsRequest) (*taskerv1.BatchCompleteStepsResponse, error) {
	if n := len(req.GetCompletions()); n == 0 || n > maxBatch {
		return nil, fault.Invalid("completions", "must hold 1 to %d entries", maxBatch)
	}
	// One transaction for the whole batch, each entry with its own outcome.
	cs := make([]engine.Completion, len(req.GetCompletions()))
	for i, c := range req.GetCompletions() {
		cs[i] = engine.Completion{Lease: lease(c.GetStepId(), c.GetLeaseToken()), Result: c.GetResult().AsMap()}
	}
	errs := s.engine.CompleteSteps(ctx, cs)
	resp := &taskerv1.BatchCompleteStepsResponse{Results: make([]*taskerv1.EntryResult, len(errs))}
	for i, err := range errs {
		resp.Results[i] = s.errs.entryResult(ctx, "BatchCompleteSteps", err)
	}
	return resp, nil
}

// batchParallelism bounds the entries of one batch that run at once.
const batchParallelism = 8

// eachEntry runs fn for the entries 0..n-1 of a batch, several at once:
// each entry is its own transaction, and concurrent transactions share
// commits (SQLite's group commit, PostgreSQL's WAL flushes), so a batch
// costs far less than its entries one after the other. Entries touch
// different steps; two of one task serialise on the task's lock.
func eachEntry(n int, fn func(i int)) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, batchParallelism)
	for i := range n {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

func (s *stepService) BatchFailSteps(ctx context.Context, req *taskerv1.BatchFailStepsRequest) (*taskerv1.BatchFailStepsResponse, error) {
	if n := len(req.GetFailures()); n == 0 || n > maxBatch {
		return nil, fault.Invalid("failures", "must hold 1 to %d entries", maxBatch)
	}
	// One transaction for the whole batch, each entry with its own outcome.
	ps := make([]engine.FailParams, len(req.GetFailures()))
	for i, f := range req.GetFailures() {
		ps[i] = failParams(f.GetStepId(), f.GetLeaseToken(), f.GetError(), f.GetNonRetryable(), f.GetRetryAfter())
	}
	outs, errs := s.engine.FailSteps(ctx, ps)
	resp := &taskerv1.BatchFailStepsResponse{Outcomes: make([]*taskerv1.FailureOutcome, len(errs))}
	for i, err := range errs {
		fo := &taskerv1.FailureOutcome{Result: s.errs.entryResult(ctx, "BatchFailSteps", err)}
		if err == nil {
			fo.State = stepStatesToProto[outs[i].State]
			fo.AvailableAt = timestamp(outs[i].AvailableAt)
		}
		resp.Outcomes[i] = fo
	}
	return resp, nil
}

var stepStatesFromProto = func() map[taskerv1.StepState]engine.StepState {
	m := make(map[taskerv1.StepState]engine.StepState, len(stepStatesToProto))
	for k, v := range stepStatesToProto {
		m[v] = k
	}
	return m
}()

func (s *stepService) RetryStep(ctx context.Context, req *taskerv1.RetryStepRequest) (*taskerv1.RetryStepResponse, error) {
	st, err := s.engine.RetryStep(ctx, engine.StepOp{StepID: req.GetId(), Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &taskerv1.RetryStepResponse{Step: stepToProto(st, nil, true)}, nil
}

func (s *stepService) ResolveStep(ctx context.Context, req *taskerv1.ResolveStepRequest) (*taskerv1.ResolveStepResponse, error) {
	st, err := s.engine.ResolveStep(ctx, engine.StepOp{StepID: req.GetId(), Reason: req.GetReason()}, req.GetResult().AsMap())
	if err != nil {
		return nil, err
	}
	return &taskerv1.ResolveStepResponse{Step: stepToProto(st, nil, true)}, nil
}

func (s *stepService) CancelStep(ctx context.Context, req *taskerv1.CancelStepRequest) (*taskerv1.CancelStepResponse, error) {
	st, err := s.engine.CancelStep(ctx, engine.StepOp{StepID: req.GetId(), Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &taskerv1.CancelStepResponse{Step: stepToProto(st, nil, true)}, nil
}
