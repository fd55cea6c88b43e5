package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// TaskTemplate is one registered version of a named DAG of steps. Tasks
// reference the version they were created from; the policy fields are
// defaults that StepTemplate may override and that are copied onto each step
// at task creation.
type TaskTemplate struct {
	ent.Schema
}

// Fields of the TaskTemplate.
func (TaskTemplate) Fields() []ent.Field {
	fields := []ent.Field{
		field.Int("namespace_id").Immutable(),
		field.String("name").NotEmpty().Immutable(),
		field.String("version").NotEmpty().Immutable().
			Comment("semver; latest = highest non-pre-release"),
		field.String("description").Default(""),
		field.Enum("identity_strategy").
			Values("always_unique", "strict", "caller_key").
			Default("always_unique"),
		field.JSON("context_schema", json.RawMessage{}).Optional().
			Comment("JSON Schema the task context must satisfy"),
	}
	fields = append(fields, policyFields()...)
	return append(fields,
		field.String("content_hash").
			Comment("sha256 hex of the canonical template; equal hash = identical re-registration"),
		createdAt(),
		updatedAt(),
	)
}

// Edges of the TaskTemplate.
func (TaskTemplate) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("namespace", Namespace.Type).
			Ref("templates").
			Field("namespace_id").
			Unique().
			Required().
			Immutable(),
		// Replacing a version deletes and re-inserts its steps.
		edge.To("steps", StepTemplate.Type).
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("tasks", Task.Type),
	}
}

// Indexes of the TaskTemplate.
func (TaskTemplate) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("namespace_id", "name", "version").Unique(),
	}
}
