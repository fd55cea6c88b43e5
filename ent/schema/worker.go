package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Worker is a process that claims steps, keyed by the id it chooses. It is
// upserted on every claim so ListHandlers can tell which handlers are served
// right now and by whom.
type Worker struct {
	ent.Schema
}

// Fields of the Worker.
func (Worker) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").NotEmpty().Immutable(),
		field.JSON("handlers", []HandlerRef{}).
			Comment("the (namespace, handler) pairs of the worker's last claim"),
		field.Time("first_seen_at").Default(now).Immutable(),
		field.Time("last_seen_at").Default(now),
	}
}
