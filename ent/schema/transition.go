package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// TaskTransition is one row of a task's audit trail, written in the same
// transaction as the state change it records. from_state is empty for the
// creation.
type TaskTransition struct {
	ent.Schema
}

// Fields of the TaskTransition.
func (TaskTransition) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("task_id", uuid.UUID{}).Immutable(),
		field.String("from_state").Default("").Immutable(),
		field.String("to_state").NotEmpty().Immutable(),
		field.String("reason").Default("").Immutable(),
		field.JSON("metadata", json.RawMessage{}).Optional().Immutable(),
		createdAt(),
	}
}

// Edges of the TaskTransition.
func (TaskTransition) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("task", Task.Type).
			Ref("transitions").
			Field("task_id").
			Unique().
			Required().
			Immutable(),
	}
}

// Indexes of the TaskTransition.
func (TaskTransition) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("task_id", "id"),
		// Analytics: the tasks that finished in a time window.
		index.Fields("to_state", "created_at"),
	}
}

// StepTransition is one row of a step's audit trail. task_id is copied so a
// task's whole history reads without a join; attempt is the step's attempt
// number when the change happened.
type StepTransition struct {
	ent.Schema
}

// Fields of the StepTransition.
func (StepTransition) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("step_id", uuid.UUID{}).Immutable(),
		field.UUID("task_id", uuid.UUID{}).Immutable(),
		field.String("from_state").Default("").Immutable(),
		field.String("to_state").NotEmpty().Immutable(),
		field.String("reason").Default("").Immutable(),
		field.Int("attempt").Default(0).Immutable(),
		field.JSON("metadata", json.RawMessage{}).Optional().Immutable(),
		createdAt(),
	}
}

// Edges of the StepTransition.
func (StepTransition) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("step", Step.Type).
			Ref("transitions").
			Field("step_id").
			Unique().
			Required().
			Immutable(),
	}
}

// Indexes of the StepTransition.
func (StepTransition) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("step_id", "id"),
		index.Fields("task_id", "id"),
		// Analytics: the attempts that ended in a time window (every move
		// out of in_progress).
		index.Fields("from_state", "created_at"),
	}
}
