package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// StepDependency is one edge of a task's DAG, stored in table step_edges:
// child waits for parent. It is an edge schema rather than an implicit join
// table so that it can carry an index on child_id: a claim reads the parents
// of each claimed step, and the primary key (parent_id, child_id) only serves
// the opposite direction. (It is not named StepEdge because ent generates a
// StepEdges type for Step's loaded edges.)
type StepDependency struct {
	ent.Schema
}

// Annotations of the StepDependency.
func (StepDependency) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Table("step_edges"),
		field.ID("parent_id", "child_id"),
	}
}

// Fields of the StepDependency.
func (StepDependency) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("parent_id", uuid.UUID{}).Immutable(),
		field.UUID("child_id", uuid.UUID{}).Immutable(),
	}
}

// Edges of the StepDependency.
func (StepDependency) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("parent", Step.Type).
			Field("parent_id").
			Unique().
			Required().
			Immutable().
			Annotations(entsql.OnDelete(entsql.Cascade)),
		edge.To("child", Step.Type).
			Field("child_id").
			Unique().
			Required().
			Immutable().
			Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the StepDependency.
func (StepDependency) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("child_id"),
	}
}
