package engine

import (
	"context"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/stepdependency"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
)

// Completion is one entry of CompleteSteps: a lease and its step's result.
type Completion struct {
	Lease
	Result map[string]any
}

// CompleteSteps completes a batch of steps in one transaction whose
// statements do not grow with the batch: the tasks of the named steps locked
// in id order (doc.go's lock order: tasks first, then their steps), the
// steps read under those locks, one guarded UPDATE of the accepted steps,
// one read of the children of what completed, one UPDATE for the
// children that become ready (and one per distinct number of completed
// parents for the others), one count of the steps of the tasks that may
// end, one UPDATE per kind of task move, and one insert each for
// transitions and events.
//
// It returns one error per entry, nil where the completion took effect, as
// CompleteStep would have answered it alone: an entry that is invalid,
// names an unknown step, lost its lease or repeats a completion with a
// different result is refused without touching the others. An error of
// the transaction itself is every entry's.
func (e *Engine) CompleteSteps(ctx context.Context, cs []Completion) []error {
	errs := make([]error, len(cs))
	type entry struct {
		i     int
		id    uuid.UUID
		token string
		raw   []byte
	}
	entries := make([]entry, 0, len(cs))
	ids := make([]uuid.UUID, 0, len(cs))
	seen := make(map[uuid.UUID]bool, len(cs))
	for i, c := range cs {
		id, err := c.parse()
		if err == nil {
			var raw []byte
			if raw, err = encodeResult("result", c.Result); err == nil {
				entries = append(entries, entry{i: i, id: id, token: c.Token, raw: raw})
				if !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
				continue
			}
		}
		errs[i] = err
	}
	if len(entries) == 0 {
		return errs
	}
	outcomes := make([]error, len(entries))
	var changes []*change
	err := e.db.Tx(storage.TxName(ctx, "CompleteSteps"), func(tx *ent.Tx) error {
		clear(outcomes)
		changes = changes[:0]
		now := e.now()
		byTask, steps, err := e.lockedSteps(ctx, tx, ids, now)
		if err != nil {
			return err
		}
		// Each entry is judged against the rows as read under the locks
		// and the entries before it, as CompleteStep would judge it.
		var done []*ent.Step
		used := map[uuid.UUID]bool{}
		for k, en := range entries {
			s := steps[en.id]
			c := byTask[taskOf(s)]
			if s == nil || c == nil {
				outcomes[k] = fault.NotFoundf("step", en.id.String())
				continue
			}
			if s.State == step.StateComplete && s.LeaseToken != nil && *s.LeaseToken == en.token {
				if !sameJSON(s.Result, en.raw) {
					outcomes[k] = alreadyCompleted(s, "it was already completed by this lease with a different result")
				}
				continue
			}
			if err := leaseLost(s, c.task, en.token, now); err != nil {
				outcomes[k] = err
				continue
			}
			c.recordStep(s, s.State, stepComplete, "", nil)
			s.State, s.ClaimedBy, s.Result = stepComplete.To, nil, en.raw
			done = append(done, s)
			if !used[c.task.ID] {
				used[c.task.ID] = true
				changes = append(changes, c)
			}
		}
		if len(done) == 0 {
			return nil
		}
		if err := completeSet(ctx, tx, done, now); err != nil {
			return err
		}
		if err := enqueueChildrenOf(ctx, tx, done, byTask, now); err != nil {
			return err
		}
		if err := finalizeSet(ctx, tx, changes, now); err != nil {
			return err
		}
		return flush(ctx, tx, changes...)
	})
	for k, en := range entries {
		if err != nil {
			errs[en.i] = err
		} else {
			errs[en.i] = outcomes[k]
		}
	}
	if err == nil && len(changes) > 0 {
		e.committed(changes...)
	}
	return errs
}

// FailSteps records a batch of failed attempts in one transaction whose
// statements do not grow with the batch: the tasks of the named steps
// locked in id order, the steps read under those locks (and, only when
// some entry repeats a failure with another error, their last
// transitions), one guarded UPDATE per kind of move (to waiting_for_retry,
// to error; errors and due times through CASE id), one count of the steps
// of the tasks a step in error may end, one UPDATE per kind of task move,
// and one insert each for transitions and events.
//
// It returns one outcome and one error per entry, as FailStep would have
// answered it alone: an entry that is invalid, names an unknown step, lost
// its lease or repeats a failure with a different error is refused without
// touching the others; a repeat with the same error answers the outcome
// again. An error of the transaction itself is every entry's.
func (e *Engine) FailSteps(ctx context.Context, ps []FailParams) ([]FailOutcome, []error) {
	outs := make([]FailOutcome, len(ps))
	errs := make([]error, len(ps))
	type entry struct {
		i  int
		id uuid.UUID
	}
	entries := make([]entry, 0, len(ps))
	ids := make([]uuid.UUID, 0, len(ps))
	seen := make(map[uuid.UUID]bool, len(ps))
	for i, p := range ps {
		id, err := p.check()
		if err != nil {
			errs[i] = err
			continue
		}
		entries = append(entries, entry{i: i, id: id})
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(entries) == 0 {
		return outs, errs
	}
	results := make([]FailOutcome, len(entries))
	refusals := make([]error, len(entries))
	var changes []*change
	err := e.db.Tx(storage.TxName(ctx, "FailSteps"), func(tx *ent.Tx) error {
		clear(results)
		clear(refusals)
		changes = changes[:0]
		now := e.now()
		byTask, steps, err := e.lockedSteps(ctx, tx, ids, now)
		if err != nil {
			return err
		}
		// A step whose attempt already failed is not moved by this batch,
		// so who failed it is known before the entries are judged.
		var repeats []*ent.Step
		asked := map[uuid.UUID]bool{}
		for _, en := range entries {
			p, s := ps[en.i], steps[en.id]
			if s != nil && failedWith(s, p.Token) && s.LastErrorMessage != p.Message && !asked[s.ID] {
				asked[s.ID] = true
				repeats = append(repeats, s)
			}
		}
		byWorker, err := failedByWorker(ctx, tx, repeats)
		if err != nil {
			return err
		}
		// Each entry is judged against the rows as read under the locks
		// and the entries before it, as FailStep would judge it.
		var failed []*ent.Step
		var ending []*change
		used, ends := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
		for k, en := range entries {
			p, s := ps[en.i], steps[en.id]
			c := byTask[taskOf(s)]
			if s == nil || c == nil {
				refusals[k] = fault.NotFoundf("step", en.id.String())
				continue
			}
			if failedWith(s, p.Token) {
				if s.LastErrorMessage == p.Message {
					results[k] = FailOutcome{State: StepState(s.State), AvailableAt: s.AvailableAt}
					continue
				}
				if byWorker[s.ID] {
					refusals[k] = alreadyCompleted(s, "this lease already failed it with a different error")
					continue
				}
			}
			if err := leaseLost(s, c.task, p.Token, now); err != nil {
				refusals[k] = err
				continue
			}
			results[k] = c.endAttempt(s, p.Message, p.Type, p.NonRetryable, p.RetryAfter, "")
			byWorker[s.ID] = true // a later entry repeating it is a repeat of this worker's failure
			failed = append(failed, s)
			if !used[c.task.ID] {
				used[c.task.ID] = true
				changes = append(changes, c)
			}
			if results[k].State == StepError && !ends[c.task.ID] {
				ends[c.task.ID] = true
				ending = append(ending, c)
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if err := failSet(ctx, tx, failed, now); err != nil {
			return err
		}
		if err := finalizeSet(ctx, tx, ending, now); err != nil {
			return err
		}
		return flush(ctx, tx, changes...)
	})
	for k, en := range entries {
		if err != nil {
			errs[en.i] = err
		} else {
			outs[en.i], errs[en.i] = results[k], refusals[k]
		}
	}
	if err == nil && len(changes) > 0 {
		e.committed(changes...)
	}
	return outs, errs
}

// failSet writes the failures endAttempt applied in memory to steps read
// under their tasks' locks: one guarded UPDATE per kind of move, each row's
// error (and due time, for a retry) through CASE id. As in completeSet, a
// row that no longer matches its guard is a broken invariant and fails the
// transaction.
func failSet(ctx context.Context, tx *ent.Tx, failed []*ent.Step, now time.Time) error {
	byMove := map[step.State][]*ent.Step{}
	for _, s := range failed {
		byMove[s.State] = append(byMove[s.State], s)
	}
	for _, m := range []stepMove{stepScheduleRetry, stepFail} {
		ss := byMove[m.To]
		if len(ss) == 0 {
			continue
		}
		ids := make([]uuid.UUID, len(ss))
		for i, s := range ss {
			ids[i] = s.ID
		}
		u := tx.Step.Update().
			Where(step.IDIn(ids...), step.StateIn(m.From...)).
			SetState(m.To).SetUpdatedAt(now).
			ClearClaimedBy().ClearLeaseExpiresAt().ClearExecutionDeadline()
		cols := []perRow{
			{step.FieldLastErrorMessage, func(s *ent.Step) any { return s.LastErrorMessage }},
			{step.FieldLastErrorType, func(s *ent.Step) any { return s.LastErrorType }},
		}
		if claimableState(m.To) {
			// keepClaimable's rule, row by row: claimable at the due time.
			due := func(s *ent.Step) any { return *s.AvailableAt }
			cols = append(cols, perRow{step.FieldAvailableAt, due}, perRow{step.FieldClaimableAt, due})
			u.ClearFinishedAt()
		} else {
			u.SetFinishedAt(now)
			if err := keepClaimable(u.Mutation(), m.To); err != nil {
				return err
			}
		}
		n, err := u.Modify(setByID(ss, cols...)).Save(ctx)
		if err != nil {
			return err
		}
		if n != len(ss) {
			return fmt.Errorf("fail: %d of %d steps changed under their tasks' locks", len(ss)-n, len(ss))
		}
	}
	return nil
}

// lockedSteps locks the tasks of the steps ids (lockTasksOfSteps), then
// reads the steps under those locks, by id: a step that does not exist is
// not in the second map, nor its task in the first.
func (e *Engine) lockedSteps(ctx context.Context, tx *ent.Tx, ids []uuid.UUID, now time.Time) (
	map[uuid.UUID]*change, map[uuid.UUID]*ent.Step, error,
) {
	byTask, err := e.lockTasksOfSteps(ctx, tx, ids, now)
	if err != nil {
		return nil, nil, err
	}
	rows, err := tx.Step.Query().Where(step.IDIn(ids...)).All(ctx)
	if err != nil {
		return nil, nil, err
	}
	steps := make(map[uuid.UUID]*ent.Step, len(rows))
	for _, s := range rows {
		steps[s.ID] = s
	}
	return byTask, steps, nil
}

func taskOf(s *ent.Step) uuid.UUID {
	if s == nil {
		return uuid.Nil
	}
	return s.TaskID
}

// lockTasksOfSteps reads the tasks of the given steps and, on PostgreSQL,
// locks them in id order with one statement, waiting where needed: two
// batches sharing tasks take them in the same order, so neither can hold
// one the other waits for while waiting for one it holds.
func (e *Engine) lockTasksOfSteps(ctx context.Context, tx *ent.Tx, stepIDs []uuid.UUID, now time.Time) (map[uuid.UUID]*change, error) {
	vals := make([]any, len(stepIDs))
	for i, id := range stepIDs {
		vals[i] = id
	}
	ts, err := tx.Task.Query().Where(func(s *sql.Selector) {
		steps := sql.Table(step.Table)
		s.Where(sql.In(s.C(task.FieldID),
			sql.Select(steps.C(step.FieldTaskID)).From(steps).Where(sql.In(steps.C(step.FieldID), vals...))))
		e.db.SQL().LockForWrite(s)
	}).Order(task.ByID()).All(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]*change, len(ts))
	for _, t := range ts {
		out[t.ID] = &change{e: e, tx: tx, task: t, now: now}
	}
	return out, nil
}

// completeSet moves the accepted steps to complete, each with its own
// result, in one UPDATE. They were read under their tasks' locks (every
// writer of a step holds its task's lock; ExtendLease changes neither state
// nor token), so each still matches its guard: a row that does not is a
// broken invariant and fails the transaction.
func completeSet(ctx context.Context, tx *ent.Tx, done []*ent.Step, now time.Time) error {
	ids := make([]uuid.UUID, len(done))
	for i, s := range done {
		ids[i] = s.ID
	}
	u := tx.Step.Update().
		Where(step.IDIn(ids...), step.StateIn(stepComplete.From...)).
		SetState(stepComplete.To).SetUpdatedAt(now).SetFinishedAt(now).
		ClearClaimedBy().ClearLeaseExpiresAt().ClearExecutionDeadline()
	if err := keepClaimable(u.Mutation(), stepComplete.To); err != nil {
		return err
	}
	u.Modify(setByID(done, perRow{step.FieldResult, func(s *ent.Step) any { return []byte(s.Result) }}))
	n, err := u.Save(ctx)
	if err != nil {
		return err
	}
	if n != len(done) {
		return fmt.Errorf("complete: %d of %d steps changed under their tasks' locks", len(done)-n, len(done))
	}
	return nil
}

// perRow is a column an UPDATE of several steps sets to a value of each
// row's own.
type perRow struct {
	column string
	value  func(*ent.Step) any
}

// setByID sets the columns, in an UPDATE of the rows of steps, each row to
// its own value: column = CASE id WHEN … THEN … ELSE column END. The ELSE
// arm gives the expression the column's type on PostgreSQL, so the
// parameters are bound as jsonb, timestamptz or text without a cast of one
// dialect.
func setByID(steps []*ent.Step, cols ...perRow) func(*sql.UpdateBuilder) {
	return func(u *sql.UpdateBuilder) {
		for _, c := range cols {
			u.Set(c.column, sql.ExprFunc(func(b *sql.Builder) {
				b.WriteString("CASE ").Ident(step.FieldID)
				for _, s := range steps {
					b.WriteString(" WHEN ").Arg(s.ID).WriteString(" THEN ").Arg(c.value(s))
				}
				b.WriteString(" ELSE ").Ident(c.column).WriteString(" END")
			}))
		}
	}
}

// enqueueChildrenOf lowers the pending-parent counters of the children of
// the steps just completed by the number of their parents among them, and
// enqueues those that reach zero: one read of the children with that
// number and, whatever the batch, one UPDATE for the ready children plus
// one per distinct decrement for the others (a fan-in whose parents
// complete together is one).
func enqueueChildrenOf(ctx context.Context, tx *ent.Tx, done []*ent.Step, byTask map[uuid.UUID]*change, now time.Time) error {
	ids := make([]any, len(done))
	for i, s := range done {
		ids[i] = s.ID
	}
	// The children joined to their edges from the steps just completed,
	// one row per child with the number of those edges: GROUP BY the
	// primary key lets PostgreSQL select the child's other columns.
	const parentsDone = "parents_done"
	children, err := tx.Step.Query().Where(func(s *sql.Selector) {
		edges := sql.Table(stepdependency.Table)
		s.Join(edges).On(s.C(step.FieldID), edges.C(stepdependency.FieldChildID)).
			Where(sql.In(edges.C(stepdependency.FieldParentID), ids...)).
			GroupBy(s.C(step.FieldID)).
			AppendSelectExprAs(sql.Raw("COUNT(*)"), parentsDone)
	}).All(ctx)
	if err != nil {
		return err
	}
	completed := make(map[uuid.UUID]int, len(children)) // child → parents completed now
	for _, ch := range children {
		v, err := ch.Value(parentsDone)
		if err != nil {
			return err
		}
		n, ok := v.(int64)
		if !ok || n <= 0 {
			return fmt.Errorf("complete: child %s counts %v (%T) parents done", ch.ID, v, v)
		}
		completed[ch.ID] = int(n)
	}
	var ready []*ent.Step
	var readyIDs []uuid.UUID
	waiting := map[int][]uuid.UUID{}
	for _, ch := range children {
		k := completed[ch.ID]
		if ch.State == step.StatePending && ch.PendingParents == k {
			ready = append(ready, ch)
			readyIDs = append(readyIDs, ch.ID)
		} else {
			waiting[k] = append(waiting[k], ch.ID)
		}
	}
	for k, ws := range waiting {
		if err := tx.Step.Update().Where(step.IDIn(ws...)).AddPendingParents(-k).Exec(ctx); err != nil {
			return err
		}
	}
	if len(ready) == 0 {
		return nil
	}
	u := tx.Step.Update().
		Where(step.IDIn(readyIDs...), step.StateIn(stepParentsDone.From...)).
		SetPendingParents(0).SetState(stepParentsDone.To).SetAvailableAt(now).
		SetUpdatedAt(now).ClearFinishedAt()
	if err := keepClaimable(u.Mutation(), stepParentsDone.To); err != nil {
		return err
	}
	n, err := u.Save(ctx)
	if err != nil {
		return err
	}
	if n != len(ready) {
		return fmt.Errorf("complete: %d of %d ready children changed under their tasks' locks", len(ready)-n, len(ready))
	}
	payload := map[string]any{"available_at": now.Format(time.RFC3339Nano)}
	for _, ch := range ready {
		c := byTask[ch.TaskID]
		if c == nil {
			return fmt.Errorf("complete: child %s of an unlocked task %s", ch.ID, ch.TaskID)
		}
		c.recordStep(ch, ch.State, stepParentsDone, "parents done", payload)
		ch.State, ch.PendingParents = stepParentsDone.To, 0
	}
	return nil
}

// finalizeSet ends the tasks of cs that nothing can move on any more, as
// finalize does for one: one count of their steps by state, then one UPDATE
// for the tasks that complete and one for those that fail. A task that
// just had a step enqueued can do neither and is not counted; a task in
// error (an operator's revival) takes finalize's own path.
func finalizeSet(ctx context.Context, tx *ent.Tx, cs []*change, now time.Time) error {
	var ids []uuid.UUID
	for _, c := range cs {
		switch {
		case c.task.State == task.StateError:
			if err := c.finalize(ctx); err != nil {
				return err
			}
		case len(c.ready) > 0 && c.task.State == task.StateInProgress:
		case c.task.State == task.StatePending || c.task.State == task.StateInProgress:
			ids = append(ids, c.task.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var rows []struct {
		TaskID uuid.UUID  `json:"task_id"`
		State  step.State `json:"state"`
		Count  int        `json:"count"`
	}
	if err := tx.Step.Query().Where(step.TaskIDIn(ids...)).
		GroupBy(step.FieldTaskID, step.FieldState).Aggregate(ent.Count()).Scan(ctx, &rows); err != nil {
		return err
	}
	counts := map[uuid.UUID]map[step.State]int{}
	for _, r := range rows {
		if counts[r.TaskID] == nil {
			counts[r.TaskID] = map[step.State]int{}
		}
		counts[r.TaskID][r.State] = r.Count
	}
	var complete, failed []*change
	for _, c := range cs {
		n := counts[c.task.ID]
		if n == nil {
			continue
		}
		total := 0
		for _, k := range n {
			total += k
		}
		active := n[step.StateEnqueued] + n[step.StateInProgress] + n[step.StateWaitingForRetry]
		switch {
		case n[step.StateComplete]+n[step.StateResolvedManually] == total:
			complete = append(complete, c)
		case active == 0 && n[step.StateError]+n[step.StateCancelled] > 0:
			failed = append(failed, c)
		}
	}
	if err := moveTasks(ctx, tx, complete, taskComplete, now, "every step is done", func(c *change) map[string]any {
		n, total := counts[c.task.ID], 0
		for _, k := range n {
			total += k
		}
		return map[string]any{"step_count": total}
	}); err != nil {
		return err
	}
	return moveTasks(ctx, tx, failed, taskFail, now, "nothing can progress", func(c *change) map[string]any {
		n := counts[c.task.ID]
		return map[string]any{
			"error_steps": n[step.StateError], "cancelled_steps": n[step.StateCancelled],
			"blocked_steps": n[step.StatePending],
		}
	})
}

// moveTasks applies m, a move into a final state, to the locked tasks of cs
// with one guarded UPDATE. The state guard is an expression, as in
// startTasks, so that SQLite reads these tasks by key rather than every
// task in the state through its index.
func moveTasks(ctx context.Context, tx *ent.Tx, cs []*change, m taskMove, now time.Time, reason string,
	payload func(*change) map[string]any,
) error {
	if len(cs) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		ids[i] = c.task.ID
	}
	from := make([]any, len(m.From))
	for i, s := range m.From {
		from[i] = string(s)
	}
	n, err := tx.Task.Update().
		Where(task.IDIn(ids...), func(s *sql.Selector) {
			s.Where(sql.P(func(b *sql.Builder) {
				b.WriteString("(" + s.C(task.FieldState) + " || '') IN (")
				for i, f := range from {
					if i > 0 {
						b.WriteString(", ")
					}
					b.Arg(f)
				}
				b.WriteString(")")
			}))
		}).
		SetState(m.To).SetUpdatedAt(now).SetFinishedAt(now).
		Save(ctx)
	if err != nil {
		return err
	}
	if n != len(cs) {
		return fmt.Errorf("complete: %d of %d tasks changed under their lock", len(cs)-n, len(cs))
	}
	for _, c := range cs {
		c.recordTask(m, reason, payload(c))
	}
	return nil
}
