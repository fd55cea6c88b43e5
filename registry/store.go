package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/Masterminds/semver/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/namespace"
	"github.com/taskerhq/tasker/ent/predicate"
	"github.com/taskerhq/tasker/ent/steptemplate"
	"github.com/taskerhq/tasker/ent/tasktemplate"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/page"
	"github.com/taskerhq/tasker/storage"
)

// Page sizes of List and Namespaces, as documented on the list requests.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// Store keeps the registered template versions in the database.
type Store struct {
	db       *storage.DB
	cache    templateCache
	appended func()
}

// NewStore returns a Store on db.
func NewStore(db *storage.DB) *Store {
	return &Store{db: db, cache: templateCache{rows: map[templateKey]*ent.TaskTemplate{}}}
}

// OnAppend sets fn to be called after every commit that appended events
// (registrations): pass (*events.Log).Appended, so readers on SQLite and the
// sequencer on PostgreSQL learn of them at once. Call it before use.
func (s *Store) OnAppend(fn func()) { s.appended = fn }

// Register validates tpl and stores it as RegisterTaskTemplate documents:
// a new version is CREATED; the same content again is UNCHANGED and writes
// nothing; different content is REPLACED when replace is set, and
// AlreadyExists otherwise. The template is stored normalized (Normalize),
// and the one returned is the stored version, output-only fields
// included. A creation or
// replacement appends registry.template_registered or
// registry.template_replaced to the event log in the same transaction,
// with the correlation id of ctx. Concurrent
// registrations of the same version all succeed when their content is the
// same: one creates it, the others find it unchanged.
func (s *Store) Register(ctx context.Context, tpl *taskerv1.TaskTemplate, replace bool) (*taskerv1.TaskTemplate, taskerv1.RegistrationOutcome, error) {
	if err := Validate(tpl); err != nil {
		return nil, 0, err
	}
	n := Normalize(tpl)
	hash := ContentHash(n)
	var (
		row     *ent.TaskTemplate
		outcome taskerv1.RegistrationOutcome
	)
	run := func(tx *ent.Tx) (err error) {
		row, outcome, err = s.register(ctx, tx, n, hash, replace)
		return err
	}
	txCtx := storage.TxName(ctx, "RegisterTaskTemplate")
	err := s.db.Tx(txCtx, run)
	if errors.Is(err, storage.ErrUniqueViolation) {
		// A registration racing ours for the same new version made our
		// insert fail on the unique index when it committed; running again
		// finds its row.
		err = s.db.Tx(txCtx, run)
	}
	if err != nil {
		return nil, 0, err
	}
	if outcome != taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED && s.appended != nil {
		s.appended()
	}
	return toProto(row), outcome, nil
}

func (s *Store) register(ctx context.Context, tx *ent.Tx, n *taskerv1.TaskTemplate, hash string, replace bool) (*ent.TaskTemplate, taskerv1.RegistrationOutcome, error) {
	nsID, err := ensureNamespace(ctx, tx, n.GetNamespace())
	if err != nil {
		return nil, 0, err
	}
	existing, err := tx.TaskTemplate.Query().
		Where(tasktemplate.NamespaceID(nsID), tasktemplate.Name(n.GetName()), tasktemplate.Version(n.GetVersion())).
		Only(ctx)
	now := time.Now().UTC().Truncate(time.Microsecond)
	var outcome taskerv1.RegistrationOutcome
	ev := events.Event{
		Type:            events.RegistryTemplateRegistered,
		CorrelationID:   correlation.FromContext(ctx),
		Namespace:       n.GetNamespace(),
		TemplateName:    n.GetName(),
		TemplateVersion: n.GetVersion(),
		Payload:         map[string]any{"content_hash": hash, "step_count": len(n.GetSteps())},
		At:              now,
	}
	switch {
	case ent.IsNotFound(err):
		c := tx.TaskTemplate.Create().
			SetNamespaceID(nsID).
			SetName(n.GetName()).
			SetVersion(n.GetVersion()).
			SetCreatedAt(now)
		applyTemplate(c.Mutation(), n, hash, now)
		created, err := c.Save(ctx)
		if err != nil {
			return nil, 0, err
		}
		existing, outcome = created, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_CREATED
	case err != nil:
		return nil, 0, err
	case existing.ContentHash == hash:
		outcome = taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED
	case !replace:
		return nil, 0, fault.AlreadyExistsf("task template", templateRef(n.GetNamespace(), n.GetName(), n.GetVersion()),
			"registered with different content; set replace to overwrite")
	default:
		u := tx.TaskTemplate.UpdateOne(existing)
		applyTemplate(u.Mutation(), n, hash, now)
		if err := u.Exec(ctx); err != nil {
			return nil, 0, err
		}
		if _, err := tx.StepTemplate.Delete().Where(steptemplate.TemplateID(existing.ID)).Exec(ctx); err != nil {
			return nil, 0, err
		}
		outcome = taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_REPLACED
		ev.Type = events.RegistryTemplateReplaced
		ev.Payload["previous_content_hash"] = existing.ContentHash
	}
	if outcome != taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED {
		if err := createSteps(ctx, tx, existing.ID, n.GetSteps()); err != nil {
			return nil, 0, err
		}
		// In this transaction, so the event commits with the change.
		if err := events.Append(ctx, tx, s.db.SQL(), ev); err != nil {
			return nil, 0, err
		}
	}
	row, err := queryTemplates(tx.Client()).Where(tasktemplate.ID(existing.ID)).Only(ctx)
	if err != nil {
		return nil, 0, err
	}
	return row, outcome, nil
}

// ensureNamespace returns the id of the namespace, creating it if needed.
// ON CONFLICT DO NOTHING lets registrations that create the same new
// namespace concurrently all succeed: on PostgreSQL the later insert waits
// for the first to commit and then inserts nothing, and the query that
// follows, a new statement, sees the committed row.
func ensureNamespace(ctx context.Context, tx *ent.Tx, name string) (int, error) {
	id, err := tx.Namespace.Query().Where(namespace.Name(name)).OnlyID(ctx)
	if !ent.IsNotFound(err) {
		return id, err
	}
	err = tx.Namespace.Create().SetName(name).OnConflictColumns(namespace.FieldName).DoNothing().Exec(ctx)
	// Inserting nothing returns no id, which ent reports as no rows.
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return tx.Namespace.Query().Where(namespace.Name(name)).OnlyID(ctx)
}

// templateMutation is what creating and updating a template row share.
type templateMutation interface {
	SetDescription(string)
	SetIdentityStrategy(tasktemplate.IdentityStrategy)
	SetContextSchema(json.RawMessage)
	ClearContextSchema()
	SetMaxAttempts(int)
	SetBackoffInitialMs(int64)
	SetBackoffMultiplier(float64)
	SetBackoffMaxMs(int64)
	SetBackoffJitter(float64)
	SetLeaseDurationMs(int64)
	SetExecutionTimeoutMs(int64)
	SetContentHash(string)
	SetUpdatedAt(time.Time)
}

// applyTemplate sets the columns of a normalized template.
func applyTemplate(m templateMutation, n *taskerv1.TaskTemplate, hash string, now time.Time) {
	m.SetDescription(n.GetDescription())
	m.SetIdentityStrategy(identityToEnt[n.GetIdentityStrategy()])
	if cs := n.GetContextSchema(); cs != nil {
		m.SetContextSchema(mustJSON(cs))
	} else {
		m.ClearContextSchema()
	}
	rp := n.GetRetryPolicy()
	m.SetMaxAttempts(int(rp.GetMaxAttempts()))
	m.SetBackoffInitialMs(rp.GetInitialBackoff().AsDuration().Milliseconds())
	m.SetBackoffMultiplier(rp.GetBackoffMultiplier())
	m.SetBackoffMaxMs(rp.GetMaxBackoff().AsDuration().Milliseconds())
	m.SetBackoffJitter(rp.GetJitter())
	m.SetLeaseDurationMs(n.GetLeaseDuration().AsDuration().Milliseconds())
	m.SetExecutionTimeoutMs(n.GetExecutionTimeout().AsDuration().Milliseconds())
	m.SetContentHash(hash)
	m.SetUpdatedAt(now)
}

func createSteps(ctx context.Context, tx *ent.Tx, templateID int, steps []*taskerv1.StepTemplate) error {
	builders := make([]*ent.StepTemplateCreate, len(steps))
	for i, st := range steps {
		// "{}" rather than NULL for no config: every step hands its worker
		// an object.
		config := json.RawMessage("{}")
		if st.GetConfig() != nil {
			config = mustJSON(st.GetConfig())
		}
		handler := st.GetHandler()
		if b := st.GetBuiltin(); b != "" {
			// A built-in step keeps its typed config where a worker step
			// keeps its config, which each claim hands to the handler.
			handler = BuiltinHandler(b)
			config = httpJSON(st.GetHttp())
		}
		rp := st.GetRetryPolicy()
		if rp == nil {
			rp = &taskerv1.RetryPolicy{}
		}
		b := tx.StepTemplate.Create().
			SetTemplateID(templateID).
			SetName(st.GetName()).
			SetHandler(handler).
			SetDescription(st.GetDescription()).
			SetDependsOn(st.GetDependsOn()).
			SetConfig(config).
			SetPosition(i).
			SetNillableBackoffMultiplier(rp.BackoffMultiplier).
			SetNillableBackoffJitter(rp.Jitter).
			SetNillableBackoffInitialMs(millis(rp.GetInitialBackoff())).
			SetNillableBackoffMaxMs(millis(rp.GetMaxBackoff())).
			SetNillableLeaseDurationMs(millis(st.GetLeaseDuration())).
			SetNillableExecutionTimeoutMs(millis(st.GetExecutionTimeout()))
		if rp.MaxAttempts != nil {
			b.SetMaxAttempts(int(rp.GetMaxAttempts()))
		}
		builders[i] = b
	}
	// Bulk inserts bind every column of every row; SQLite allows 32766
	// parameters per statement and PostgreSQL 65535, so 1000 steps of 13
	// columns go in a few batches.
	const batch = 200
	for len(builders) > 0 {
		k := min(batch, len(builders))
		if err := tx.StepTemplate.CreateBulk(builders[:k]...).Exec(ctx); err != nil {
			return err
		}
		builders = builders[k:]
	}
	return nil
}

// Get returns one template version, output-only fields included, or, when
// version is empty, the latest version (Latest). Errors: InvalidArgument
// naming namespace, name or version; NotFound.
func (s *Store) Get(ctx context.Context, namespace, name, version string) (*taskerv1.TaskTemplate, error) {
	row, err := s.Resolve(ctx, namespace, name, version)
	if err != nil {
		return nil, err
	}
	return toProto(row), nil
}

// Resolve is Get for the engine, which creates tasks from the stored row
// itself (its id, identity strategy, schema and step templates): it returns
// the row with its namespace and steps loaded. Errors are Get's, naming
// fields of CreateTaskRequest and GetTaskTemplateRequest alike.
//
// Every CreateTask resolves its template here, so loaded versions are kept
// in memory by id and content hash: a call reads only the versions' ids and
// hashes, and loads a version again only when it is new or was replaced
// (by this process or another replica). The rows returned are shared and
// must not be modified.
func (s *Store) Resolve(ctx context.Context, namespace, name, version string) (*ent.TaskTemplate, error) {
	ofTemplate, err := templatePredicates(namespace, name, version)
	if err != nil {
		return nil, err
	}
	q := s.db.Reader.TaskTemplate.Query().Where(ofTemplate...)
	if version != "" {
		q.Where(tasktemplate.Version(version))
	}
	heads, err := q.Select(tasktemplate.FieldID, tasktemplate.FieldVersion, tasktemplate.FieldContentHash).All(ctx)
	if err != nil {
		return nil, err
	}
	versions := make([]string, len(heads))
	for i, h := range heads {
		versions[i] = h.Version
	}
	latest, ok := Latest(versions)
	if !ok {
		return nil, fault.NotFoundf("task template", templateRef(namespace, name, version))
	}
	for _, h := range heads {
		if h.Version != latest {
			continue
		}
		key := templateKey{h.ID, h.ContentHash}
		if row := s.cache.get(key); row != nil {
			return row, nil
		}
		row, err := s.load(ctx, h.ID)
		if ent.IsNotFound(err) {
			return nil, fault.NotFoundf("task template", templateRef(namespace, name, latest))
		}
		if err != nil {
			return nil, err
		}
		s.cache.put(templateKey{row.ID, row.ContentHash}, row)
		return row, nil
	}
	return nil, fault.NotFoundf("task template", templateRef(namespace, name, latest))
}

// load reads one template version with its namespace and steps from one
// snapshot, so a replacement committed between the reads cannot pair the
// old row (and hash) with the new steps in the cache.
func (s *Store) load(ctx context.Context, id int) (*ent.TaskTemplate, error) {
	tx, err := s.db.Reader.BeginTx(ctx, s.db.SQL().SnapshotRead())
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	return queryTemplates(tx.Client()).Where(tasktemplate.ID(id)).Only(ctx)
}

// GetTx is Get inside tx, for the engine to resolve the template of a task
// in the transaction that creates it.
func (s *Store) GetTx(ctx context.Context, tx *ent.Tx, namespace, name, version string) (*ent.TaskTemplate, error) {
	return get(ctx, tx.Client(), namespace, name, version)
}

// templatePredicates validates a template reference and selects its
// versions.
func templatePredicates(ns, name, version string) ([]predicate.TaskTemplate, error) {
	var vs violations
	if ns == "" {
		vs.add("namespace", "is required")
	}
	if name == "" {
		vs.add("name", "is required")
	}
	if version != "" {
		if _, err := semver.StrictNewVersion(version); err != nil {
			vs.add("version", "must be a semantic version such as 1.2.0 or 2.0.0-rc.1 (no leading v): %v", err)
		}
	}
	if len(vs) > 0 {
		return nil, fault.Invalids(vs)
	}
	return []predicate.TaskTemplate{
		tasktemplate.HasNamespaceWith(namespace.Name(ns)),
		tasktemplate.Name(name),
	}, nil
}

func get(ctx context.Context, c *ent.Client, ns, name, version string) (*ent.TaskTemplate, error) {
	ofTemplate, err := templatePredicates(ns, name, version)
	if err != nil {
		return nil, err
	}
	if version == "" {
		versions, err := c.TaskTemplate.Query().Where(ofTemplate...).Select(tasktemplate.FieldVersion).Strings(ctx)
		if err != nil {
			return nil, err
		}
		latest, ok := Latest(versions)
		if !ok {
			return nil, fault.NotFoundf("task template", templateRef(ns, name, ""))
		}
		version = latest
	}
	row, err := queryTemplates(c).Where(ofTemplate...).Where(tasktemplate.Version(version)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, fault.NotFoundf("task template", templateRef(ns, name, version))
	}
	return row, err
}

// templateKey names one content of one template version: a replacement
// keeps the row's id and changes its hash.
type templateKey struct {
	id   int
	hash string
}

// templateCache holds loaded template versions. It is bounded by
// forgetting everything when full: versions in use are loaded again on
// their next use.
type templateCache struct {
	mu   sync.Mutex
	rows map[templateKey]*ent.TaskTemplate
}

const maxCachedTemplates = 1024

func (c *templateCache) get(k templateKey) *ent.TaskTemplate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rows[k]
}

func (c *templateCache) put(k templateKey, row *ent.TaskTemplate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rows) >= maxCachedTemplates {
		clear(c.rows)
	}
	c.rows[k] = row
}

// queryTemplates selects template rows loaded the way ToProto needs them.
func queryTemplates(c *ent.Client) *ent.TaskTemplateQuery {
	return c.TaskTemplate.Query().
		WithNamespace().
		WithSteps(func(q *ent.StepTemplateQuery) { q.Order(steptemplate.ByPosition()) })
}

func templateRef(ns, name, version string) string {
	if version == "" {
		return ns + "/" + name
	}
	return ns + "/" + name + "@" + version
}

// ListOptions filters and pages List, mirroring ListTaskTemplatesRequest.
type ListOptions struct {
	// Namespace, when set, keeps only that namespace's templates.
	Namespace string
	// Name, when set, keeps only the versions of templates of that name.
	Name string
	// PageSize is 1..500; 0 means 50.
	PageSize int32
	// PageToken resumes a previous listing made with the same filters.
	PageToken string
}

// listCursor is the sort key of the last template of a page.
type listCursor struct {
	Namespace string `json:"n"`
	Name      string `json:"t"`
	Version   string `json:"v"`
}

// List pages through template versions ordered by namespace, name and
// version string (byte order on both dialects), output-only fields
// included. nextToken is empty on the last page. Errors: InvalidArgument
// naming page_size or page_token.
func (s *Store) List(ctx context.Context, opts ListOptions) (templates []*taskerv1.TaskTemplate, nextToken string, err error) {
	size, err := page.Size("page_size", opts.PageSize, defaultPageSize, maxPageSize)
	if err != nil {
		return nil, "", err
	}
	fp := page.Fingerprint("templates", opts.Namespace, opts.Name)
	var cur listCursor
	resume, err := page.Decode("page_token", opts.PageToken, fp, &cur)
	if err != nil {
		return nil, "", err
	}
	collate := s.collate()
	// The namespace name is a sort key, so join rather than filter through
	// ent's edge predicates, which use a subquery.
	namespaces := func(sel *entsql.Selector) *entsql.SelectTable {
		return entsql.Dialect(sel.Dialect()).Table(namespace.Table).As("ns")
	}
	keyColumns := func(sel *entsql.Selector) []string {
		ns := namespaces(sel)
		return []string{
			ns.C(namespace.FieldName) + collate,
			sel.C(tasktemplate.FieldName) + collate,
			sel.C(tasktemplate.FieldVersion) + collate,
		}
	}
	// The join rides in a Where predicate: short of Modify, which would give
	// up eager loading, ent offers no other hook on the root selector.
	q := queryTemplates(s.db.Reader).Where(func(sel *entsql.Selector) {
		ns := namespaces(sel)
		sel.Join(ns).On(sel.C(tasktemplate.FieldNamespaceID), ns.C(namespace.FieldID))
		if opts.Namespace != "" {
			sel.Where(entsql.EQ(ns.C(namespace.FieldName), opts.Namespace))
		}
		if opts.Name != "" {
			sel.Where(entsql.EQ(sel.C(tasktemplate.FieldName), opts.Name))
		}
		if resume {
			// (namespace, name, version) is unique, so it alone is a total
			// order and a complete keyset.
			sel.Where(after(keyColumns(sel), cur.Namespace, cur.Name, cur.Version))
		}
	}).Order(func(sel *entsql.Selector) {
		sel.OrderBy(keyColumns(sel)...)
	}).Limit(size + 1)
	rows, err := q.All(ctx)
	if err != nil {
		return nil, "", err
	}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[size-1]
		nextToken = page.Encode(fp, listCursor{Namespace: last.Edges.Namespace.Name, Name: last.Name, Version: last.Version})
	}
	templates = make([]*taskerv1.TaskTemplate, len(rows))
	for i, row := range rows {
		templates[i] = toProto(row)
	}
	return templates, nextToken, nil
}

// collate makes PostgreSQL compare names bytewise, as SQLite does, so a
// listing is in the same order on both; the database's default collation
// could ignore the '-', '.' and '_' that names may contain.
func (s *Store) collate() string { return s.db.SQL().BinaryCollation() }

// after is the keyset predicate (columns...) > (values...), on SQL
// expressions that ent's column helpers would quote as identifiers.
func after(columns []string, values ...any) *entsql.Predicate {
	return entsql.P(func(b *entsql.Builder) {
		b.WriteString("(" + strings.Join(columns, ", ") + ") > (").Args(values...).WriteString(")")
	})
}

// NamespaceInfo is one namespace of a Namespaces page.
type NamespaceInfo struct {
	// Name of the namespace.
	Name string
	// TemplateCount is the number of template versions registered in it.
	TemplateCount int
	// CreateTime is when its first template was registered.
	CreateTime time.Time
}

// Namespaces pages through namespaces ordered by name. next is empty on
// the last page. Errors: InvalidArgument naming page_size or page_token.
func (s *Store) Namespaces(ctx context.Context, pageSize int32, pageToken string) (namespaces []NamespaceInfo, next string, err error) {
	size, err := page.Size("page_size", pageSize, defaultPageSize, maxPageSize)
	if err != nil {
		return nil, "", err
	}
	fp := page.Fingerprint("namespaces")
	var last string
	resume, err := page.Decode("page_token", pageToken, fp, &last)
	if err != nil {
		return nil, "", err
	}
	collate := s.collate()
	rows, err := s.db.Reader.Namespace.Query().Where(func(sel *entsql.Selector) {
		if resume {
			sel.Where(after([]string{sel.C(namespace.FieldName) + collate}, last))
		}
	}).Order(func(sel *entsql.Selector) {
		sel.OrderBy(sel.C(namespace.FieldName) + collate)
	}).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, "", err
	}
	if len(rows) > size {
		rows = rows[:size]
		next = page.Encode(fp, rows[size-1].Name)
	}
	if len(rows) == 0 {
		return nil, next, nil
	}
	ids := make([]int, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var counts []struct {
		NamespaceID int `json:"namespace_id"`
		Count       int `json:"count"`
	}
	err = s.db.Reader.TaskTemplate.Query().
		Where(tasktemplate.NamespaceIDIn(ids...)).
		GroupBy(tasktemplate.FieldNamespaceID).
		Aggregate(ent.Count()).
		Scan(ctx, &counts)
	if err != nil {
		return nil, "", err
	}
	byID := make(map[int]int, len(counts))
	for _, c := range counts {
		byID[c.NamespaceID] = c.Count
	}
	namespaces = make([]NamespaceInfo, len(rows))
	for i, r := range rows {
		namespaces[i] = NamespaceInfo{Name: r.Name, TemplateCount: byID[r.ID], CreateTime: r.CreatedAt}
	}
	return namespaces, next, nil
}

var (
	identityToEnt = map[taskerv1.IdentityStrategy]tasktemplate.IdentityStrategy{
		taskerv1.IdentityStrategy_IDENTITY_STRATEGY_ALWAYS_UNIQUE: tasktemplate.IdentityStrategyAlwaysUnique,
		taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT:        tasktemplate.IdentityStrategyStrict,
		taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY:    tasktemplate.IdentityStrategyCallerKey,
	}
	identityToProto = map[tasktemplate.IdentityStrategy]taskerv1.IdentityStrategy{
		tasktemplate.IdentityStrategyAlwaysUnique: taskerv1.IdentityStrategy_IDENTITY_STRATEGY_ALWAYS_UNIQUE,
		tasktemplate.IdentityStrategyStrict:       taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT,
		tasktemplate.IdentityStrategyCallerKey:    taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY,
	}
)

// toProto rebuilds the template message, output-only fields included, from
// a row loaded with its namespace and steps, as every row the Store reads
// is. For a registered template it equals Normalize of what was registered
// plus the output-only fields.
func toProto(row *ent.TaskTemplate) *taskerv1.TaskTemplate {
	t := &taskerv1.TaskTemplate{
		Name:             row.Name,
		Version:          row.Version,
		Description:      row.Description,
		IdentityStrategy: identityToProto[row.IdentityStrategy],
		ContextSchema:    structOf(row.ContextSchema),
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:       proto.Int32(int32(row.MaxAttempts)),
			InitialBackoff:    durationpb.New(time.Duration(row.BackoffInitialMs) * time.Millisecond),
			BackoffMultiplier: proto.Float64(row.BackoffMultiplier),
			MaxBackoff:        durationpb.New(time.Duration(row.BackoffMaxMs) * time.Millisecond),
			Jitter:            proto.Float64(row.BackoffJitter),
		},
		LeaseDuration: durationpb.New(time.Duration(row.LeaseDurationMs) * time.Millisecond),
		CreateTime:    timestamppb.New(row.CreatedAt),
		UpdateTime:    timestamppb.New(row.UpdatedAt),
		ContentHash:   row.ContentHash,
	}
	if ns := row.Edges.Namespace; ns != nil {
		t.Namespace = ns.Name
	}
	if row.ExecutionTimeoutMs != 0 {
		t.ExecutionTimeout = durationpb.New(time.Duration(row.ExecutionTimeoutMs) * time.Millisecond)
	}
	for _, st := range row.Edges.Steps {
		s := &taskerv1.StepTemplate{
			Name:             st.Name,
			Handler:          st.Handler,
			Description:      st.Description,
			DependsOn:        st.DependsOn,
			Config:           structOf(st.Config),
			LeaseDuration:    duration(st.LeaseDurationMs),
			ExecutionTimeout: duration(st.ExecutionTimeoutMs),
		}
		if len(s.Config.GetFields()) == 0 {
			s.Config = nil
		}
		if b, ok := IsBuiltinHandler(st.Handler); ok {
			s.Handler, s.Builtin, s.Config = "", b, nil
			if b == BuiltinHTTP {
				s.Http = mustHTTP(st.Config)
			}
		}
		rp := &taskerv1.RetryPolicy{
			BackoffMultiplier: st.BackoffMultiplier,
			InitialBackoff:    duration(st.BackoffInitialMs),
			MaxBackoff:        duration(st.BackoffMaxMs),
			Jitter:            st.BackoffJitter,
		}
		if st.MaxAttempts != nil {
			rp.MaxAttempts = proto.Int32(int32(*st.MaxAttempts))
		}
		if rp.MaxAttempts != nil || rp.InitialBackoff != nil || rp.BackoffMultiplier != nil || rp.MaxBackoff != nil || rp.Jitter != nil {
			s.RetryPolicy = rp
		}
		t.Steps = append(t.Steps, s)
	}
	return t
}

// structOf decodes a JSON object column; NULL, JSON null and anything that
// is not an object (which Register never writes) read as no document.
func structOf(raw json.RawMessage) *structpb.Struct {
	var m map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m == nil {
		return nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil
	}
	return s
}

// mustJSON encodes a validated Struct, which cannot fail.
func mustJSON(s *structpb.Struct) json.RawMessage {
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		panic(fmt.Sprintf("registry: encode a validated document: %v", err))
	}
	return b
}

func millis(d *durationpb.Duration) *int64 {
	if d == nil {
		return nil
	}
	ms := d.AsDuration().Milliseconds()
	return &ms
}

func duration(ms *int64) *durationpb.Duration {
	if ms == nil {
		return nil
	}
	return durationpb.New(time.Duration(*ms) * time.Millisecond)
}

// mustHTTP decodes an http config Register stored, which cannot fail.
func mustHTTP(raw json.RawMessage) *taskerv1.HttpStepConfig {
	c, err := DecodeHTTPConfig(raw)
	if err != nil {
		panic(fmt.Sprintf("registry: decode a stored http config: %v", err))
	}
	return c
}
