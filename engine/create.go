package engine

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/stepdependency"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/ent/tasktemplate"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
)

// Limits of a CreateTask request, as the contract documents them.
const (
	maxContextBytes   = 1 << 20
	maxTags           = 32
	maxTagValueBytes  = 256
	maxShortText      = 256
	maxReasonBytes    = 1024
	maxPriority       = 1000
	maxIdempotencyKey = 256
)

var tagKeyPattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

// CreateTaskParams is a request for a new task.
type CreateTaskParams struct {
	Namespace, Name, Version string
	// Context is the task's JSON context; nil means {}.
	Context        map[string]any
	Initiator      string
	SourceSystem   string
	Reason         string
	Tags           map[string]string
	Priority       int32
	RunAt          *time.Time
	IdempotencyKey string
	ParentTaskID   string
	CorrelationID  string
	// TraceParent is the W3C traceparent of the creating call's span,
	// stored with the task; empty for none.
	TraceParent string
}

func (p *CreateTaskParams) validate() (contextJSON []byte, parent *uuid.UUID, err error) {
	var vs []fault.Violation
	add := func(field, format string, args ...any) {
		vs = append(vs, fault.Violation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	if p.Namespace == "" {
		add("namespace", "is required")
	}
	if p.Name == "" {
		add("name", "is required")
	}
	ctxMap := p.Context
	if ctxMap == nil {
		ctxMap = map[string]any{}
	}
	// encoding/json sorts map keys: the stored context is canonical, which
	// the strict identity hash relies on.
	contextJSON, err = json.Marshal(ctxMap)
	switch {
	case err != nil:
		add("context", "is not a JSON document: %v", err)
	case len(contextJSON) > maxContextBytes:
		add("context", "is %d bytes; at most %d", len(contextJSON), maxContextBytes)
	}
	if len(p.Initiator) > maxShortText {
		add("initiator", "is longer than %d bytes", maxShortText)
	}
	if len(p.SourceSystem) > maxShortText {
		add("source_system", "is longer than %d bytes", maxShortText)
	}
	if len(p.Reason) > maxReasonBytes {
		add("reason", "is longer than %d bytes", maxReasonBytes)
	}
	if len(p.Tags) > maxTags {
		add("tags", "has %d entries; at most %d", len(p.Tags), maxTags)
	}
	for k, v := range p.Tags {
		if !tagKeyPattern.MatchString(k) {
			add("tags", "key %q must match %s", k, tagKeyPattern)
		}
		if len(v) > maxTagValueBytes {
			add("tags["+k+"]", "is longer than %d bytes", maxTagValueBytes)
		}
	}
	if p.RunAt != nil {
		// What PostgreSQL keeps, so the answer matches later reads.
		at := p.RunAt.UTC().Truncate(time.Microsecond)
		p.RunAt = &at
	}
	if p.Priority < -maxPriority || p.Priority > maxPriority {
		add("priority", "must be between %d and %d", -maxPriority, maxPriority)
	}
	if len(p.IdempotencyKey) > maxIdempotencyKey {
		add("idempotency_key", "is longer than %d bytes", maxIdempotencyKey)
	}
	if p.ParentTaskID != "" {
		id, perr := uuid.Parse(p.ParentTaskID)
		if perr != nil {
			add("parent_task_id", "is not a UUID")
		} else {
			parent = &id
		}
	}
	if len(vs) > 0 {
		return nil, nil, fault.Invalids(vs)
	}
	return contextJSON, parent, nil
}

// requestHash fingerprints a request as sent, so a retried CreateTask with
// the same idempotency key is told apart from a different request reusing
// the key.
func (p *CreateTaskParams) requestHash(contextJSON []byte) string {
	var runAt string
	if p.RunAt != nil {
		runAt = p.RunAt.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal([]any{p.Namespace, p.Name, p.Version, json.RawMessage(contextJSON),
		p.Initiator, p.SourceSystem, p.Reason, p.Tags, p.Priority, runAt, p.ParentTaskID})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// identityHash is the strict identity: the template version and the
// canonical context.
func identityHash(tpl *ent.TaskTemplate, namespace string, contextJSON []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", namespace, tpl.Name, tpl.Version)
	h.Write(contextJSON)
	return hex.EncodeToString(h.Sum(nil))
}

// Creation is one entry's outcome of CreateTasks.
type Creation struct {
	// Task is the new task, or the existing one when Duplicate is set; nil
	// when Err is set.
	Task      *TaskView
	Duplicate bool
	// Err is why the entry was refused, as CreateTask would return it.
	Err error
}

// CreateTask creates one task: CreateTasks with one entry. A duplicate is
// answered with the existing task as GetTask reads it, steps included.
func (e *Engine) CreateTask(ctx context.Context, p CreateTaskParams) (*TaskView, bool, error) {
	c := e.createTasks(ctx, []CreateTaskParams{p}, true)[0]
	return c.Task, c.Duplicate, c.Err
}

// CreateTasks creates tasks in one transaction whose statements do not
// grow with the batch: one read of the parent tasks named, one each of the
// tasks holding the entries' idempotency keys and strict identities, then
// one insert each (per chunk of rows) for the tasks, their steps,
// dependencies, transitions and events.
//
// Each task and every step of it start pending (one transition each), then
// each root step moves to enqueued, due at RunAt or now. Each step gets its
// own copy of the effective retry policy, lease and timeout. A new task's
// view is the one the transaction committed: it is built from the rows
// written, not read back, steps included.
//
// It returns one outcome per entry, in order, as CreateTask would have
// answered each alone: an entry that is invalid, names an unknown
// template, parent or version, or reuses an idempotency key for a
// different request is refused and writes nothing, without failing the
// others. An entry deduplicated by the template's identity strategy or its
// idempotency key is answered with the existing task (read after the
// commit, without steps) and Duplicate set, and records
// workflow.duplicate_detected on it; the existing task may be one an
// earlier entry of the batch creates. An error of the transaction itself
// is every remaining entry's.
func (e *Engine) CreateTasks(ctx context.Context, ps []CreateTaskParams) []Creation {
	return e.createTasks(ctx, ps, false)
}

// maxCreateAttempts bounds how often the creating transaction runs: again
// after a concurrent creation took a key or identity it had read as free
// (each such attempt lost to a commit, so the creations as a whole
// progress), or after expired idempotency keys were released.
const maxCreateAttempts = 5

// errExpiredKeys ends an attempt that found idempotency keys whose window
// has passed: they are released outside the transaction, then it runs
// again.
var errExpiredKeys = errors.New("create tasks: expired idempotency keys")

func (e *Engine) createTasks(ctx context.Context, ps []CreateTaskParams, withSteps bool) []Creation {
	out := make([]Creation, len(ps))
	entries := make([]*createEntry, 0, len(ps))
	templates := map[[3]string]resolved{}
	for i, p := range ps {
		en, err := e.prepare(ctx, p, templates)
		if err != nil {
			out[i].Err = err
			continue
		}
		en.i = i
		entries = append(entries, en)
	}
	if len(entries) == 0 {
		return out
	}
	var plan *createPlan
	var err error
	for attempt := 1; ; attempt++ {
		err = e.db.Tx(storage.TxName(ctx, "CreateTask"), func(tx *ent.Tx) error {
			var err error
			plan, err = e.createIn(ctx, tx, entries, e.now())
			return err
		})
		if attempt == maxCreateAttempts {
			break
		}
		if errors.Is(err, errExpiredKeys) {
			if err = e.releaseKeys(ctx, plan.expired); err != nil {
				break
			}
			continue
		}
		// A concurrent creation committed a task holding a key or an
		// identity this attempt read as free: the next attempt finds it.
		if !errors.Is(err, storage.ErrUniqueViolation) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, storage.ErrUniqueViolation) || errors.Is(err, errExpiredKeys) {
			err = fmt.Errorf("create tasks: no attempt of %d settled the deduplication keys: %w", maxCreateAttempts, err)
		}
		for _, en := range entries {
			out[en.i].Err = err
		}
		return out
	}
	if plan.appended {
		e.appended()
	}
	if len(plan.ready) > 0 {
		e.workCommitted(plan.ready)
	}
	e.record(plan.obs...)
	for k, en := range entries {
		out[en.i] = plan.outcomes[k]
	}
	if len(plan.existing) > 0 {
		e.answerDuplicates(ctx, out, entries, plan.existing, withSteps)
	}
	return out
}

// createEntry is an entry of CreateTasks that passed every check needing
// no transaction.
type createEntry struct {
	i           int // its index in the request
	p           CreateTaskParams
	tpl         *ent.TaskTemplate
	contextJSON []byte
	parent      *uuid.UUID
	identity    string
	reqHash     string
}

type resolved struct {
	tpl *ent.TaskTemplate
	err error
}

// prepare checks p as far as it can be without a transaction, resolving
// each template version once per batch.
func (e *Engine) prepare(ctx context.Context, p CreateTaskParams, templates map[[3]string]resolved) (*createEntry, error) {
	contextJSON, parentID, err := p.validate()
	if err != nil {
		return nil, err
	}
	ref := [3]string{p.Namespace, p.Name, p.Version}
	r, ok := templates[ref]
	if !ok {
		r.tpl, r.err = e.templates.Resolve(ctx, p.Namespace, p.Name, p.Version)
		templates[ref] = r
	}
	if r.err != nil {
		return nil, r.err
	}
	tpl := r.tpl
	if err := e.checkContext(tpl, contextJSON); err != nil {
		return nil, err
	}
	if tpl.IdentityStrategy == tasktemplate.IdentityStrategyCallerKey && p.IdempotencyKey == "" {
		return nil, fault.Invalid("idempotency_key", "is required: template %s/%s uses the caller_key identity strategy", p.Namespace, p.Name)
	}
	en := &createEntry{p: p, tpl: tpl, contextJSON: contextJSON, parent: parentID, reqHash: p.requestHash(contextJSON)}
	if tpl.IdentityStrategy == tasktemplate.IdentityStrategyStrict {
		en.identity = identityHash(tpl, p.Namespace, contextJSON)
	}
	return en, nil
}

// createPlan is what one attempt of the creating transaction decided.
type createPlan struct {
	// outcomes is each entry's, by its index in the entries: new tasks and
	// duplicates of this batch's tasks have their view, duplicates of
	// stored tasks get theirs after the commit (existing).
	outcomes []Creation
	existing map[int]*ent.Task
	// expired are the holders of idempotency keys whose window has passed
	// (with errExpiredKeys).
	expired  []*ent.Task
	ready    map[HandlerRef]int
	obs      []Observation
	appended bool
}

// keyRef is an idempotency key in its namespace.
type keyRef struct{ namespace, key string }

// dedupTarget is a task an entry may duplicate: a stored one, or one an
// earlier entry of the batch creates.
type dedupTarget struct {
	id      uuid.UUID
	reqHash string
	stored  *ent.Task
	// entry is the index of the entry creating it when stored is nil.
	entry int
}

// createIn runs one attempt of the creating transaction.
func (e *Engine) createIn(ctx context.Context, tx *ent.Tx, entries []*createEntry, now time.Time) (*createPlan, error) {
	plan := &createPlan{outcomes: make([]Creation, len(entries)), existing: map[int]*ent.Task{}, ready: map[HandlerRef]int{}}
	parents, err := existingParents(ctx, tx, entries)
	if err != nil {
		return plan, err
	}
	byKey, byIdentity, expired, err := e.dedupTargets(ctx, tx, entries, now)
	if err != nil {
		return plan, err
	}
	if len(expired) > 0 {
		plan.expired = expired
		return plan, errExpiredKeys
	}

	// Each entry in order: refused, a duplicate, or new (and then what
	// later entries may duplicate).
	dups := make([]*dedupTarget, len(entries))
	news := make([]*dedupTarget, len(entries))
	for k, en := range entries {
		if en.parent != nil && !parents[*en.parent] {
			plan.outcomes[k].Err = fault.NotFoundf("task", en.parent.String())
			continue
		}
		key := keyRef{en.p.Namespace, en.p.IdempotencyKey}
		if en.p.IdempotencyKey != "" {
			if t := byKey[key]; t != nil {
				if t.reqHash != en.reqHash {
					plan.outcomes[k].Err = fault.AlreadyExistsf("idempotency key", en.p.IdempotencyKey,
						"was used for a different request (task %s)", t.id)
					continue
				}
				dups[k] = t
				continue
			}
		}
		if t := byIdentity[en.identity]; en.identity != "" && t != nil {
			dups[k] = t
			continue
		}
		t := &dedupTarget{id: uuid.Must(uuid.NewV7()), reqHash: en.reqHash, entry: k}
		if en.p.IdempotencyKey != "" {
			byKey[key] = t
		}
		if en.identity != "" {
			byIdentity[en.identity] = t
		}
		news[k] = t
	}

	rows, err := insertTasks(ctx, tx, entries, news, now)
	if err != nil {
		return plan, err
	}
	c := &creation{}
	for k, en := range entries {
		if news[k] != nil {
			row := rows[news[k].id]
			due := now
			if en.p.RunAt != nil && en.p.RunAt.After(now) {
				due = en.p.RunAt.UTC()
			}
			v := c.addTask(tx, en.tpl, row, now, due)
			plan.outcomes[k].Task = v
			plan.obs = append(plan.obs, Observation{Kind: ObservedTaskCreated, Namespace: row.Namespace})
			continue
		}
		d := dups[k]
		if d == nil {
			continue
		}
		existing := d.stored
		if existing == nil {
			existing = rows[d.id]
			plan.outcomes[k].Task = plan.outcomes[d.entry].Task
		} else {
			plan.existing[k] = existing
		}
		plan.outcomes[k].Duplicate = true
		c.events = append(c.events, taskEvent(existing, events.WorkflowDuplicateDetected, now, map[string]any{
			"idempotency_key": en.p.IdempotencyKey, "request_correlation_id": en.p.CorrelationID,
		}))
		plan.obs = append(plan.obs, Observation{Kind: ObservedTaskDuplicated, Namespace: existing.Namespace})
	}
	if err := c.write(ctx, tx, e.db.SQL()); err != nil {
		return plan, err
	}
	for _, v := range c.tasks {
		for _, st := range v.Steps {
			if st.State == StepEnqueued {
				plan.ready[HandlerRef{Namespace: st.Namespace, Handler: st.Handler}]++
			}
		}
	}
	plan.appended = len(c.events) > 0
	return plan, nil
}

// existingParents reads which of the parent tasks the entries name exist.
func existingParents(ctx context.Context, tx *ent.Tx, entries []*createEntry) (map[uuid.UUID]bool, error) {
	var named []uuid.UUID
	for _, en := range entries {
		if en.parent != nil {
			named = append(named, *en.parent)
		}
	}
	if len(named) == 0 {
		return nil, nil
	}
	ids, err := tx.Task.Query().Where(task.IDIn(named...)).IDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// dedupTargets reads the stored tasks holding the entries' idempotency
// keys and strict identities (those unfinished, as the unique index has
// them), and the holders of keys whose window has passed.
func (e *Engine) dedupTargets(ctx context.Context, tx *ent.Tx, entries []*createEntry, now time.Time) (
	byKey map[keyRef]*dedupTarget, byIdentity map[string]*dedupTarget, expired []*ent.Task, err error,
) {
	byKey, byIdentity = map[keyRef]*dedupTarget{}, map[string]*dedupTarget{}
	wanted := map[keyRef]bool{}
	var namespaces, keys, identities []string
	for _, en := range entries {
		if k := (keyRef{en.p.Namespace, en.p.IdempotencyKey}); k.key != "" && !wanted[k] {
			wanted[k] = true
			namespaces = append(namespaces, k.namespace)
			keys = append(keys, k.key)
		}
		if en.identity != "" {
			identities = append(identities, en.identity)
		}
	}
	if len(keys) > 0 {
		rows, err := tx.Task.Query().Where(task.NamespaceIn(namespaces...), task.IdempotencyKeyIn(keys...)).All(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		cutoff := now.Add(-e.opts.IdempotencyWindow)
		for _, t := range rows {
			k := keyRef{t.Namespace, *t.IdempotencyKey}
			switch {
			case !wanted[k]:
				// A namespace of one entry with the key of another.
			case t.CreatedAt.Before(cutoff):
				expired = append(expired, t)
			default:
				byKey[k] = &dedupTarget{id: t.ID, reqHash: t.RequestHash, stored: t}
			}
		}
	}
	if len(identities) > 0 {
		rows, err := tx.Task.Query().Where(task.IdentityHashIn(identities...), task.FinishedAtIsNil()).All(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, t := range rows {
			byIdentity[*t.IdentityHash] = &dedupTarget{id: t.ID, reqHash: t.RequestHash, stored: t}
		}
	}
	return byKey, byIdentity, expired, nil
}

// releaseKeys frees idempotency keys whose window has passed from the old
// tasks holding them, lazily (no sweeper needed), each with a single-row
// update of its own outside any other lock (doc.go, "Lock order").
func (e *Engine) releaseKeys(ctx context.Context, holders []*ent.Task) error {
	for _, t := range holders {
		if err := e.db.Client.Task.UpdateOne(t).ClearIdempotencyKey().Exec(ctx); err != nil {
			return e.db.InterpretError(err)
		}
	}
	return nil
}

// insertTasks writes the rows of the new tasks (entries[k] where news[k]
// is set, with its id), sorted by their idempotency key, then their strict
// identity: on PostgreSQL an insert meeting a key another transaction holds
// uncommitted waits for it, and two batches inserting shared keys in one
// order cannot wait for each other.
func insertTasks(ctx context.Context, tx *ent.Tx, entries []*createEntry, news []*dedupTarget, now time.Time) (map[uuid.UUID]*ent.Task, error) {
	var order []int
	for k, t := range news {
		if t != nil {
			order = append(order, k)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		pa, pb := &entries[a].p, &entries[b].p
		return cmp.Or(cmp.Compare(pa.Namespace, pb.Namespace), cmp.Compare(pa.IdempotencyKey, pb.IdempotencyKey),
			cmp.Compare(entries[a].identity, entries[b].identity))
	})
	builders := make([]*ent.TaskCreate, len(order))
	for j, k := range order {
		en := entries[k]
		p := &en.p
		tc := tx.Task.Create().
			SetID(news[k].id).
			SetTemplateID(en.tpl.ID).
			SetNamespace(p.Namespace).
			SetTemplateName(en.tpl.Name).
			SetTemplateVersion(en.tpl.Version).
			SetState(task.StatePending).
			SetContext(en.contextJSON).
			SetRequestHash(en.reqHash).
			SetCorrelationID(p.CorrelationID).
			SetTraceParent(p.TraceParent).
			SetNillableParentTaskID(en.parent).
			SetPriority(p.Priority).
			SetNillableRunAt(p.RunAt).
			SetInitiator(p.Initiator).
			SetSourceSystem(p.SourceSystem).
			SetReason(p.Reason).
			SetTags(p.Tags).
			SetCreatedAt(now).
			SetUpdatedAt(now)
		if en.identity != "" {
			tc.SetIdentityHash(en.identity)
		}
		if p.IdempotencyKey != "" {
			tc.SetIdempotencyKey(p.IdempotencyKey)
		}
		builders[j] = tc
	}
	rows := make(map[uuid.UUID]*ent.Task, len(builders))
	err := createInChunks(builders, func(b []*ent.TaskCreate) error {
		saved, err := tx.Task.CreateBulk(b...).Save(ctx)
		for _, t := range saved {
			rows[t.ID] = t
		}
		return err
	})
	return rows, err
}

// answerDuplicates reads the existing tasks that answer duplicate entries
// (entries[k] for k in existing), as they are after the commit: each with
// its steps as GetTask reads it when withSteps is set, else all with their
// step counts in three statements. A task gone meanwhile (retention) is
// answered as it was read in the transaction.
func (e *Engine) answerDuplicates(ctx context.Context, out []Creation, entries []*createEntry, existing map[int]*ent.Task, withSteps bool) {
	if withSteps {
		for k, t := range existing {
			c := &out[entries[k].i]
			c.Task, c.Err = e.GetTask(ctx, t.ID.String())
			if c.Err != nil {
				c.Task, c.Duplicate = nil, false
			}
		}
		return
	}
	ids := make([]uuid.UUID, 0, len(existing))
	for _, t := range existing {
		ids = append(ids, t.ID)
	}
	fresh, err := e.db.Reader.Task.Query().Where(task.IDIn(ids...)).All(ctx)
	byID := make(map[uuid.UUID]*ent.Task, len(fresh))
	for _, t := range fresh {
		byID[t.ID] = t
	}
	ks := slices.Sorted(maps.Keys(existing))
	rows := make([]*ent.Task, len(ks))
	for j, k := range ks {
		rows[j] = cmp.Or(byID[existing[k].ID], existing[k])
	}
	var views []*TaskView
	if err == nil {
		views, err = e.summarize(ctx, rows)
	}
	for j, k := range ks {
		c := &out[entries[k].i]
		if err != nil {
			c.Task, c.Duplicate, c.Err = nil, false, err
			continue
		}
		c.Task = views[j]
	}
}

// creation gathers the rows of the tasks one transaction creates, so they
// are written with a fixed number of statements whatever their number.
type creation struct {
	tasks []*TaskView
	// steps are the steps of tasks in order; stepsOf[i] of them are
	// tasks[i]'s.
	steps           []*ent.StepCreate
	stepsOf         []int
	edges           [][]any
	stepTransitions [][]any
	taskTransitions [][]any
	events          []events.Event
}

// addTask adds the steps, their edges, the creation transitions and the
// events of the new task t, and returns the task's view; its steps are
// filled in by write.
func (c *creation) addTask(tx *ent.Tx, tpl *ent.TaskTemplate, t *ent.Task, now, due time.Time) *TaskView {
	stepTemplates := tpl.Edges.Steps
	v := &TaskView{Task: taskFromRow(t), Counts: map[StepState]int{}, DependsOn: map[uuid.UUID][]string{}}
	position := make(map[string]int, len(stepTemplates))
	ids := make(map[string]uuid.UUID, len(stepTemplates))
	for _, st := range stepTemplates {
		ids[st.Name] = uuid.Must(uuid.NewV7())
		position[st.Name] = st.Position
	}
	c.events = append(c.events, taskEvent(t, events.TaskCreated, now, map[string]any{
		"state": string(task.StatePending), "priority": t.Priority, "step_count": len(stepTemplates),
	}))
	for _, st := range stepTemplates {
		id := ids[st.Name]
		pol := effectivePolicy(tpl, st)
		state := step.StatePending
		if len(st.DependsOn) == 0 {
			state = step.StateEnqueued
		}
		sc := tx.Step.Create().
			SetID(id).
			SetTaskID(t.ID).
			SetNamespace(t.Namespace).
			SetName(st.Name).
			SetHandler(st.Handler).
			SetConfig(st.Config).
			SetState(state).
			SetPriority(t.Priority).
			SetMaxAttempts(pol.maxAttempts).
			SetAttemptBudget(pol.maxAttempts).
			SetBackoffInitialMs(pol.backoffInitialMs).
			SetBackoffMultiplier(pol.backoffMultiplier).
			SetBackoffMaxMs(pol.backoffMaxMs).
			SetBackoffJitter(pol.backoffJitter).
			SetLeaseDurationMs(pol.leaseDurationMs).
			SetExecutionTimeoutMs(pol.executionTimeoutMs).
			SetPendingParents(len(st.DependsOn)).
			SetPosition(st.Position).
			SetCreatedAt(now).
			SetUpdatedAt(now)
		c.stepTransitions = append(c.stepTransitions,
			stepTransitionRow(id, t.ID, "", string(step.StatePending), "task created", 0, nil, now))
		v.Counts[StepState(state)]++
		if len(st.DependsOn) > 0 {
			parents := append([]string(nil), st.DependsOn...)
			sortByPosition(parents, position)
			v.DependsOn[id] = parents
		}
		if state == step.StateEnqueued {
			if !due.After(now) {
				v.Due++
			}
			sc.SetAvailableAt(due).SetClaimableAt(due)
			c.stepTransitions = append(c.stepTransitions,
				stepTransitionRow(id, t.ID, string(step.StatePending), string(step.StateEnqueued), "root step", 0, nil, now))
			stepID := id
			c.events = append(c.events, events.Event{
				Type: events.StepEnqueued, CorrelationID: t.CorrelationID, Namespace: t.Namespace,
				TemplateName: t.TemplateName, TemplateVersion: t.TemplateVersion, TaskID: &t.ID, StepID: &stepID, At: now,
				Payload: map[string]any{
					"step_name": st.Name, "handler": st.Handler, "from_state": string(step.StatePending), "attempt": 0,
					"reason": "root step", "available_at": due.Format(time.RFC3339Nano),
				},
			})
		}
		c.steps = append(c.steps, sc)
		for _, parent := range st.DependsOn {
			c.edges = append(c.edges, []any{ids[parent], id})
		}
	}
	c.taskTransitions = append(c.taskTransitions, taskTransitionRow(t.ID, "", string(task.StatePending), "created", nil, now))
	c.tasks = append(c.tasks, v)
	c.stepsOf = append(c.stepsOf, len(stepTemplates))
	return v
}

// edgeColumns are the columns of a step dependency row, in the order
// addTask writes them.
var edgeColumns = []string{stepdependency.FieldParentID, stepdependency.FieldChildID}

// write inserts what c gathered: the steps (read back as ent builds them,
// for the tasks' views), then the dependencies, transitions and events.
func (c *creation) write(ctx context.Context, tx *ent.Tx, d storage.Dialect) error {
	rows := make([]*ent.Step, 0, len(c.steps))
	if err := createInChunks(c.steps, func(b []*ent.StepCreate) error {
		saved, err := tx.Step.CreateBulk(b...).Save(ctx)
		rows = append(rows, saved...)
		return err
	}); err != nil {
		return err
	}
	start := 0
	for i, v := range c.tasks {
		v.Steps = stepsFromRows(rows[start : start+c.stepsOf[i]])
		start += c.stepsOf[i]
	}
	if err := storage.InsertRows(ctx, tx, d, stepdependency.Table, edgeColumns, c.edges); err != nil {
		return fmt.Errorf("write step dependencies: %w", err)
	}
	if err := insertTransitions(ctx, tx, d, c.stepTransitions, c.taskTransitions); err != nil {
		return err
	}
	return events.Append(ctx, tx, d, c.events...)
}

// bulkChunk keeps one INSERT under both databases' bound-parameter limits
// (a step row has about thirty columns).
const bulkChunk = 300

func createInChunks[T any](items []T, exec func([]T) error) error {
	for start := 0; start < len(items); start += bulkChunk {
		if err := exec(items[start:min(start+bulkChunk, len(items))]); err != nil {
			return err
		}
	}
	return nil
}

func taskEvent(t *ent.Task, typ string, at time.Time, payload map[string]any) events.Event {
	id := t.ID
	return events.Event{
		Type: typ, CorrelationID: t.CorrelationID, Namespace: t.Namespace,
		TemplateName: t.TemplateName, TemplateVersion: t.TemplateVersion, TaskID: &id, At: at, Payload: payload,
	}
}

// checkContext validates a context against the template's JSON Schema.
func (e *Engine) checkContext(tpl *ent.TaskTemplate, contextJSON []byte) error {
	if len(tpl.ContextSchema) == 0 {
		return nil
	}
	schema, err := e.schemas.get(tpl)
	if err != nil {
		return fmt.Errorf("compile context schema of template %d: %w", tpl.ID, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(contextJSON))
	if err != nil {
		return fault.Invalid("context", "is not a JSON document: %v", err)
	}
	if err := schema.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fault.Invalids(schemaViolations(ve))
		}
		return fault.Invalid("context", "does not match the template's context schema")
	}
	return nil
}

// maxSchemaViolations bounds the violations one context reports.
const maxSchemaViolations = 20

// schemaViolations names each failed rule of ve by the context path and the
// schema keyword (context.card.pin: fails the schema rule
// /properties/card/properties/pin/pattern), never by the value: the
// library's own messages quote the value ("'1234' does not match
// pattern ..."), and a context may carry a secret.
func schemaViolations(ve *jsonschema.ValidationError) []fault.Violation {
	var vs []fault.Violation
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(vs) >= maxSchemaViolations {
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		field := "context"
		for _, k := range e.InstanceLocation {
			field += "." + fault.Clip(k)
		}
		// The schema's location of the rule: its JSON pointer, then the
		// keyword. Both come from the template, not the request.
		_, pointer, _ := strings.Cut(e.SchemaURL, "#")
		rule := pointer + "/" + strings.Join(e.ErrorKind.KeywordPath(), "/")
		vs = append(vs, fault.Violation{Field: field, Description: "fails the context schema's rule " + rule})
	}
	walk(ve)
	if len(vs) == 0 {
		vs = append(vs, fault.Violation{Field: "context", Description: "does not match the template's context schema"})
	}
	return vs
}

// schemaCache keeps compiled context schemas by template version content;
// a replaced template has a new hash and so a new entry.
type schemaCache struct {
	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
}

func newSchemaCache() *schemaCache { return &schemaCache{schemas: map[string]*jsonschema.Schema{}} }

func (c *schemaCache) get(tpl *ent.TaskTemplate) (*jsonschema.Schema, error) {
	key := tpl.ContentHash
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.schemas[key]; ok {
		return s, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(tpl.ContextSchema))
	if err != nil {
		return nil, err
	}
	s, err := registry.CompileSchema(doc)
	if err != nil {
		return nil, err
	}
	c.schemas[key] = s
	return s, nil
}
