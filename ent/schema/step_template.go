package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// StepTemplate is one node of a template's DAG. The policy fields are
// nillable overrides: nil means "inherit the template's value", which must
// stay distinguishable from an explicit zero.
type StepTemplate struct {
	ent.Schema
}

// Fields of the StepTemplate.
func (StepTemplate) Fields() []ent.Field {
	return []ent.Field{
		field.Int("template_id").Immutable(),
		field.String("name").NotEmpty(),
		field.String("handler").NotEmpty(),
		field.String("description").Default("").
			Comment("free text, at most 4 KiB"),
		field.Strings("depends_on").Optional().
			Comment("names of parent steps in the same template"),
		field.JSON("config", json.RawMessage{}).
			Comment("static handler configuration, a JSON object"),
		field.Int("position").
			Comment("declaration order, kept so listings and graphs are stable"),
		field.Int("max_attempts").Optional().Nillable(),
		field.Int64("backoff_initial_ms").Optional().Nillable(),
		field.Float("backoff_multiplier").Optional().Nillable(),
		field.Int64("backoff_max_ms").Optional().Nillable(),
		field.Float("backoff_jitter").Optional().Nillable(),
		field.Int64("lease_duration_ms").Optional().Nillable(),
		field.Int64("execution_timeout_ms").Optional().Nillable(),
	}
}

// Edges of the StepTemplate.
func (StepTemplate) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("template", TaskTemplate.Type).
			Ref("steps").
			Field("template_id").
			Unique().
			Required().
			Immutable(),
	}
}

// Indexes of the StepTemplate.
func (StepTemplate) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("template_id", "name").Unique(),
	}
}
