package server

import (
	"context"
	"time"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// taskService implements tasker.v1.TaskService over the engine. The operator
// RPCs (cancel, retry, resolve, graph) come with engine operations and answer
// Unimplemented until then.
type taskService struct {
	taskerv1.UnimplementedTaskServiceServer
	engine *engine.Engine
	errs   *errorMapper
}

// createParams turns a CreateTaskRequest into the engine's parameters,
// with the call's correlation id and trace context.
func createParams(ctx context.Context, req *taskerv1.CreateTaskRequest) (engine.CreateTaskParams, error) {
	var runAt *time.Time
	if req.GetRunAt() != nil {
		if err := req.GetRunAt().CheckValid(); err != nil {
			return engine.CreateTaskParams{}, fault.Invalid("run_at", "is not a valid timestamp: %v", err)
		}
		t := req.GetRunAt().AsTime()
		runAt = &t
	}
	return engine.CreateTaskParams{
		Namespace:      req.GetNamespace(),
		Name:           req.GetName(),
		Version:        req.GetVersion(),
		Context:        req.GetContext().AsMap(),
		Initiator:      req.GetInitiator(),
		SourceSystem:   req.GetSourceSystem(),
		Reason:         req.GetReason(),
		Tags:           req.GetTags(),
		Priority:       req.GetPriority(),
		RunAt:          runAt,
		IdempotencyKey: req.GetIdempotencyKey(),
		ParentTaskID:   req.GetParentTaskId(),
		CorrelationID:  correlation.FromContext(ctx),
		TraceParent:    traceParent(ctx),
	}, nil
}

func (s *taskService) CreateTask(ctx context.Context, req *taskerv1.CreateTaskRequest) (*taskerv1.CreateTaskResponse, error) {
	p, err := createParams(ctx, req)
	if err != nil {
		return nil, err
	}
	view, duplicate, err := s.engine.CreateTask(ctx, p)
	if err != nil {
		return nil, err
	}
	return &taskerv1.CreateTaskResponse{Task: taskToProto(view), Duplicate: duplicate}, nil
}

func (s *taskService) BatchCreateTasks(ctx context.Context, req *taskerv1.BatchCreateTasksRequest) (*taskerv1.BatchCreateTasksResponse, error) {
	if n := len(req.GetTasks()); n == 0 || n > maxBatch {
		return nil, fault.Invalid("tasks", "must hold 1 to %d entries", maxBatch)
	}
	// One transaction for the whole batch, each entry with its own
	// outcome; an entry refused before it reaches the engine is left out.
	resp := &taskerv1.BatchCreateTasksResponse{Outcomes: make([]*taskerv1.CreateTaskOutcome, len(req.GetTasks()))}
	ps := make([]engine.CreateTaskParams, 0, len(req.GetTasks()))
	at := make([]int, 0, len(req.GetTasks()))
	for i, r := range req.GetTasks() {
		p, err := createParams(ctx, r)
		if err != nil {
			resp.Outcomes[i] = &taskerv1.CreateTaskOutcome{Result: s.errs.entryResult(ctx, "BatchCreateTasks", err)}
			continue
		}
		ps = append(ps, p)
		at = append(at, i)
	}
	for k, c := range s.engine.CreateTasks(ctx, ps) {
		o := &taskerv1.CreateTaskOutcome{Result: s.errs.entryResult(ctx, "BatchCreateTasks", c.Err)}
		if c.Err == nil {
			// No steps, and no context, which is the entry's own: the
			// response stays small whatever the request held, and the
			// context is not converted only to be dropped.
			t := *c.Task.Task
			t.Context = nil
			o.Task, o.Duplicate = taskToProto(&engine.TaskView{Task: &t, Counts: c.Task.Counts, Due: c.Task.Due}), c.Duplicate
		}
		resp.Outcomes[at[k]] = o
	}
	return resp, nil
}

func (s *taskService) GetTask(ctx context.Context, req *taskerv1.GetTaskRequest) (*taskerv1.GetTaskResponse, error) {
	view, err := s.engine.GetTask(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &taskerv1.GetTaskResponse{Task: taskToProto(view)}, nil
}

func (s *taskService) ListTasks(ctx context.Context, req *taskerv1.ListTasksRequest) (*taskerv1.ListTasksResponse, error) {
	p := engine.ListTasksParams{
		Namespace:     req.GetNamespace(),
		TemplateName:  req.GetTemplateName(),
		Tags:          req.GetTags(),
		CorrelationID: req.GetCorrelationId(),
		ParentTaskID:  req.GetParentTaskId(),
		PageSize:      req.GetPageSize(),
		PageToken:     req.GetPageToken(),
	}
	for i, st := range req.GetStates() {
		state, ok := taskStatesFromProto[st]
		if !ok {
			return nil, fault.Invalid(indexed("states", i), "is not a task state: %v", st)
		}
		p.States = append(p.States, state)
	}
	if ts := req.GetCreateTimeFrom(); ts != nil {
		t := ts.AsTime()
		p.CreatedFrom = &t
	}
	if ts := req.GetCreateTimeTo(); ts != nil {
		t := ts.AsTime()
		p.CreatedTo = &t
	}
	converted := map[*engine.TaskView]*taskerv1.Task{}
	p.MaxBytes, p.Size = maxPageBytes, func(v *engine.TaskView) int {
		converted[v] = taskToProto(v)
		return itemSize(converted[v])
	}
	views, next, err := s.engine.ListTasks(ctx, p)
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.ListTasksResponse{NextPageToken: next}
	for _, v := range views {
		resp.Tasks = append(resp.Tasks, converted[v])
	}
	return resp, nil
}

var taskStatesFromProto = func() map[taskerv1.TaskState]engine.TaskState {
	m := make(map[taskerv1.TaskState]engine.TaskState, len(taskStatesToProto))
	for k, v := range taskStatesToProto {
		m[v] = k
	}
	return m
}()

func (s *taskService) CancelTask(ctx context.Context, req *taskerv1.CancelTaskRequest) (*taskerv1.CancelTaskResponse, error) {
	v, err := s.engine.CancelTask(ctx, engine.TaskOp{TaskID: req.GetId(), Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &taskerv1.CancelTaskResponse{Task: taskToProto(v)}, nil
}

func (s *taskService) RetryTask(ctx context.Context, req *taskerv1.RetryTaskRequest) (*taskerv1.RetryTaskResponse, error) {
	v, err := s.engine.RetryTask(ctx, engine.TaskOp{TaskID: req.GetId(), Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &taskerv1.RetryTaskResponse{Task: taskToProto(v)}, nil
}

func (s *taskService) ResolveTask(ctx context.Context, req *taskerv1.ResolveTaskRequest) (*taskerv1.ResolveTaskResponse, error) {
	v, err := s.engine.ResolveTask(ctx, engine.TaskOp{TaskID: req.GetId(), Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &taskerv1.ResolveTaskResponse{Task: taskToProto(v)}, nil
}

func (s *taskService) GetTaskGraph(ctx context.Context, req *taskerv1.GetTaskGraphRequest) (*taskerv1.GetTaskGraphResponse, error) {
	v, err := s.engine.GetTask(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	resp := &taskerv1.GetTaskGraphResponse{TaskId: v.Task.ID.String(), Dot: v.DOT(), Mermaid: v.Mermaid()}
	for _, st := range v.Steps {
		resp.Nodes = append(resp.Nodes, &taskerv1.GraphNode{
			StepId: st.ID.String(), Name: st.Name, Handler: st.Handler, State: stepStatesToProto[st.State],
			Attempts: count(st.Attempts), MaxAttempts: count(st.AttemptBudget),
		})
	}
	for _, e := range v.Edges() {
		resp.Edges = append(resp.Edges, &taskerv1.GraphEdge{Parent: e.Parent, Child: e.Child})
	}
	return resp, nil
}
