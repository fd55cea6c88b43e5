package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// Step is a claimed step handed to a HandlerFunc: what it should do (Config),
// for which task (Context), and what its parents produced (Parent).
//
// JSON documents arrive as Go values the way encoding/json decodes them:
// objects are map[string]any, arrays []any and every number a float64.
type Step struct {
	// ID is the step's id.
	ID string
	// TaskID is the id of the task the step belongs to.
	TaskID string
	// Namespace is the namespace of the task's template.
	Namespace string
	// Handler is the handler name the step was claimed for.
	Handler string
	// Name is the step's name within its task.
	Name string
	// TemplateName is the name of the task's template.
	TemplateName string
	// TemplateVersion is the version of the task's template.
	TemplateVersion string
	// CorrelationID is the task's correlation id. The worker sends it in
	// x-correlation-id on every call it makes for the step, and the
	// handler's context carries it as outgoing gRPC metadata.
	CorrelationID string
	// Attempt is this attempt's number, starting at 1.
	Attempt int
	// MaxAttempts is the step's attempt budget.
	MaxAttempts int
	// Config is the step's static configuration from its template.
	Config map[string]any
	// Context is the task's context.
	Context map[string]any
	// LeaseExpiresAt is when the claim's lease expires unless renewed; the
	// worker renews it while the handler runs.
	LeaseExpiresAt time.Time
	// ExecutionDeadline is when the attempt times out; zero when the step
	// has no execution timeout. Past it the lease is lost and the handler's
	// context is cancelled.
	ExecutionDeadline time.Time

	steps   taskerv1.StepServiceClient
	parents []parent

	mu      sync.Mutex
	fetched map[string]map[string]any // omitted results read with GetStep
}

// parent is one parent's result as the claim delivered it.
type parent struct {
	name, stepID string
	result       map[string]any
	omitted      bool
}

// ParentNames returns the names of the step's parents, in the order their
// steps are declared in the template.
func (s *Step) ParentNames() []string {
	names := make([]string, len(s.parents))
	for i, p := range s.parents {
		names[i] = p.name
	}
	return names
}

// Parent returns the result of the parent step called name. A result too
// large to travel with the claim is read from the server with GetStep on
// first use and kept for later calls. It is safe for concurrent use.
func (s *Step) Parent(ctx context.Context, name string) (map[string]any, error) {
	for _, p := range s.parents {
		if p.name != name {
			continue
		}
		if !p.omitted {
			if p.result == nil {
				return map[string]any{}, nil
			}
			return p.result, nil
		}
		return s.fetch(ctx, p)
	}
	return nil, fmt.Errorf("tasker worker: step %q has no parent %q (parents: %v)", s.Name, name, s.ParentNames())
}

func (s *Step) fetch(ctx context.Context, p parent) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.fetched[p.name]; ok {
		return r, nil
	}
	resp, err := s.steps.GetStep(withCorrelation(ctx, s.CorrelationID), &taskerv1.GetStepRequest{Id: p.stepID})
	if err != nil {
		return nil, fmt.Errorf("tasker worker: read result of parent %q (step %s): %w", p.name, p.stepID, err)
	}
	r := resp.GetStep().GetResult().AsMap()
	if s.fetched == nil {
		s.fetched = map[string]map[string]any{}
	}
	s.fetched[p.name] = r
	return r, nil
}

// newStep converts a claim into the handler's view of it.
func newStep(c *taskerv1.ClaimedStep, steps taskerv1.StepServiceClient) *Step {
	s := &Step{
		ID:              c.GetStepId(),
		TaskID:          c.GetTaskId(),
		Namespace:       c.GetHandler().GetNamespace(),
		Handler:         c.GetHandler().GetHandler(),
		Name:            c.GetStepName(),
		TemplateName:    c.GetTemplateName(),
		TemplateVersion: c.GetTemplateVersion(),
		CorrelationID:   c.GetCorrelationId(),
		Attempt:         int(c.GetAttempt()),
		MaxAttempts:     int(c.GetMaxAttempts()),
		Config:          c.GetConfig().AsMap(),
		Context:         c.GetContext().AsMap(),
		LeaseExpiresAt:  c.GetLeaseExpiresAt().AsTime(),
		steps:           steps,
	}
	if c.GetExecutionDeadline() != nil {
		s.ExecutionDeadline = c.GetExecutionDeadline().AsTime()
	}
	for _, pr := range c.GetParentResults() {
		p := parent{name: pr.GetStepName(), stepID: pr.GetStepId(), omitted: pr.GetOmitted()}
		if pr.GetResult() != nil {
			p.result = pr.GetResult().AsMap()
		}
		s.parents = append(s.parents, p)
	}
	return s
}
