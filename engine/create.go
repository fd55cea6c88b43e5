package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/step"
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

// CreateTask writes a task and all its steps in one transaction: the task
// and every step start pending (one transition each), then each root step
// moves to enqueued, due at RunAt or now. Each step gets its own copy of the
// effective retry policy, lease and timeout. The result says whether an
// existing task was returned instead (deduplication by the template's
// identity strategy or by the idempotency key). A new task's view is the
// one its transaction committed: it is built from the rows written, not
// read back.
func (e *Engine) CreateTask(ctx context.Context, p CreateTaskParams) (*TaskView, bool, error) {
	contextJSON, parentID, err := p.validate()
	if err != nil {
		return nil, false, err
	}
	tpl, err := e.templates.Resolve(ctx, p.Namespace, p.Name, p.Version)
	if err != nil {
		return nil, false, err
	}
	if err := e.checkContext(tpl, contextJSON); err != nil {
		return nil, false, err
	}
	if tpl.IdentityStrategy == tasktemplate.IdentityStrategyCallerKey && p.IdempotencyKey == "" {
		return nil, false, fault.Invalid("idempotency_key", "is required: template %s/%s uses the caller_key identity strategy", p.Namespace, p.Name)
	}
	var identity string
	if tpl.IdentityStrategy == tasktemplate.IdentityStrategyStrict {
		identity = identityHash(tpl, p.Namespace, contextJSON)
	}
	reqHash := p.requestHash(contextJSON)

	// A duplicate shows up as a unique violation; the existing task is read
	// after the failed transaction. A strict duplicate that finished in
	// between frees its identity, so the create is tried again once.
	for attempt := 0; ; attempt++ {
		v, err := e.insertTask(ctx, tpl, &p, contextJSON, parentID, identity, reqHash)
		if err == nil {
			return v, false, nil
		}
		if !errors.Is(err, storage.ErrUniqueViolation) {
			return nil, false, err
		}
		existing, err := e.findDuplicate(ctx, &p, identity, reqHash)
		if err != nil {
			return nil, false, err
		}
		if existing != nil {
			if err := e.recordDuplicate(ctx, existing, &p); err != nil {
				return nil, false, err
			}
			v, err := e.GetTask(ctx, existing.ID.String())
			return v, true, err
		}
		if attempt == 1 {
			return nil, false, fmt.Errorf("create task: unique violation without a duplicate to return")
		}
	}
}

func (e *Engine) insertTask(ctx context.Context, tpl *ent.TaskTemplate, p *CreateTaskParams,
	contextJSON []byte, parentID *uuid.UUID, identity, reqHash string,
) (*TaskView, error) {
	now := e.now()
	due := now
	if p.RunAt != nil && p.RunAt.After(now) {
		due = p.RunAt.UTC()
	}
	var created *TaskView
	err := e.db.Tx(storage.TxName(ctx, "CreateTask"), func(tx *ent.Tx) error {
		if parentID != nil {
			ok, err := tx.Task.Query().Where(task.ID(*parentID)).Exist(ctx)
			if err != nil {
				return err
			}
			if !ok {
				return fault.NotFoundf("task", parentID.String())
			}
		}
		tc := tx.Task.Create().
			SetID(uuid.Must(uuid.NewV7())).
			SetTemplateID(tpl.ID).
			SetNamespace(p.Namespace).
			SetTemplateName(tpl.Name).
			SetTemplateVersion(tpl.Version).
			SetState(task.StatePending).
			SetContext(contextJSON).
			SetRequestHash(reqHash).
			SetCorrelationID(p.CorrelationID).
			SetTraceParent(p.TraceParent).
			SetNillableParentTaskID(parentID).
			SetPriority(p.Priority).
			SetNillableRunAt(p.RunAt).
			SetInitiator(p.Initiator).
			SetSourceSystem(p.SourceSystem).
			SetReason(p.Reason).
			SetTags(p.Tags).
			SetCreatedAt(now).
			SetUpdatedAt(now)
		if identity != "" {
			tc.SetIdentityHash(identity)
		}
		if p.IdempotencyKey != "" {
			tc.SetIdempotencyKey(p.IdempotencyKey)
		}
		t, err := tc.Save(ctx)
		if err != nil {
			return err
		}
		created, err = e.insertSteps(ctx, tx, tpl, t, now, due)
		return err
	})
	if err != nil {
		return nil, e.db.InterpretError(err)
	}
	ready := map[HandlerRef]int{}
	for _, st := range created.Steps {
		if st.State == StepEnqueued {
			ready[HandlerRef{Namespace: st.Namespace, Handler: st.Handler}]++
		}
	}
	e.workCommitted(ready)
	e.appended()
	e.record(Observation{Kind: ObservedTaskCreated, Namespace: p.Namespace})
	return created, nil
}

// insertSteps writes the steps, their edges, the creation transitions and
// the events of a new task, and returns the task's view.
func (e *Engine) insertSteps(ctx context.Context, tx *ent.Tx, tpl *ent.TaskTemplate, t *ent.Task, now, due time.Time) (*TaskView, error) {
	stepTemplates := tpl.Edges.Steps
	v := &TaskView{Task: taskFromRow(t), Counts: map[StepState]int{}, DependsOn: map[uuid.UUID][]string{}}
	position := make(map[string]int, len(stepTemplates))
	ids := make(map[string]uuid.UUID, len(stepTemplates))
	for _, st := range stepTemplates {
		ids[st.Name] = uuid.Must(uuid.NewV7())
		position[st.Name] = st.Position
	}
	steps := make([]*ent.StepCreate, 0, len(stepTemplates))
	var edges []*ent.StepDependencyCreate
	stepTransitions := make([][]any, 0, len(stepTemplates)*2)
	evs := []events.Event{taskEvent(t, events.TaskCreated, now, map[string]any{
		"state": string(task.StatePending), "priority": t.Priority, "step_count": len(stepTemplates),
	})}
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
		stepTransitions = append(stepTransitions,
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
			stepTransitions = append(stepTransitions,
				stepTransitionRow(id, t.ID, string(step.StatePending), string(step.StateEnqueued), "root step", 0, nil, now))
			stepID := id
			evs = append(evs, events.Event{
				Type: events.StepEnqueued, CorrelationID: t.CorrelationID, Namespace: t.Namespace,
				TemplateName: t.TemplateName, TemplateVersion: t.TemplateVersion, TaskID: &t.ID, StepID: &stepID, At: now,
				Payload: map[string]any{
					"step_name": st.Name, "handler": st.Handler, "from_state": string(step.StatePending), "attempt": 0,
					"reason": "root step", "available_at": due.Format(time.RFC3339Nano),
				},
			})
		}
		steps = append(steps, sc)
		for _, parent := range st.DependsOn {
			edges = append(edges, tx.StepDependency.Create().SetParentID(ids[parent]).SetChildID(id))
		}
	}
	if err := createInChunks(steps, func(b []*ent.StepCreate) error {
		rows, err := tx.Step.CreateBulk(b...).Save(ctx)
		v.Steps = append(v.Steps, stepsFromRows(rows)...)
		return err
	}); err != nil {
		return nil, err
	}
	if err := createInChunks(edges, func(b []*ent.StepDependencyCreate) error { return tx.StepDependency.CreateBulk(b...).Exec(ctx) }); err != nil {
		return nil, err
	}
	taskTransitions := [][]any{taskTransitionRow(t.ID, "", string(task.StatePending), "created", nil, now)}
	if err := insertTransitions(ctx, tx, e.db.SQL(), stepTransitions, taskTransitions); err != nil {
		return nil, err
	}
	return v, events.Append(ctx, tx, e.db.SQL(), evs...)
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

// findDuplicate returns the task a failed insert collided with, nil when
// it is gone (a strict duplicate that finished meanwhile), or AlreadyExists
// when the idempotency key was used for a different request.
func (e *Engine) findDuplicate(ctx context.Context, p *CreateTaskParams, identity, reqHash string) (*ent.Task, error) {
	if p.IdempotencyKey != "" {
		t, err := e.db.Client.Task.Query().
			Where(task.Namespace(p.Namespace), task.IdempotencyKey(p.IdempotencyKey)).Only(ctx)
		switch {
		case ent.IsNotFound(err):
		case err != nil:
			return nil, err
		case t.CreatedAt.Before(e.now().Add(-e.opts.IdempotencyWindow)):
			// The key's window has passed: release it from the old task
			// (lazily, so no sweeper is needed) and let the insert retry.
			err := e.db.Client.Task.UpdateOne(t).ClearIdempotencyKey().Exec(ctx)
			return nil, err
		case t.RequestHash != reqHash:
			return nil, fault.AlreadyExistsf("idempotency key", p.IdempotencyKey,
				"was used for a different request (task %s)", t.ID)
		default:
			return t, nil
		}
	}
	if identity == "" {
		return nil, nil
	}
	t, err := e.db.Client.Task.Query().
		Where(task.IdentityHash(identity), task.StateIn(task.StatePending, task.StateInProgress)).
		First(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	return t, err
}

func (e *Engine) recordDuplicate(ctx context.Context, existing *ent.Task, p *CreateTaskParams) error {
	err := e.db.Tx(storage.TxName(ctx, "RecordDuplicate"), func(tx *ent.Tx) error {
		ev := taskEvent(existing, events.WorkflowDuplicateDetected, e.now(), map[string]any{
			"idempotency_key": p.IdempotencyKey, "request_correlation_id": p.CorrelationID,
		})
		return events.Append(ctx, tx, e.db.SQL(), ev)
	})
	e.appended()
	if err == nil {
		e.record(Observation{Kind: ObservedTaskDuplicated, Namespace: existing.Namespace})
	}
	return err
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
