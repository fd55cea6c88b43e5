package engine

import (
	"context"
	"time"

	"entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/sqljson"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/predicate"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/stepdependency"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/page"
)

// ExecutionStatus says at a glance why a task is where it is.
type ExecutionStatus int

// The execution statuses, in the contract's order.
const (
	StatusHasReadySteps ExecutionStatus = iota + 1
	StatusProcessing
	StatusWaitingForRetry
	StatusBlockedByFailures
	StatusComplete
	StatusScheduled
)

// TaskView is a task with what an operator needs to read it: step counts by
// state and, from GetTask, the steps and their dependencies.
type TaskView struct {
	Task *Task
	// Counts holds the number of steps in each state.
	Counts map[StepState]int
	// Due counts enqueued steps whose available_at has passed.
	Due int
	// Steps in declaration order (GetTask only).
	Steps []*Step
	// DependsOn maps a step id to its parents' names (GetTask only).
	DependsOn map[uuid.UUID][]string
}

// Total is the number of steps.
func (v *TaskView) Total() int {
	n := 0
	for _, c := range v.Counts {
		n += c
	}
	return n
}

// CompletionPercentage is the share of steps complete or resolved manually.
func (v *TaskView) CompletionPercentage() float64 {
	total := v.Total()
	if total == 0 {
		return 0
	}
	return float64(v.Counts[StepComplete]+v.Counts[StepResolvedManually]) * 100 / float64(total)
}

// ExecutionStatus derives the status from the task state and step counts.
// A failure blocks the task as soon as it happens, even while independent
// branches still run to the end. A task that ended with steps never done
// (cancelled, or resolved manually from error) stays blocked rather than
// complete, so the status agrees with its step counts.
func (v *TaskView) ExecutionStatus() ExecutionStatus {
	switch v.Task.State {
	case TaskComplete:
		return StatusComplete
	case TaskCancelled, TaskResolvedManually:
		if v.Counts[StepComplete]+v.Counts[StepResolvedManually] == v.Total() {
			return StatusComplete
		}
		return StatusBlockedByFailures
	case TaskError:
		return StatusBlockedByFailures
	}
	switch {
	case v.Counts[StepError]+v.Counts[StepCancelled] > 0:
		return StatusBlockedByFailures
	case v.Due > 0:
		return StatusHasReadySteps
	case v.Counts[StepInProgress] > 0:
		return StatusProcessing
	case v.Counts[StepWaitingForRetry] > 0:
		return StatusWaitingForRetry
	case v.Counts[StepEnqueued] > 0:
		// Enqueued but not due: only root steps are ever enqueued for
		// later, at the task's run_at (every other move into enqueued
		// makes a step due at once).
		return StatusScheduled
	default:
		return StatusProcessing
	}
}

func parseID(field, id string) (uuid.UUID, error) {
	if id == "" {
		return uuid.Nil, fault.Invalid(field, "is required")
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, fault.Invalid(field, "is not a UUID")
	}
	return u, nil
}

// GetTask returns a task with its steps and their dependencies.
func (e *Engine) GetTask(ctx context.Context, id string) (*TaskView, error) {
	tid, err := parseID("id", id)
	if err != nil {
		return nil, err
	}
	r := e.db.Reader
	t, err := r.Task.Get(ctx, tid)
	if ent.IsNotFound(err) {
		return nil, fault.NotFoundf("task", id)
	}
	if err != nil {
		return nil, err
	}
	steps, err := r.Step.Query().Where(step.TaskID(tid)).Order(ent.Asc(step.FieldPosition)).All(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[uuid.UUID]string, len(steps))
	ids := make([]uuid.UUID, 0, len(steps))
	for _, s := range steps {
		names[s.ID] = s.Name
		ids = append(ids, s.ID)
	}
	deps, err := r.StepDependency.Query().Where(stepdependency.ChildIDIn(ids...)).All(ctx)
	if err != nil {
		return nil, err
	}
	dependsOn := make(map[uuid.UUID][]string, len(steps))
	for _, d := range deps {
		dependsOn[d.ChildID] = append(dependsOn[d.ChildID], names[d.ParentID])
	}
	// Parents in declaration order, whatever order the join table returns.
	position := make(map[string]int, len(steps))
	for _, s := range steps {
		position[s.Name] = s.Position
	}
	for _, ps := range dependsOn {
		sortByPosition(ps, position)
	}
	v := &TaskView{Task: taskFromRow(t), Counts: map[StepState]int{}, Steps: stepsFromRows(steps), DependsOn: dependsOn}
	now := e.now()
	for _, s := range steps {
		v.Counts[StepState(s.State)]++
		if s.State == step.StateEnqueued && s.AvailableAt != nil && !s.AvailableAt.After(now) {
			v.Due++
		}
	}
	return v, nil
}

func sortByPosition(names []string, position map[string]int) {
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && position[names[j]] < position[names[j-1]]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

// ListTasksParams filters and pages ListTasks.
type ListTasksParams struct {
	Namespace     string
	TemplateName  string
	States        []TaskState
	Tags          map[string]string
	CreatedFrom   *time.Time
	CreatedTo     *time.Time
	CorrelationID string
	ParentTaskID  string
	PageSize      int32
	PageToken     string
	// MaxBytes, with Size, bounds the page by size as well as count: tasks
	// are kept while their sizes sum to at most MaxBytes, and the first
	// always is. 0 (or a nil Size) bounds by count only.
	MaxBytes int
	Size     func(*TaskView) int
}

// listChunk is how many rows a size-bounded listing reads at a time, so a
// page cut by MaxBytes holds at most this many rows beyond it in memory.
const listChunk = 64

// readPage fills one page of at most size items, reading them listChunk at
// a time through read (at most n items after last, or from the page's
// start when first) while their sizes sum to at most maxBytes; the first
// item always fits, so a listing progresses. more tells whether items
// follow the page. With maxBytes 0 or a nil sizeOf, it reads the page in one
// go and bounds it by count only.
func readPage[T any](size, maxBytes int, sizeOf func(T) int, read func(last T, first bool, n int) ([]T, error)) (items []T, more bool, err error) {
	bySize := maxBytes > 0 && sizeOf != nil
	chunk := size
	if bySize {
		chunk = min(size, listChunk)
	}
	total := 0
	for {
		want := min(chunk, size-len(items))
		var last T
		if len(items) > 0 {
			last = items[len(items)-1]
		}
		got, err := read(last, len(items) == 0, want+1)
		if err != nil {
			return nil, false, err
		}
		more = len(got) > want
		if more {
			got = got[:want]
		}
		for _, it := range got {
			if bySize {
				total += sizeOf(it)
				if total > maxBytes && len(items) > 0 {
					return items, true, nil
				}
			}
			items = append(items, it)
		}
		if !more || len(items) == size {
			return items, more, nil
		}
	}
}

// ListTasks returns one page of tasks, newest first, with step counts.
func (e *Engine) ListTasks(ctx context.Context, p ListTasksParams) ([]*TaskView, string, error) {
	size, err := page.Size("page_size", p.PageSize, 50, 500)
	if err != nil {
		return nil, "", err
	}
	var preds []predicate.Task
	if p.Namespace != "" {
		preds = append(preds, task.Namespace(p.Namespace))
	}
	if p.TemplateName != "" {
		preds = append(preds, task.TemplateName(p.TemplateName))
	}
	states, err := taskStateRows("states", p.States)
	if err != nil {
		return nil, "", err
	}
	if len(states) > 0 {
		preds = append(preds, task.StateIn(states...))
	}
	for k, v := range p.Tags {
		preds = append(preds, func(s *sql.Selector) {
			s.Where(sqljson.ValueEQ(task.FieldTags, v, sqljson.Path(k)))
		})
	}
	if p.CreatedFrom != nil {
		preds = append(preds, task.CreatedAtGTE(*p.CreatedFrom))
	}
	if p.CreatedTo != nil {
		preds = append(preds, task.CreatedAtLT(*p.CreatedTo))
	}
	if p.CorrelationID != "" {
		preds = append(preds, task.CorrelationID(p.CorrelationID))
	}
	if p.ParentTaskID != "" {
		parent, err := parseID("parent_task_id", p.ParentTaskID)
		if err != nil {
			return nil, "", err
		}
		preds = append(preds, task.ParentTaskID(parent))
	}
	fp := page.Fingerprint(p.Namespace, p.TemplateName, states, p.Tags, p.CreatedFrom, p.CreatedTo, p.CorrelationID, p.ParentTaskID)
	var after uuid.UUID
	ok, err := page.Decode("page_token", p.PageToken, fp, &after)
	if err != nil {
		return nil, "", err
	}
	views, more, err := readPage(size, p.MaxBytes, p.Size, func(last *TaskView, first bool, n int) ([]*TaskView, error) {
		q := e.db.Reader.Task.Query().Where(preds...)
		switch {
		case !first:
			q = q.Where(task.IDLT(last.Task.ID))
		case ok:
			// Ids are UUIDv7: id order is creation order.
			q = q.Where(task.IDLT(after))
		}
		tasks, err := q.Order(ent.Desc(task.FieldID)).Limit(n).All(ctx)
		if err != nil {
			return nil, err
		}
		return e.summarize(ctx, tasks)
	})
	if err != nil {
		return nil, "", err
	}
	var next string
	if more {
		next = page.Encode(fp, views[len(views)-1].Task.ID)
	}
	return views, next, nil
}

// summarize counts the steps of tasks by state in one grouped query.
func (e *Engine) summarize(ctx context.Context, tasks []*ent.Task) ([]*TaskView, error) {
	views := make([]*TaskView, len(tasks))
	byID := make(map[uuid.UUID]*TaskView, len(tasks))
	ids := make([]uuid.UUID, len(tasks))
	for i, t := range tasks {
		views[i] = &TaskView{Task: taskFromRow(t), Counts: map[StepState]int{}}
		byID[t.ID] = views[i]
		ids[i] = t.ID
	}
	if len(tasks) == 0 {
		return views, nil
	}
	var rows []struct {
		TaskID uuid.UUID  `json:"task_id"`
		State  step.State `json:"state"`
		Count  int        `json:"count"`
	}
	err := e.db.Reader.Step.Query().
		Where(step.TaskIDIn(ids...)).
		GroupBy(step.FieldTaskID, step.FieldState).
		Aggregate(ent.Count()).
		Scan(ctx, &rows)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		byID[r.TaskID].Counts[StepState(r.State)] = r.Count
	}
	var due []struct {
		TaskID uuid.UUID `json:"task_id"`
		Count  int       `json:"count"`
	}
	err = e.db.Reader.Step.Query().
		Where(step.TaskIDIn(ids...), step.StateEQ(step.StateEnqueued), step.AvailableAtLTE(e.now())).
		GroupBy(step.FieldTaskID).
		Aggregate(ent.Count()).
		Scan(ctx, &due)
	if err != nil {
		return nil, err
	}
	for _, r := range due {
		byID[r.TaskID].Due = r.Count
	}
	return views, nil
}
