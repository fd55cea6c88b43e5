package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/predicate"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/ent/tasktransition"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
)

// change collects what one transaction does to one task: its guarded
// updates run at once, while transition rows and events are buffered and
// written together by flush, before the commit.
type change struct {
	e    *Engine
	tx   *ent.Tx
	task *ent.Task
	now  time.Time

	stepTransitions [][]any
	taskTransitions [][]any
	evs             []events.Event
	// ready counts the steps of each handler that became claimable (or
	// were scheduled for a retry), to wake that many claimers after the
	// commit.
	ready map[HandlerRef]int
	// obs are the observations reported to the Recorder after the commit.
	obs []Observation
}

// lockTask reads the task and, on PostgreSQL, locks its row. Every
// transaction that changes a task's steps starts here (or takes the same
// lock in claims, see doc.go), which serialises them per task: two parents
// completing at once cannot both miss the other (DESIGN §5), finalization
// sees every committed step, and a step read after the lock is the state
// the next guarded update leaves.
func (e *Engine) lockTask(ctx context.Context, tx *ent.Tx, id uuid.UUID) (*change, error) {
	q := tx.Task.Query().Where(task.ID(id), func(s *sql.Selector) { e.db.SQL().LockForWrite(s) })
	t, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		return nil, fault.NotFoundf("task", id.String())
	}
	if err != nil {
		return nil, err
	}
	return &change{e: e, tx: tx, task: t, now: e.now()}, nil
}

// moveStep applies m to s with a guarded update (state in m.From, plus
// guards), then buffers the transition and the event. It returns false when
// the guard did not match: the step changed since it was read.
//
// It clears claimed_by, which names the worker holding the current lease:
// a claim (takeSteps) is the one move into in_progress and does not come
// through here, so every move here ends the lease, if any. Who ran each
// attempt stays in its step.claimed transition and event.
func (c *change) moveStep(ctx context.Context, s *ent.Step, m stepMove, reason string, payload map[string]any,
	set func(*ent.StepUpdate), guards ...predicate.Step,
) (bool, error) {
	u := c.tx.Step.Update().
		Where(append([]predicate.Step{step.ID(s.ID), step.StateIn(m.From...)}, guards...)...).
		SetState(m.To).
		SetUpdatedAt(c.now).
		ClearClaimedBy()
	if stepFinished(m.To) {
		u.SetFinishedAt(c.now)
	} else {
		u.ClearFinishedAt()
	}
	if set != nil {
		set(u)
	}
	if err := keepClaimable(u.Mutation(), m.To); err != nil {
		return false, err
	}
	n, err := u.Save(ctx)
	if err != nil || n == 0 {
		return false, err
	}
	c.recordStep(s, s.State, m, reason, payload)
	s.State, s.ClaimedBy = m.To, nil
	return true, nil
}

// becameReady counts s among the steps to wake claimers for.
func (c *change) becameReady(s *ent.Step) {
	if c.ready == nil {
		c.ready = map[HandlerRef]int{}
	}
	c.ready[HandlerRef{Namespace: s.Namespace, Handler: s.Handler}]++
}

// claimableState reports the states a worker can claim a step from once it
// is due.
func claimableState(s step.State) bool {
	return s == step.StateEnqueued || s == step.StateWaitingForRetry
}

// keepClaimable keeps claimable_at in step with the state a move sets: the
// due time in a claimable state, NULL in any other, so that the claim index
// holds exactly the claimable steps. A move into a claimable state must set
// available_at.
func keepClaimable(m *ent.StepMutation, to step.State) error {
	if !claimableState(to) {
		m.ClearClaimableAt()
		return nil
	}
	due, ok := m.AvailableAt()
	if !ok {
		return fmt.Errorf("step move to %s without available_at", to)
	}
	m.SetClaimableAt(due)
	return nil
}

// recordStep buffers the transition row and event of a step move that was
// already applied.
func (c *change) recordStep(s *ent.Step, from step.State, m stepMove, reason string, payload map[string]any) {
	c.observeStep(s, from, m, reason)
	attempt := s.Attempts
	c.stepTransitions = append(c.stepTransitions,
		stepTransitionRow(s.ID, s.TaskID, string(from), string(m.To), reason, attempt, payload, c.now))
	p := map[string]any{"step_name": s.Name, "handler": s.Handler, "from_state": string(from), "attempt": attempt}
	if reason != "" {
		p["reason"] = reason
	}
	for k, v := range payload {
		p[k] = v
	}
	id := s.ID
	ev := taskEvent(c.task, m.Event, c.now, p)
	ev.StepID = &id
	c.evs = append(c.evs, ev)
	if m.To == step.StateEnqueued {
		c.becameReady(s)
	}
}

// moveTask applies m to the locked task; it does nothing when m does not
// leave from the task's state (callers check first where that is an error).
func (c *change) moveTask(ctx context.Context, m taskMove, reason string, payload map[string]any) error {
	if !m.allows(c.task.State) {
		return nil
	}
	u := c.tx.Task.Update().
		Where(task.ID(c.task.ID), task.StateIn(m.From...)).
		SetState(m.To).
		SetUpdatedAt(c.now)
	switch m.To {
	case task.StateInProgress:
		if c.task.StartedAt == nil {
			u.SetStartedAt(c.now)
		}
		u.ClearFinishedAt()
	case task.StateComplete, task.StateError, task.StateCancelled, task.StateResolvedManually:
		u.SetFinishedAt(c.now)
	}
	n, err := u.Save(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("task %s changed under its lock", c.task.ID)
	}
	c.recordTask(m, reason, payload)
	return nil
}

// recordTask buffers the transition row and event of a task move that was
// already applied, and moves the in-memory task.
func (c *change) recordTask(m taskMove, reason string, payload map[string]any) {
	c.taskTransitions = append(c.taskTransitions,
		taskTransitionRow(c.task.ID, string(c.task.State), string(m.To), reason, payload, c.now))
	p := map[string]any{"from_state": string(c.task.State)}
	if reason != "" {
		p["reason"] = reason
	}
	for k, v := range payload {
		p[k] = v
	}
	c.evs = append(c.evs, taskEvent(c.task, m.Event, c.now, p))
	c.observeTask(m)
	c.task.State = m.To
}

// flush writes the transitions and events buffered by cs, all in one
// insert per table whatever the number of changes.
func flush(ctx context.Context, tx *ent.Tx, cs ...*change) error {
	var (
		steps, tasks [][]any
		evs          []events.Event
	)
	for _, c := range cs {
		if c == nil {
			continue
		}
		steps = append(steps, c.stepTransitions...)
		tasks = append(tasks, c.taskTransitions...)
		evs = append(evs, c.evs...)
		c.stepTransitions, c.taskTransitions, c.evs = nil, nil, nil
	}
	d := cs[0].e.db.SQL()
	if err := insertTransitions(ctx, tx, d, steps, tasks); err != nil {
		return err
	}
	return events.Append(ctx, tx, d, evs...)
}

// The columns of transition rows, in the order stepTransitionRow and
// taskTransitionRow give their values.
var (
	stepTransitionColumns = []string{
		steptransition.FieldStepID, steptransition.FieldTaskID, steptransition.FieldFromState, steptransition.FieldToState,
		steptransition.FieldReason, steptransition.FieldAttempt, steptransition.FieldMetadata, steptransition.FieldCreatedAt,
	}
	taskTransitionColumns = []string{
		tasktransition.FieldTaskID, tasktransition.FieldFromState, tasktransition.FieldToState,
		tasktransition.FieldReason, tasktransition.FieldMetadata, tasktransition.FieldCreatedAt,
	}
)

func stepTransitionRow(stepID, taskID uuid.UUID, from, to, reason string, attempt int, metadata map[string]any, at time.Time) []any {
	return []any{stepID, taskID, from, to, reason, attempt, metadataJSON(metadata), at}
}

func taskTransitionRow(taskID uuid.UUID, from, to, reason string, metadata map[string]any, at time.Time) []any {
	return []any{taskID, from, to, reason, metadataJSON(metadata), at}
}

// metadataJSON is a transition's metadata column: NULL when there is none.
func metadataJSON(m map[string]any) any {
	if len(m) == 0 {
		return nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return raw
}

// insertTransitions writes transition rows with one INSERT per table (per
// chunk), without reading their ids back.
func insertTransitions(ctx context.Context, tx *ent.Tx, d storage.Dialect, steps, tasks [][]any) error {
	if err := storage.InsertRows(ctx, tx, d, steptransition.Table, stepTransitionColumns, steps); err != nil {
		return fmt.Errorf("write step transitions: %w", err)
	}
	if err := storage.InsertRows(ctx, tx, d, tasktransition.Table, taskTransitionColumns, tasks); err != nil {
		return fmt.Errorf("write task transitions: %w", err)
	}
	return nil
}

// settle moves children whose parents are now all done to enqueued, and
// finalizes the task when nothing can progress: complete when every step
// is done, error when some step failed or was cancelled and nothing runs.
// It runs after every change that finishes or revives a step.
func (c *change) settle(ctx context.Context, done []*ent.Step) error {
	for _, parent := range done {
		if err := c.enqueueChildren(ctx, parent); err != nil {
			return err
		}
	}
	if len(c.ready) > 0 && c.task.State == task.StateInProgress {
		// A step was just enqueued, so the task can neither complete nor
		// fail: skip counting its steps.
		return nil
	}
	return c.finalize(ctx)
}

// enqueueChildren decrements the pending-parent counter of parent's
// children and enqueues those that reach zero: one read and at most two
// updates, however many children there are.
func (c *change) enqueueChildren(ctx context.Context, parent *ent.Step) error {
	children, err := c.tx.Step.Query().
		Where(step.HasParentsWith(step.ID(parent.ID))).
		All(ctx)
	if err != nil || len(children) == 0 {
		return err
	}
	var ready []*ent.Step
	var waiting []uuid.UUID
	for _, ch := range children {
		if ch.State == step.StatePending && ch.PendingParents == 1 {
			ready = append(ready, ch)
		} else {
			waiting = append(waiting, ch.ID)
		}
	}
	if len(waiting) > 0 {
		if err := c.tx.Step.Update().Where(step.IDIn(waiting...)).AddPendingParents(-1).Exec(ctx); err != nil {
			return err
		}
	}
	if len(ready) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(ready))
	for i, ch := range ready {
		ids[i] = ch.ID
	}
	u := c.tx.Step.Update().
		Where(step.IDIn(ids...), step.StateIn(stepParentsDone.From...), step.PendingParents(1)).
		AddPendingParents(-1).SetState(stepParentsDone.To).SetAvailableAt(c.now).
		SetUpdatedAt(c.now).ClearFinishedAt()
	if err := keepClaimable(u.Mutation(), stepParentsDone.To); err != nil {
		return err
	}
	n, err := u.Save(ctx)
	if err != nil {
		return err
	}
	if n != len(ready) {
		return fmt.Errorf("step %s: %d of %d ready children changed under the task lock", parent.ID, len(ready)-n, len(ready))
	}
	payload := map[string]any{"available_at": c.now.Format(time.RFC3339Nano)}
	for _, ch := range ready {
		c.recordStep(ch, ch.State, stepParentsDone, "parents done", payload)
		ch.State, ch.PendingParents = stepParentsDone.To, 0
	}
	return nil
}

// finalize ends the task when nothing can progress any more, and revives
// a task in error that an operator's retry or resolve made progress
// possible for again.
func (c *change) finalize(ctx context.Context) error {
	switch c.task.State {
	case task.StatePending, task.StateInProgress, task.StateError:
	default:
		return nil
	}
	var rows []struct {
		State step.State `json:"state"`
		Count int        `json:"count"`
	}
	if err := c.tx.Step.Query().Where(step.TaskID(c.task.ID)).
		GroupBy(step.FieldState).Aggregate(ent.Count()).Scan(ctx, &rows); err != nil {
		return err
	}
	counts := map[step.State]int{}
	total := 0
	for _, r := range rows {
		counts[r.State] = r.Count
		total += r.Count
	}
	active := counts[step.StateEnqueued] + counts[step.StateInProgress] + counts[step.StateWaitingForRetry]
	failed := counts[step.StateError] + counts[step.StateCancelled]
	done := counts[step.StateComplete]+counts[step.StateResolvedManually] == total
	if c.task.State == task.StateError {
		if active == 0 && !done {
			return nil
		}
		if err := c.moveTask(ctx, taskResume, "progress is possible again", nil); err != nil {
			return err
		}
	}
	switch {
	case done:
		return c.moveTask(ctx, taskComplete, "every step is done", map[string]any{"step_count": total})
	case active == 0 && failed > 0:
		return c.moveTask(ctx, taskFail, "nothing can progress", map[string]any{
			"error_steps": counts[step.StateError], "cancelled_steps": counts[step.StateCancelled],
			"blocked_steps": counts[step.StatePending],
		})
	}
	return nil
}
