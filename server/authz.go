package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	grpcmw "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// rule is what one RPC needs: a scope, and the namespaces it touches.
type rule struct {
	scope auth.Scope
	// check, when set, denies a request on a namespace the principal may
	// not use. Requests with no namespace to check have no check.
	check func(ctx context.Context, a *authorizer, p *auth.Principal, req any) error
	// after, when set, sees a successful response: to remember the
	// namespaces of claimed steps, or to drop what p may not read.
	after func(a *authorizer, p *auth.Principal, resp any)
}

// checkOf adapts a typed check to rule.check.
func checkOf[T any](fn func(ctx context.Context, a *authorizer, p *auth.Principal, req T) error) func(context.Context, *authorizer, *auth.Principal, any) error {
	return func(ctx context.Context, a *authorizer, p *auth.Principal, req any) error {
		r, ok := req.(T)
		if !ok {
			return errors.New("authorization: unexpected request type")
		}
		return fn(ctx, a, p, r)
	}
}

// Full method names of the services; rules is checked against the
// service descriptors in a test, and a method without a rule is refused.
const (
	registrySvc = "/tasker.v1.RegistryService/"
	taskSvc     = "/tasker.v1.TaskService/"
	stepSvc     = "/tasker.v1.StepService/"
	eventSvc    = "/tasker.v1.EventService/"
)

// rules maps every tasker.v1 RPC to what it needs. Keep SECURITY.md's
// table in step with it.
var rules = map[string]rule{
	registrySvc + "RegisterTaskTemplate": {scope: auth.TemplatesWrite, check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.RegisterTaskTemplateRequest) error {
		return a.namespace(p, auth.TemplatesWrite, r.GetTemplate().GetNamespace())
	})},
	registrySvc + "GetTaskTemplate": {scope: auth.TemplatesRead, check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.GetTaskTemplateRequest) error {
		return a.namespace(p, auth.TemplatesRead, r.GetNamespace())
	})},
	registrySvc + "ListTaskTemplates": {scope: auth.TemplatesRead, check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ListTaskTemplatesRequest) error {
		return a.filter(p, auth.TemplatesRead, r.GetNamespace())
	})},
	registrySvc + "ListNamespaces": {scope: auth.TemplatesRead, after: func(_ *authorizer, p *auth.Principal, resp any) {
		// Filtered after paging: a page may hold fewer namespaces than
		// asked for, which the contract allows; next_page_token still
		// leads through the rest.
		r, ok := resp.(*taskerv1.ListNamespacesResponse)
		if !ok || p.AllNamespaces() {
			return
		}
		kept := r.Namespaces[:0]
		for _, ns := range r.Namespaces {
			if p.Allows(ns.GetName()) {
				kept = append(kept, ns)
			}
		}
		r.Namespaces = kept
	}},
	registrySvc + "ListHandlers": {scope: auth.TemplatesRead, check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ListHandlersRequest) error {
		return a.filter(p, auth.TemplatesRead, r.GetNamespace())
	})},

	taskSvc + "CreateTask": {scope: auth.TasksWrite, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.CreateTaskRequest) error {
		if err := a.namespace(p, auth.TasksWrite, r.GetNamespace()); err != nil {
			return err
		}
		return a.task(ctx, p, auth.TasksWrite, r.GetParentTaskId())
	})},
	taskSvc + "BatchCreateTasks": {scope: auth.TasksWrite, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.BatchCreateTasksRequest) error {
		for _, t := range r.GetTasks() {
			if err := a.namespace(p, auth.TasksWrite, t.GetNamespace()); err != nil {
				return err
			}
			if err := a.task(ctx, p, auth.TasksWrite, t.GetParentTaskId()); err != nil {
				return err
			}
		}
		return nil
	})},
	taskSvc + "GetTask":      taskRule(auth.TasksRead, (*taskerv1.GetTaskRequest).GetId),
	taskSvc + "GetTaskGraph": taskRule(auth.TasksRead, (*taskerv1.GetTaskGraphRequest).GetId),
	taskSvc + "ListTasks": {scope: auth.TasksRead, check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ListTasksRequest) error {
		return a.filter(p, auth.TasksRead, r.GetNamespace())
	})},
	taskSvc + "GetTaskStats": {scope: auth.TasksRead, check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.GetTaskStatsRequest) error {
		return a.namespace(p, auth.TasksRead, r.GetNamespace())
	})},
	taskSvc + "CancelTask":  taskRule(auth.TasksOperate, (*taskerv1.CancelTaskRequest).GetId),
	taskSvc + "RetryTask":   taskRule(auth.TasksOperate, (*taskerv1.RetryTaskRequest).GetId),
	taskSvc + "ResolveTask": taskRule(auth.TasksOperate, (*taskerv1.ResolveTaskRequest).GetId),

	stepSvc + "GetStep": stepRule(auth.StepsRead, (*taskerv1.GetStepRequest).GetId),
	stepSvc + "ListSteps": {scope: auth.StepsRead, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ListStepsRequest) error {
		if r.GetTaskId() != "" {
			if err := a.task(ctx, p, auth.StepsRead, r.GetTaskId()); err != nil {
				return err
			}
			if r.GetNamespace() == "" {
				return nil
			}
		}
		return a.filter(p, auth.StepsRead, r.GetNamespace())
	})},
	stepSvc + "RetryStep":   stepRule(auth.StepsOperate, (*taskerv1.RetryStepRequest).GetId),
	stepSvc + "ResolveStep": stepRule(auth.StepsOperate, (*taskerv1.ResolveStepRequest).GetId),
	stepSvc + "CancelStep":  stepRule(auth.StepsOperate, (*taskerv1.CancelStepRequest).GetId),
	stepSvc + "ClaimSteps": {
		scope: auth.StepsWork,
		check: checkOf(func(_ context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ClaimStepsRequest) error {
			for _, h := range r.GetHandlers() {
				if err := a.namespace(p, auth.StepsWork, h.GetNamespace()); err != nil {
					return err
				}
			}
			return nil
		}),
		after: func(a *authorizer, _ *auth.Principal, resp any) {
			// The worker reports on these steps next; knowing their
			// namespaces now spares a lookup per report.
			if r, ok := resp.(*taskerv1.ClaimStepsResponse); ok {
				for _, s := range r.GetSteps() {
					a.namespaces.RememberStep(s.GetStepId(), s.GetHandler().GetNamespace())
				}
			}
		},
	},
	stepSvc + "ExtendLease": {scope: auth.StepsWork, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ExtendLeaseRequest) error {
		for _, l := range r.GetLeases() {
			if err := a.step(ctx, p, auth.StepsWork, l.GetStepId()); err != nil {
				return err
			}
		}
		return nil
	})},
	stepSvc + "CompleteStep": stepRule(auth.StepsWork, (*taskerv1.CompleteStepRequest).GetStepId),
	stepSvc + "FailStep":     stepRule(auth.StepsWork, (*taskerv1.FailStepRequest).GetStepId),
	stepSvc + "ReleaseStep":  stepRule(auth.StepsWork, (*taskerv1.ReleaseStepRequest).GetStepId),
	stepSvc + "BatchCompleteSteps": {scope: auth.StepsWork, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.BatchCompleteStepsRequest) error {
		for _, c := range r.GetCompletions() {
			if err := a.step(ctx, p, auth.StepsWork, c.GetStepId()); err != nil {
				return err
			}
		}
		return nil
	})},
	stepSvc + "BatchFailSteps": {scope: auth.StepsWork, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.BatchFailStepsRequest) error {
		for _, f := range r.GetFailures() {
			if err := a.step(ctx, p, auth.StepsWork, f.GetStepId()); err != nil {
				return err
			}
		}
		return nil
	})},

	eventSvc + "Subscribe": {scope: auth.EventsRead, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.SubscribeRequest) error {
		return a.eventFilter(ctx, p, r.GetFilter())
	})},
	eventSvc + "ListEvents": {scope: auth.EventsRead, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.ListEventsRequest) error {
		return a.eventFilter(ctx, p, r.GetFilter())
	})},
	eventSvc + "PublishEvent": {scope: auth.EventsPublish, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r *taskerv1.PublishEventRequest) error {
		if r.GetTaskId() == "" && r.GetStepId() == "" {
			// An event of no task belongs to no namespace: only a token
			// for every namespace may publish one.
			return a.filter(p, auth.EventsPublish, "")
		}
		if err := a.task(ctx, p, auth.EventsPublish, r.GetTaskId()); err != nil {
			return err
		}
		return a.step(ctx, p, auth.EventsPublish, r.GetStepId())
	})},
	eventSvc + "ListEventTypes": {scope: auth.EventsRead},
}

// taskRule is the rule of a call on one task, named by id.
func taskRule[T any](scope auth.Scope, id func(T) string) rule {
	return rule{scope: scope, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r T) error {
		return a.task(ctx, p, scope, id(r))
	})}
}

// stepRule is the rule of a call on one step, named by id.
func stepRule[T any](scope auth.Scope, id func(T) string) rule {
	return rule{scope: scope, check: checkOf(func(ctx context.Context, a *authorizer, p *auth.Principal, r T) error {
		return a.step(ctx, p, scope, id(r))
	})}
}

// publicMethod reports the calls that need no token: health, so load
// balancers and orchestrators can probe, and reflection, which reveals
// only the public contract.
func publicMethod(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// authorizer authenticates every call by its bearer token and checks it
// against rules.
type authorizer struct {
	log        *slog.Logger
	authn      *auth.Authenticator
	namespaces *auth.Namespaces
	// limits is the per-token rate limit; nil for none.
	limits *rateLimits
}

// authenticate returns the principal of the call and its method's rule;
// nil for a public method.
func (a *authorizer) authenticate(ctx context.Context, method string) (*auth.Principal, rule, error) {
	if publicMethod(method) {
		return nil, rule{}, nil
	}
	secret, err := bearer(ctx)
	if err != nil {
		return nil, rule{}, err
	}
	p, err := a.authn.Authenticate(ctx, secret)
	if errors.Is(err, auth.ErrInvalidToken) {
		return nil, rule{}, fault.Unauthenticatedf("%s", strings.ReplaceAll(err.Error(), "\n", ": "))
	}
	if err != nil {
		return nil, rule{}, err
	}
	r, ok := rules[method]
	if !ok {
		// Fail closed: a method added without a rule is refused, never
		// open.
		return nil, rule{}, &fault.Error{Code: fault.PermissionDenied, Reason: fault.ReasonScopeMissing,
			Message: method + " has no authorization rule"}
	}
	if !p.Has(r.scope) {
		return nil, rule{}, fault.ScopeMissing(method, string(r.scope))
	}
	if a.limits != nil {
		if err := a.limits.allow(p.Name, time.Now()); err != nil {
			return nil, rule{}, err
		}
	}
	return p, r, nil
}

// bearer returns the secret of the authorization header.
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", fault.Unauthenticatedf("this server needs a token: send the header \"authorization: Bearer <token>\" (tasker --token, TASKER_TOKEN)")
	}
	scheme, secret, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(secret) == "" {
		return "", fault.Unauthenticatedf("the authorization header must be \"Bearer <token>\"")
	}
	return strings.TrimSpace(secret), nil
}

// namespace denies ns unless p may use it. An empty ns is left to the
// call's own validation, which refuses it.
func (a *authorizer) namespace(p *auth.Principal, scope auth.Scope, ns string) error {
	if ns == "" || p.Allows(ns) {
		return nil
	}
	return fault.NamespaceDenied(string(scope), ns, "this token may not use namespace %q", fault.Clip(ns))
}

// filter checks the namespace filter of a list call: a token limited to
// namespaces must name one of them, so nothing of another namespace is
// ever read. Requiring the filter keeps paging exact, where filtering
// results after paging would not.
func (a *authorizer) filter(p *auth.Principal, scope auth.Scope, ns string) error {
	if ns == "" {
		if p.AllNamespaces() {
			return nil
		}
		return fault.NamespaceDenied(string(scope), "",
			"this token is limited to namespaces %s: filter by one of them", strings.Join(p.Namespaces(), ", "))
	}
	return a.namespace(p, scope, ns)
}

// eventFilter checks an event filter: its namespace, or its task's.
func (a *authorizer) eventFilter(ctx context.Context, p *auth.Principal, f *taskerv1.EventFilter) error {
	if f.GetTaskId() != "" {
		if err := a.task(ctx, p, auth.EventsRead, f.GetTaskId()); err != nil {
			return err
		}
		if f.GetNamespace() == "" {
			return nil
		}
	}
	return a.filter(p, auth.EventsRead, f.GetNamespace())
}

// task checks the namespace of task id. An id that is malformed or
// unknown passes, and the call reports it.
func (a *authorizer) task(ctx context.Context, p *auth.Principal, scope auth.Scope, id string) error {
	if id == "" || p.AllNamespaces() {
		return nil
	}
	ns, ok, err := a.namespaces.OfTask(ctx, id)
	if err != nil || !ok {
		return err
	}
	return a.namespace(p, scope, ns)
}

// step checks the namespace of step id, like task.
func (a *authorizer) step(ctx context.Context, p *auth.Principal, scope auth.Scope, id string) error {
	if id == "" || p.AllNamespaces() {
		return nil
	}
	ns, ok, err := a.namespaces.OfStep(ctx, id)
	if err != nil || !ok {
		return err
	}
	return a.namespace(p, scope, ns)
}

func (a *authorizer) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	p, r, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return handler(ctx, req)
	}
	if r.check != nil {
		if err := r.check(ctx, a, p, req); err != nil {
			return nil, err
		}
	}
	ctx = auth.WithPrincipal(ctx, p)
	resp, err := handler(ctx, req)
	if err == nil && r.after != nil {
		r.after(a, p, resp)
	}
	return resp, err
}

func (a *authorizer) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	p, r, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if p == nil {
		return handler(srv, ss)
	}
	wrapped := grpcmw.WrapServerStream(ss)
	wrapped.WrappedContext = auth.WithPrincipal(ss.Context(), p)
	// The request of a server stream arrives with the first RecvMsg, so
	// that is where its namespaces are checked.
	return handler(srv, &checkedStream{WrappedServerStream: wrapped, a: a, p: p, r: r})
}

// checkedStream checks each request received against the rule before
// the handler sees it.
type checkedStream struct {
	*grpcmw.WrappedServerStream
	a *authorizer
	p *auth.Principal
	r rule
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.WrappedServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.r.check == nil {
		return nil
	}
	return s.r.check(s.Context(), s.a, s.p, m)
}
