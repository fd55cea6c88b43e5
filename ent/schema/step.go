package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Step is one node of a task's DAG at run time: its state, its copy of the
// retry policy, its lease while a worker holds it, and its result. Namespace,
// handler and priority are copied onto the row so claiming is one indexed
// query without joins.
type Step struct {
	ent.Schema
}

// Fields of the Step.
func (Step) Fields() []ent.Field {
	fields := []ent.Field{
		uuidID(),
		field.UUID("task_id", uuid.UUID{}).Immutable(),
		field.String("namespace").NotEmpty().Immutable(),
		field.String("name").NotEmpty().Immutable(),
		field.String("handler").NotEmpty().Immutable(),
		field.JSON("config", json.RawMessage{}).
			Comment("static handler configuration from the template, a JSON object"),
		field.Enum("state").
			Values("pending", "enqueued", "in_progress", "waiting_for_retry",
				"complete", "error", "cancelled", "resolved_manually").
			Default("pending"),
		field.Int32("priority").Default(0).
			Comment("copied from the task; higher runs first"),
		field.Int("attempts").Default(0).
			Comment("attempts started so far; a claim increments it, a release gives it back"),
		field.Int("attempt_budget").Default(0).
			Comment("attempts allowed in all: max_attempts at creation, extended by max_attempts on each operator retry"),
	}
	fields = append(fields, policyFields()...)
	return append(fields,
		field.String("lease_token").Optional().Nillable().
			Comment("set by a claim; worker calls must present it"),
		field.Time("lease_expires_at").Optional().Nillable(),
		field.Time("execution_deadline").Optional().Nillable().
			Comment("claim time + execution_timeout_ms; nil when there is no timeout"),
		field.Time("available_at").Optional().Nillable().
			Comment("when an enqueued or waiting_for_retry step becomes claimable"),
		field.Time("claimable_at").Optional().Nillable().
			Comment("available_at while the step is enqueued or waiting_for_retry, NULL in every other state: the claim index holds claimable steps only"),
		field.String("claimed_by").Optional().Nillable().
			Comment("worker id of the current or last claim"),
		field.JSON("result", json.RawMessage{}).Optional().
			Comment("the handler's or operator's result; nil until there is one"),
		field.String("last_error_message").Default(""),
		field.String("last_error_type").Default(""),
		field.Int("pending_parents").Default(0).
			Comment("parents not yet complete or resolved_manually; decremented under the task's lock, so exactly one parent's transaction enqueues the step"),
		field.Int("position").
			Comment("declaration order in the template"),
		createdAt(),
		updatedAt(),
		field.Time("finished_at").Optional().Nillable(),
	)
}

// Edges of the Step.
func (Step) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("task", Task.Type).
			Ref("steps").
			Field("task_id").
			Unique().
			Required().
			Immutable(),
		edge.To("children", Step.Type).
			StorageKey(edge.Columns("parent_id", "child_id")).
			Through("child_edges", StepDependency.Type),
		edge.From("parents", Step.Type).
			Ref("children").
			Through("parent_edges", StepDependency.Type),
		edge.To("transitions", StepTransition.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the Step.
func (Step) Indexes() []ent.Index {
	return []ent.Index{
		// Claiming: the claimable steps of one handler in claim order
		// (higher priority first, then the longest due, then the oldest), so
		// a claim reads its rows in index order instead of sorting the
		// queue. Partial, so finished steps cost it nothing; a query's
		// "claimable_at <= now" implies the predicate on both databases.
		index.Fields("namespace", "handler", "priority", "claimable_at", "id").
			Annotations(entsql.DescColumns("priority"), entsql.IndexWhere("claimable_at IS NOT NULL")),
		// Long-polls: the earliest time a step of a handler becomes
		// claimable, one probe per handler whatever the priorities and
		// whatever the planner's statistics say (the claim index above
		// orders by priority first, so the earliest due would be a sort of
		// the handler's whole queue).
		index.Fields("namespace", "handler", "claimable_at").
			Annotations(entsql.IndexWhere("claimable_at IS NOT NULL")),
		index.Fields("task_id", "position"),
		// Analytics: the steps created in a time window. Both columns are
		// immutable, so state changes never touch this index.
		index.Fields("namespace", "created_at"),
		// The reaper: expired leases and passed deadlines, which only
		// in_progress steps have. Partial and without state, so that no
		// index leads with state: SQLite, which keeps no statistics, would
		// otherwise pick it for "id IN (…) AND state …" and scan every step
		// in that state instead of reading a few by key.
		index.Fields("lease_expires_at").
			Annotations(entsql.IndexWhere("lease_expires_at IS NOT NULL")),
		index.Fields("execution_deadline").
			Annotations(entsql.IndexWhere("execution_deadline IS NOT NULL")),
	}
}
