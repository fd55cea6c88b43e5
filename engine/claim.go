package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/stepdependency"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
)

// Bounds of a claim request, as the contract documents them.
const (
	maxClaimSteps    = 100
	maxClaimHandlers = 100
	maxClaimWait     = 60 * time.Second
	maxWorkerID      = 128
)

// HandlerRef names a handler in a namespace.
type HandlerRef struct {
	Namespace, Handler string
}

// ClaimParams is a worker's request for due work.
type ClaimParams struct {
	WorkerID string
	Handlers []HandlerRef
	Max      int
	// Wait is how long to wait for work when nothing is due.
	Wait time.Duration
	// Builtin is set by the server's own in-process worker (package
	// builtin), never from a request: it may claim the handler names of
	// built-in steps ("builtin:http"), which the name rule keeps every
	// other worker from claiming, and for any number of namespaces.
	Builtin bool
}

func (p *ClaimParams) validate() error {
	var vs []fault.Violation
	if msg := checkWorkerID(p.WorkerID); msg != "" {
		vs = append(vs, fault.Violation{Field: "worker_id", Description: msg})
	}
	if p.Builtin && len(p.Handlers) > 0 {
		// Names come from registrations and stored templates, not a request.
	} else if len(p.Handlers) == 0 || len(p.Handlers) > maxClaimHandlers {
		vs = append(vs, fault.Violation{Field: "handlers", Description: fmt.Sprintf("must name 1 to %d handlers", maxClaimHandlers)})
	} else {
		// Names follow the template rules, so nothing a template could not
		// declare reaches the worker table (and a typo is an error rather
		// than a worker that never gets work).
		for i, h := range p.Handlers {
			if msg := registry.CheckNamespace(h.Namespace); msg != "" {
				vs = append(vs, fault.Violation{Field: fmt.Sprintf("handlers[%d].namespace", i), Description: msg})
			}
			if msg := registry.CheckHandler(h.Handler); msg != "" {
				vs = append(vs, fault.Violation{Field: fmt.Sprintf("handlers[%d].handler", i), Description: msg})
			}
		}
	}
	if p.Max < 1 || p.Max > maxClaimSteps {
		vs = append(vs, fault.Violation{Field: "max_steps", Description: fmt.Sprintf("must be between 1 and %d", maxClaimSteps)})
	}
	if p.Wait < 0 || p.Wait > maxClaimWait {
		vs = append(vs, fault.Violation{Field: "wait", Description: fmt.Sprintf("must be between 0 and %s", maxClaimWait)})
	}
	if len(vs) > 0 {
		return fault.Invalids(vs)
	}
	return nil
}

// checkWorkerID returns "" for a usable worker id, or what is wrong with it:
// 1 to maxWorkerID bytes of printable UTF-8, as it is stored, logged and
// shown by ListHandlers.
func checkWorkerID(id string) string {
	if id == "" || len(id) > maxWorkerID {
		return fmt.Sprintf("must be 1 to %d bytes", maxWorkerID)
	}
	if !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "must be printable UTF-8"
	}
	return ""
}

// ParentResult is a parent's result handed to a claimed step.
type ParentResult struct {
	Name   string
	StepID uuid.UUID
	// Result is the parent's JSON result (nil when it has none).
	Result []byte
}

// Claim is a step handed to a worker, with what it needs to run.
type Claim struct {
	Step *Step
	Task *Task
	// LeaseToken is the token the worker's reports must present.
	LeaseToken string
	Parents    []ParentResult
}

// maxLostPasses bounds the locking reads of one claim whose candidates
// concurrent claimers all took between its snapshot and its lock.
const maxLostPasses = 8

// ClaimSteps claims up to p.Max due steps of p.Handlers, higher priority
// first, then longest due. When nothing is due it waits, without polling,
// until work is committed in this process or (PostgreSQL) another replica,
// a step becomes due, p.Wait passes, ctx ends or stop is closed. After a
// wait it looks with a read before claiming, so claimers woken for a step
// another claimer took do not each open a write transaction.
func (e *Engine) ClaimSteps(ctx context.Context, p ClaimParams, stop <-chan struct{}) ([]Claim, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	e.noteWorker(ctx, p.WorkerID, p.Handlers)
	deadline := e.now().Add(p.Wait)
	look := false
	// woke is the handler whose steps the last wake-up was for.
	var woke HandlerRef
	for {
		// Join before looking, so work committed between the look and
		// the wait wakes this claimer. Every return below leaves with the
		// wake passed on, in case one arrived while it was busy.
		w := e.claimers.join(p.Handlers)
		next, pending, due := time.Time{}, false, true
		if look {
			var err error
			if next, pending, err = e.nextDue(ctx, p.Handlers); err != nil {
				e.claimers.leave(w, true)
				return nil, err
			}
			due = pending && !next.After(e.now())
		}
		if due {
			claims, err := e.claimOnce(ctx, p)
			if err != nil || len(claims) > 0 {
				e.claimers.leave(w, true)
				if len(claims) == p.Max && woke != (HandlerRef{}) {
					// A full batch may have left the step this claimer
					// was woken for (priority picked others): wake another.
					e.claimers.notify(map[HandlerRef]int{woke: 1})
				}
				return claims, err
			}
			// Due steps may be locked by other claimers (PostgreSQL):
			// then the next due time is now, and the wait below is short.
			if next, pending, err = e.nextDue(ctx, p.Handlers); err != nil {
				e.claimers.leave(w, true)
				return nil, err
			}
		}
		now := e.now()
		if !now.Before(deadline) {
			e.claimers.leave(w, true)
			return nil, nil
		}
		sleep := deadline.Sub(now)
		if pending && next.Sub(now) < sleep {
			sleep = max(next.Sub(now), time.Millisecond)
		}
		look = true
		e.claimers.sleep(w)
		timer := time.NewTimer(sleep)
		select {
		case <-w.woken:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			e.claimers.leave(w, true)
			return nil, nil
		case <-stop:
			timer.Stop()
			e.claimers.leave(w, true)
			return nil, nil
		}
		timer.Stop()
		// Woken or not, the next round looks: nothing to pass on.
		e.claimers.leave(w, false)
		woke = w.reason
	}
}

// nextDue returns the earliest time a step of hs becomes claimable.
func (e *Engine) nextDue(ctx context.Context, hs []HandlerRef) (time.Time, bool, error) {
	q := e.db.Reader.Step.Query().Where(step.ClaimableAtNotNil())
	if len(hs) == 1 {
		q.Where(step.Namespace(hs[0].Namespace), step.Handler(hs[0].Handler))
	} else {
		// The earliest of each handler's earliest: one probe of
		// (namespace, handler, claimable_at) per handler, where an OR of
		// the handlers would read and sort their whole queues.
		q.Where(func(s *sql.Selector) {
			s.Where(firstOfHandlers(s.C(step.FieldID), hs, func(b *sql.Builder) {
				b.WriteString(" AND claimable_at IS NOT NULL")
			}, "claimable_at", 1))
		})
	}
	s, err := q.Order(ent.Asc(step.FieldClaimableAt)).Select(step.FieldClaimableAt).First(ctx)
	if ent.IsNotFound(err) || (err == nil && s.ClaimableAt == nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return *s.ClaimableAt, true, nil
}

// claimOrder is the order steps are claimed in, which the claim index
// (namespace, handler, priority DESC, claimable_at, id) follows.
var claimOrder = []step.OrderOption{
	step.ByPriority(sql.OrderDesc()), step.ByClaimableAt(), step.ByID(),
}

// candidates selects up to p.Max steps due at now, in claim order. With one
// handler the claim index is read in order and stops after p.Max rows. With
// several, each handler's first rows (read the same way) are merged, so no
// claim sorts a whole queue.
//
// On PostgreSQL the claim follows the lock order of doc.go, task before
// step: the steps are joined to their tasks and only the task rows are
// locked, FOR NO KEY UPDATE OF tasks SKIP LOCKED. A step whose task another
// transaction holds (a claim, a report, an operator) is skipped and the
// LIMIT reaches past it, so a claim never waits for a lock and concurrent
// claimers take different tasks. The step rows returned are the
// statement's snapshot, read before the locks were granted: claimOnce reads
// them again under the locks. Each handler contributes 4×p.Max rows there,
// so that tasks other transactions hold still leave enough to claim.
func (e *Engine) candidates(ctx context.Context, tx *ent.Tx, p ClaimParams, now time.Time) ([]*ent.Step, error) {
	// The state filter costs nothing on the index's rows and keeps a
	// claim working should claimable_at ever disagree with the state.
	q := tx.Step.Query().
		Where(step.ClaimableAtLTE(now), step.StateIn(step.StateEnqueued, step.StateWaitingForRetry)).
		Order(claimOrder...).Limit(p.Max)
	if len(p.Handlers) == 1 {
		q.Where(step.Namespace(p.Handlers[0].Namespace), step.Handler(p.Handlers[0].Handler))
	} else {
		perHandler := e.db.SQL().ClaimCandidates(p.Max)
		q.Where(func(s *sql.Selector) {
			s.Where(firstOfHandlers(s.C(step.FieldID), p.Handlers, func(b *sql.Builder) {
				b.WriteString(" AND claimable_at <= ").Arg(now)
			}, "priority DESC, claimable_at, id", perHandler))
		})
	}
	q.Where(func(s *sql.Selector) { e.db.SQL().LockTasksOfSteps(s, step.FieldTaskID) })
	return q.All(ctx)
}

// firstOfHandlers is "id IN" the first limit steps of each handler that
// also meet cond, in order: a UNION ALL of one ordered index scan per
// handler.
func firstOfHandlers(idColumn string, hs []HandlerRef, cond func(*sql.Builder), order string, limit int) *sql.Predicate {
	return sql.P(func(b *sql.Builder) {
		b.WriteString(idColumn).WriteString(" IN (")
		for i, h := range hs {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			b.WriteString("SELECT id FROM (SELECT id FROM steps WHERE namespace = ").Arg(h.Namespace).
				WriteString(" AND handler = ").Arg(h.Handler)
			cond(b)
			b.WriteString(" ORDER BY " + order + " LIMIT ").Arg(limit).
				WriteString(fmt.Sprintf(") AS h%d", i))
		}
		b.WriteString(")")
	})
}

// claimOnce claims what is due now in one transaction whose statements do
// not grow with the number of steps claimed: the candidates (locking their
// tasks on PostgreSQL), the candidates again under those locks
// (PostgreSQL), their tasks, one guarded UPDATE per (lease, timeout) group,
// one for the tasks that start, and one insert each for transitions and
// events.
// lockedCandidates reads the steps a claim may take and locks their tasks.
// On PostgreSQL the tasks are then ours, and with them their steps, so it
// reads the candidates again, as committed: one may have been claimed (or
// moved by any writer) between the snapshot the locking read used and its
// lock, and what is read now stays true until the commit. When concurrent
// claimers took every candidate that way, the locking read runs again, in
// a new snapshot, up to maxLostPasses times: a claim answers "none" while
// steps are due only when other claimers hold them all.
func (e *Engine) lockedCandidates(ctx context.Context, tx *ent.Tx, p ClaimParams, now time.Time) ([]*ent.Step, error) {
	for pass := 1; ; pass++ {
		candidates, err := e.candidates(ctx, tx, p, now)
		if err != nil || len(candidates) == 0 || !e.db.SQL().ConcurrentWriters() {
			return candidates, err
		}
		ids := make([]uuid.UUID, len(candidates))
		for i, s := range candidates {
			ids[i] = s.ID
		}
		candidates, err = tx.Step.Query().
			Where(step.IDIn(ids...), step.ClaimableAtLTE(now), step.StateIn(step.StateEnqueued, step.StateWaitingForRetry)).
			Order(claimOrder...).All(ctx)
		if err != nil || len(candidates) > 0 || pass == maxLostPasses {
			return candidates, err
		}
	}
}

func (e *Engine) claimOnce(ctx context.Context, p ClaimParams) ([]Claim, error) {
	var claimed []*ent.Step
	var batch []*change
	tasks := map[uuid.UUID]*ent.Task{}
	err := e.db.Tx(storage.TxName(ctx, "ClaimSteps"), func(tx *ent.Tx) error {
		claimed, batch = claimed[:0], nil
		clear(tasks)
		now := e.now()
		candidates, err := e.lockedCandidates(ctx, tx, p, now)
		if err != nil || len(candidates) == 0 {
			return err
		}
		taskIDs := make([]uuid.UUID, 0, len(candidates))
		for _, s := range candidates {
			taskIDs = append(taskIDs, s.TaskID)
		}
		ts, err := tx.Task.Query().Where(task.IDIn(taskIDs...)).All(ctx)
		if err != nil {
			return err
		}
		changes := make(map[uuid.UUID]*change, len(ts))
		batch = make([]*change, 0, len(ts))
		for _, t := range ts {
			tasks[t.ID] = t
			c := &change{e: e, tx: tx, task: t, now: now}
			changes[t.ID] = c
			batch = append(batch, c)
		}
		token := uuid.NewString()
		if err := e.takeSteps(ctx, tx, candidates, token, p.WorkerID, now); err != nil {
			return err
		}
		for _, s := range candidates {
			c := changes[s.TaskID]
			if s.State == step.StateWaitingForRetry {
				// Claimed directly when due; the waiting -> enqueued move is
				// still recorded.
				c.recordStep(s, s.State, stepDue, "retry due", map[string]any{
					"available_at": s.AvailableAt.Format(time.RFC3339Nano), // set: the query required it due
				})
				s.State = step.StateEnqueued
			}
			lease := now.Add(time.Duration(s.LeaseDurationMs) * time.Millisecond)
			var deadline *time.Time
			if s.ExecutionTimeoutMs > 0 {
				d := now.Add(time.Duration(s.ExecutionTimeoutMs) * time.Millisecond)
				deadline = &d
			}
			s.Attempts++
			c.recordStep(s, s.State, stepClaim, "", map[string]any{
				"worker_id": p.WorkerID, "lease_expires_at": lease.Format(time.RFC3339Nano),
			})
			s.State = step.StateInProgress
			s.LeaseToken, s.LeaseExpiresAt, s.ExecutionDeadline, s.ClaimedBy = &token, &lease, deadline, &p.WorkerID
			s.ClaimableAt = nil
			claimed = append(claimed, s)
		}
		if err := startTasks(ctx, tx, batch, now); err != nil {
			return err
		}
		return flush(ctx, tx, batch...)
	})
	if err != nil || len(claimed) == 0 {
		return nil, err
	}
	e.committed(batch...)
	for _, s := range claimed {
		e.noteLease(*s.LeaseExpiresAt)
		if s.ExecutionDeadline != nil {
			e.noteLease(*s.ExecutionDeadline)
		}
	}
	return e.withParents(ctx, claimed, tasks)
}

// takeSteps moves the candidates to in_progress under token with one
// guarded UPDATE per (lease, timeout) group rather than one per step: a
// claim batch usually shares one policy. The candidates are ours (read
// under their tasks' locks, or behind the single SQLite writer), so every
// row must match the guard.
func (e *Engine) takeSteps(ctx context.Context, tx *ent.Tx, candidates []*ent.Step, token, workerID string, now time.Time) error {
	type policyKey struct{ lease, timeout int64 }
	groups := map[policyKey][]uuid.UUID{}
	for _, s := range candidates {
		k := policyKey{s.LeaseDurationMs, s.ExecutionTimeoutMs}
		groups[k] = append(groups[k], s.ID)
	}
	for k, ids := range groups {
		lease := now.Add(time.Duration(k.lease) * time.Millisecond)
		u := tx.Step.Update().
			Where(step.IDIn(ids...), step.StateIn(step.StateEnqueued, step.StateWaitingForRetry)).
			SetState(step.StateInProgress).AddAttempts(1).SetLeaseToken(token).SetLeaseExpiresAt(lease).
			SetClaimedBy(workerID).SetUpdatedAt(now).ClearFinishedAt().ClearClaimableAt()
		if k.timeout > 0 {
			u.SetExecutionDeadline(now.Add(time.Duration(k.timeout) * time.Millisecond))
		} else {
			u.ClearExecutionDeadline()
		}
		n, err := u.Save(ctx)
		if err != nil {
			return err
		}
		if n != len(ids) {
			return fmt.Errorf("claim: %d of %d locked candidates changed state", len(ids)-n, len(ids))
		}
	}
	return nil
}

// startTasks moves the pending tasks among cs to in_progress with one
// UPDATE: their first step was just claimed. The tasks are locked (or
// behind the single SQLite writer) and were read after the lock, so every
// task read as pending still is.
func startTasks(ctx context.Context, tx *ent.Tx, cs []*change, now time.Time) error {
	var ids []uuid.UUID
	for _, c := range cs {
		if taskStart.allows(c.task.State) {
			ids = append(ids, c.task.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// The state guard as an expression: a plain "state IN" lets SQLite,
	// which keeps no statistics, read every pending task through the state
	// index instead of these few by key. A pending task has never started,
	// so started_at is set outright.
	n, err := tx.Task.Update().
		Where(task.IDIn(ids...), func(s *sql.Selector) {
			s.Where(sql.P(func(b *sql.Builder) {
				b.WriteString("(" + s.C(task.FieldState) + " || '') = ").Arg(string(task.StatePending))
			}))
		}).
		SetState(taskStart.To).SetStartedAt(now).SetUpdatedAt(now).ClearFinishedAt().
		Save(ctx)
	if err != nil {
		return err
	}
	if n != len(ids) {
		return fmt.Errorf("claim: %d of %d tasks changed under their lock", len(ids)-n, len(ids))
	}
	started := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		started[id] = true
	}
	for _, c := range cs {
		if started[c.task.ID] {
			c.task.StartedAt = &now
			c.recordTask(taskStart, "first step claimed", nil)
		}
	}
	return nil
}

// withParents reads the parents' results of claimed steps.
func (e *Engine) withParents(ctx context.Context, claimed []*ent.Step, tasks map[uuid.UUID]*ent.Task) ([]Claim, error) {
	ids := make([]uuid.UUID, len(claimed))
	for i, s := range claimed {
		ids[i] = s.ID
	}
	deps, err := e.db.Reader.StepDependency.Query().Where(stepdependency.ChildIDIn(ids...)).All(ctx)
	if err != nil {
		return nil, err
	}
	parentIDs := make([]uuid.UUID, 0, len(deps))
	for _, d := range deps {
		parentIDs = append(parentIDs, d.ParentID)
	}
	parents := map[uuid.UUID]*ent.Step{}
	if len(parentIDs) > 0 {
		ps, err := e.db.Reader.Step.Query().Where(step.IDIn(parentIDs...)).
			Select(step.FieldID, step.FieldName, step.FieldResult, step.FieldPosition).All(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			parents[p.ID] = p
		}
	}
	byChild := map[uuid.UUID][]*ent.Step{}
	for _, d := range deps {
		if p, ok := parents[d.ParentID]; ok {
			byChild[d.ChildID] = append(byChild[d.ChildID], p)
		}
	}
	// Steps of one task share its Task.
	views := make(map[uuid.UUID]*Task, len(tasks))
	for id, t := range tasks {
		views[id] = taskFromRow(t)
	}
	out := make([]Claim, len(claimed))
	for i, s := range claimed {
		ps := byChild[s.ID]
		sort.Slice(ps, func(a, b int) bool { return ps[a].Position < ps[b].Position })
		c := Claim{Step: stepFromRow(s), Task: views[s.TaskID], LeaseToken: *s.LeaseToken}
		for _, p := range ps {
			c.Parents = append(c.Parents, ParentResult{Name: p.Name, StepID: p.ID, Result: p.Result})
		}
		out[i] = c
	}
	return out, nil
}
