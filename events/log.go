package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/storage"
)

// Event is one fact to append to the log.
type Event struct {
	Type            string
	CorrelationID   string
	Namespace       string
	TemplateName    string
	TemplateVersion string
	TaskID          *uuid.UUID
	StepID          *uuid.UUID
	// Payload is the type's documented fields; nil is stored as {}.
	Payload map[string]any
	At      time.Time
}

// Append writes evs in tx, so they commit or roll back with the change they
// describe. dialectName is the storage dialect (ent's dialect names). On
// SQLite the events are numbered in tx; on PostgreSQL they are written
// unnumbered and the Sequencer numbers them once tx has committed. Either
// way, call (*Log).Appended after tx commits: it wakes the readers of this
// process (SQLite) or the sequencer (PostgreSQL).
func Append(ctx context.Context, tx *ent.Tx, d storage.Dialect, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	next, err := d.NextSequence(ctx, tx)
	if err != nil {
		return err
	}
	rows := make([][]any, len(evs))
	for i, ev := range evs {
		var seq any // NULL: the sequencer numbers it after commit
		if next > 0 {
			seq = next + int64(i)
		}
		payload, at, err := normalize(ev)
		if err != nil {
			return err
		}
		rows[i] = []any{seq, ev.Type, ev.CorrelationID, ev.Namespace, ev.TemplateName, ev.TemplateVersion,
			nullUUID(ev.TaskID), nullUUID(ev.StepID), payload, at}
	}
	// Plain inserts: unlike ent's bulk create, they do not read the new
	// ids back, which no appender needs.
	if err := storage.InsertRows(ctx, tx, d, event.Table, eventColumns, rows); err != nil {
		return fmt.Errorf("events: append: %w", err)
	}
	return nil
}

// eventColumns are the columns Append writes, in the order of its rows.
var eventColumns = []string{
	event.FieldSequence, event.FieldType, event.FieldCorrelationID, event.FieldNamespace, event.FieldTemplateName,
	event.FieldTemplateVersion, event.FieldTaskID, event.FieldStepID, event.FieldPayload, event.FieldCreatedAt,
}

func nullUUID(id *uuid.UUID) any {
	if id == nil {
		return nil
	}
	return *id
}

// normalize returns ev's payload as stored ({} for none) and its time in
// UTC (now for none).
func normalize(ev Event) ([]byte, time.Time, error) {
	payload := ev.Payload
	if payload == nil {
		payload = map[string]any{}
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("events: marshal %s payload: %w", ev.Type, err)
	}
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	return raw, at.UTC(), nil
}

// appendOne is Append for one event, returning the stored row (with its
// id, and on SQLite its sequence).
func appendOne(ctx context.Context, tx *ent.Tx, d storage.Dialect, ev Event) (*ent.Event, error) {
	next, err := d.NextSequence(ctx, tx)
	if err != nil {
		return nil, err
	}
	b, err := create(tx, ev, next)
	if err != nil {
		return nil, err
	}
	row, err := b.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("events: append: %w", err)
	}
	return row, nil
}

// create builds the insert of ev, numbered seq, or unnumbered when seq is 0
// (the sequencer numbers it after commit).
func create(tx *ent.Tx, ev Event, seq int64) (*ent.EventCreate, error) {
	raw, at, err := normalize(ev)
	if err != nil {
		return nil, err
	}
	b := tx.Event.Create().
		SetType(ev.Type).
		SetCorrelationID(ev.CorrelationID).
		SetNamespace(ev.Namespace).
		SetTemplateName(ev.TemplateName).
		SetTemplateVersion(ev.TemplateVersion).
		SetNillableTaskID(ev.TaskID).
		SetNillableStepID(ev.StepID).
		SetPayload(raw).
		SetCreatedAt(at)
	if seq > 0 {
		b.SetSequence(seq)
	}
	return b, nil
}
