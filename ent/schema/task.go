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

// Task is one run of a task template. Namespace, template name and version
// are copied from the template so listings and events filter on them without
// joins.
type Task struct {
	ent.Schema
}

// Fields of the Task.
func (Task) Fields() []ent.Field {
	return []ent.Field{
		uuidID(),
		field.Int("template_id").Immutable(),
		field.String("namespace").NotEmpty().Immutable(),
		field.String("template_name").NotEmpty().Immutable(),
		field.String("template_version").NotEmpty().Immutable(),
		field.Enum("state").
			Values("pending", "in_progress", "complete", "error", "cancelled", "resolved_manually").
			Default("pending"),
		field.JSON("context", json.RawMessage{}).
			Comment("the caller's JSON document, an object"),
		field.String("identity_hash").Optional().Nillable().
			Comment("strict identity: unique among unfinished tasks (finished_at IS NULL)"),
		field.String("idempotency_key").Optional().Nillable().
			Comment("caller_key identity: unique per namespace; cleared when its retention window has passed, which frees the key"),
		field.String("request_hash").Optional().Immutable().
			Comment("hash of the create request: a reused idempotency key with a different request is refused"),
		field.String("correlation_id").Immutable(),
		field.String("trace_parent").Default("").Immutable().
			Comment("W3C traceparent of the CreateTask call that made the task, empty when it had none: the task's steps continue its trace"),
		field.UUID("parent_task_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.Int32("priority").Default(0).
			Comment("higher runs first"),
		field.Time("run_at").Optional().Nillable().
			Comment("root steps are not claimable before this time"),
		field.String("initiator").Default(""),
		field.String("source_system").Default(""),
		field.String("reason").Default(""),
		field.JSON("tags", map[string]string{}).Optional(),
		createdAt(),
		updatedAt(),
		field.Time("started_at").Optional().Nillable(),
		field.Time("finished_at").Optional().Nillable().
			Comment("set when the task leaves pending/in_progress, cleared when an error task resumes; identity deduplication depends on it"),
	}
}

// Edges of the Task.
func (Task) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("template", TaskTemplate.Type).
			Ref("tasks").
			Field("template_id").
			Unique().
			Required().
			Immutable(),
		edge.To("children", Task.Type).
			From("parent_task").
			Field("parent_task_id").
			Unique().
			Immutable(),
		// Retention deletes tasks; their steps and audit trail go with them.
		edge.To("steps", Step.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("transitions", TaskTransition.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the Task.
func (Task) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("namespace", "state", "created_at"),
		index.Fields("state", "created_at"),
		index.Fields("correlation_id"),
		index.Fields("parent_task_id"),
		// strict identity deduplicates against unfinished tasks only. The
		// predicate tests finished_at rather than state IN ('pending',
		// 'in_progress'): PostgreSQL stores predicates re-written (casts,
		// ANY(ARRAY[...])), and only a predicate without literals, written
		// fully parenthesised, reads back as written, so that migrating
		// again finds nothing to change.
		index.Fields("identity_hash").
			Unique().
			Annotations(entsql.IndexWhere("(identity_hash IS NOT NULL) AND (finished_at IS NULL)")),
		index.Fields("namespace", "idempotency_key").
			Unique().
			Annotations(entsql.IndexWhere("idempotency_key IS NOT NULL")),
	}
}
