package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
)

// Stored is an event as the log holds it once numbered: what readers,
// subscriptions, in-process subscribers and exporters receive. It is the
// log's own type, so nothing above the event log handles database rows.
type Stored struct {
	// ID is the row's id: insertion order, not commit order.
	ID int64
	// Sequence is the event's place in the log, dense from 1.
	Sequence        int64
	Type            string
	CorrelationID   string
	Namespace       string
	TemplateName    string
	TemplateVersion string
	// TaskID and StepID are nil for events about no task or step.
	TaskID *uuid.UUID
	StepID *uuid.UUID
	// Payload is the event's JSON object as stored.
	Payload json.RawMessage
	// CreatedAt is when the change was committed.
	CreatedAt time.Time
}

// storedOf converts a numbered row; the sequence is 0 for one that is not
// numbered yet.
func storedOf(row *ent.Event) *Stored {
	s := &Stored{
		ID: row.ID, Type: row.Type, CorrelationID: row.CorrelationID, Namespace: row.Namespace,
		TemplateName: row.TemplateName, TemplateVersion: row.TemplateVersion,
		TaskID: row.TaskID, StepID: row.StepID, Payload: row.Payload, CreatedAt: row.CreatedAt,
	}
	if row.Sequence != nil {
		s.Sequence = *row.Sequence
	}
	return s
}
