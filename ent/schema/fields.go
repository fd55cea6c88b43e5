package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"
)

// HandlerRef names one handler a worker serves. Handler names are unique per
// namespace, so the pair is what a worker claims for.
type HandlerRef struct {
	Namespace string `json:"namespace"`
	Handler   string `json:"handler"`
}

// newID returns a UUIDv7: time-ordered, so primary-key order is creation
// order and inserts append to the index instead of scattering across it.
func newID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}

// now is the default for every time field: UTC, so SQLite's text timestamps
// compare in time order, and truncated to PostgreSQL's microsecond precision,
// so both dialects read back what was written.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}

// uuidID is the primary key of entities whose ids are exposed in the API and
// whose order matters (tasks, steps).
func uuidID() ent.Field {
	return field.UUID("id", uuid.UUID{}).Default(newID).Immutable()
}

func createdAt() ent.Field {
	return field.Time("created_at").Default(now).Immutable()
}

func updatedAt() ent.Field {
	return field.Time("updated_at").Default(now).UpdateDefault(now)
}

// policyFields are the retry policy, lease and timeout columns that a task
// template holds as defaults and a step holds as the copy taken at task
// creation, so re-registering a template never changes a running task.
// StepTemplate declares the same names as optional overrides.
func policyFields() []ent.Field {
	return []ent.Field{
		field.Int("max_attempts").
			Comment("attempts including the first"),
		field.Int64("backoff_initial_ms"),
		field.Float("backoff_multiplier"),
		field.Int64("backoff_max_ms"),
		field.Float("backoff_jitter").
			Comment("fraction of the backoff that is randomised, 0..1"),
		field.Int64("lease_duration_ms"),
		field.Int64("execution_timeout_ms").
			Comment("0 = no execution timeout"),
	}
}
