package engine

import (
	"context"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/predicate"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/stepdependency"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/page"
)

// GetStep returns a step in full with its parents' names and its task's
// correlation id.
func (e *Engine) GetStep(ctx context.Context, id string) (*Step, []string, string, error) {
	sid, err := parseID("id", id)
	if err != nil {
		return nil, nil, "", err
	}
	r := e.db.Reader
	s, err := r.Step.Get(ctx, sid)
	if ent.IsNotFound(err) {
		return nil, nil, "", fault.NotFoundf("step", id)
	}
	if err != nil {
		return nil, nil, "", err
	}
	parents, err := r.Step.Query().
		// The task's steps first (an index range), then the correlated
		// EXISTS of HasChildEdgesWith on those rows only.
		Where(step.TaskID(s.TaskID), step.HasChildEdgesWith(stepdependency.ChildID(sid))).
		Order(ent.Asc(step.FieldPosition)).
		Select(step.FieldName).
		Strings(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	t, err := r.Task.Query().Where(task.ID(s.TaskID)).Select(task.FieldCorrelationID).Only(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	return stepFromRow(s), parents, t.CorrelationID, nil
}

// ListStepsParams filters and pages ListSteps.
type ListStepsParams struct {
	TaskID    string
	States    []StepState
	Namespace string
	Handler   string
	PageSize  int32
	PageToken string
	// MaxBytes and Size bound the page by size as ListTasksParams's do.
	MaxBytes int
	Size     func(*Step) int
}

// ListSteps returns one page of steps: a task's in declaration order, or
// across tasks oldest first.
func (e *Engine) ListSteps(ctx context.Context, p ListStepsParams) ([]*Step, string, error) {
	size, err := page.Size("page_size", p.PageSize, 50, 500)
	if err != nil {
		return nil, "", err
	}
	var preds []predicate.Step
	if p.TaskID != "" {
		tid, err := parseID("task_id", p.TaskID)
		if err != nil {
			return nil, "", err
		}
		preds = append(preds, step.TaskID(tid))
	}
	states, err := stepStateRows("states", p.States)
	if err != nil {
		return nil, "", err
	}
	if len(states) > 0 {
		preds = append(preds, step.StateIn(states...))
	}
	if p.Namespace != "" {
		preds = append(preds, step.Namespace(p.Namespace))
	}
	if p.Handler != "" {
		preds = append(preds, step.Handler(p.Handler))
	}
	fp := page.Fingerprint(p.TaskID, states, p.Namespace, p.Handler)
	// Within a task, steps are ordered by declaration; across tasks by id,
	// which is creation order (UUIDv7).
	type cursor struct {
		Position int       `json:"p"`
		ID       uuid.UUID `json:"i"`
	}
	var after cursor
	ok, err := page.Decode("page_token", p.PageToken, fp, &after)
	if err != nil {
		return nil, "", err
	}
	type item struct {
		row  *ent.Step
		step *Step
	}
	var sizeOf func(item) int
	if p.Size != nil {
		sizeOf = func(it item) int { return p.Size(it.step) }
	}
	items, more, err := readPage(size, p.MaxBytes, sizeOf, func(last item, first bool, n int) ([]item, error) {
		from, has := after, ok
		if !first {
			from, has = cursor{Position: last.row.Position, ID: last.row.ID}, true
		}
		q := e.db.Reader.Step.Query().Where(preds...)
		if p.TaskID != "" {
			if has {
				q = q.Where(step.PositionGT(from.Position))
			}
			q = q.Order(ent.Asc(step.FieldPosition))
		} else {
			if has {
				q = q.Where(step.IDGT(from.ID))
			}
			q = q.Order(ent.Asc(step.FieldID))
		}
		rows, err := q.Limit(n).All(ctx)
		if err != nil {
			return nil, err
		}
		steps := stepsFromRows(rows)
		out := make([]item, len(rows))
		for i := range rows {
			out[i] = item{rows[i], steps[i]}
		}
		return out, nil
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]*Step, len(items))
	for i, it := range items {
		out[i] = it.step
	}
	var next string
	if more {
		last := items[len(items)-1].row
		next = page.Encode(fp, cursor{Position: last.Position, ID: last.ID})
	}
	return out, next, nil
}
