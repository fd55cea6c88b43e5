package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Event is one entry of the event log, appended in the same transaction as
// the change it describes. The row id only orders inserts; readers page and
// resume by sequence, the public number that is dense and never appears below
// one already read. On SQLite the writing transaction stamps it (there is one
// writer); on PostgreSQL rows are inserted with a nil sequence and the
// sequencer stamps them after commit, so readers must skip unstamped rows.
// Events reference tasks and steps by value, not by foreign key, so the log
// outlives task retention and keeps custom events that name no task.
type Event struct {
	ent.Schema
}

// Fields of the Event.
func (Event) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id").Immutable(),
		field.Int64("sequence").Optional().Nillable().Unique(),
		field.String("type").NotEmpty().Immutable(),
		field.String("correlation_id").Default("").Immutable(),
		field.String("namespace").Default("").Immutable(),
		field.String("template_name").Default("").Immutable(),
		field.String("template_version").Default("").Immutable(),
		field.UUID("task_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.UUID("step_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.JSON("payload", json.RawMessage{}).Immutable(),
		createdAt(),
	}
}

// Indexes of the Event.
func (Event) Indexes() []ent.Index {
	return []ent.Index{
		// The sequencer's queue: committed rows still waiting for a number.
		index.Fields("id").
			Annotations(entsql.IndexWhere("sequence IS NULL")),
		index.Fields("task_id", "sequence"),
		index.Fields("correlation_id", "sequence"),
		index.Fields("namespace", "sequence"),
	}
}
