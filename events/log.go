package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
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
func Append(ctx context.Context, tx *ent.Tx, dialectName string, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	next, err := nextSequence(ctx, tx, dialectName)
	if err != nil {
		return err
	}
	builders := make([]*ent.EventCreate, 0, len(evs))
	for i, ev := range evs {
		b, err := create(tx, dialectName, ev, next+int64(i))
		if err != nil {
			return err
		}
		builders = append(builders, b)
	}
	for start := 0; start < len(builders); start += bulkChunk {
		end := min(start+bulkChunk, len(builders))
		if err := tx.Event.CreateBulk(builders[start:end]...).Exec(ctx); err != nil {
			return fmt.Errorf("events: append: %w", err)
		}
	}
	return nil
}

// appendOne is Append for one event, returning the stored row (with its
// id, and on SQLite its sequence).
func appendOne(ctx context.Context, tx *ent.Tx, dialectName string, ev Event) (*ent.Event, error) {
	next, err := nextSequence(ctx, tx, dialectName)
	if err != nil {
		return nil, err
	}
	b, err := create(tx, dialectName, ev, next)
	if err != nil {
		return nil, err
	}
	row, err := b.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("events: append: %w", err)
	}
	return row, nil
}

// nextSequence returns the sequence the next event appended in tx gets on
// SQLite; 0 on PostgreSQL, where the sequencer numbers events after commit.
func nextSequence(ctx context.Context, tx *ent.Tx, dialectName string) (int64, error) {
	if dialectName != dialect.SQLite {
		return 0, nil
	}
	// The single writer connection serialises every writing transaction,
	// so max+1 is dense and no other commit can take it.
	head, err := maxSequence(ctx, tx)
	return head + 1, err
}

// create builds the insert of ev, numbered seq on SQLite and unnumbered on
// PostgreSQL.
func create(tx *ent.Tx, dialectName string, ev Event, seq int64) (*ent.EventCreate, error) {
	payload := ev.Payload
	if payload == nil {
		payload = map[string]any{}
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("events: marshal %s payload: %w", ev.Type, err)
	}
	at := ev.At
	if at.IsZero() {
		at = time.Now()
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
		SetCreatedAt(at.UTC())
	if dialectName == dialect.SQLite {
		b.SetSequence(seq)
	}
	return b, nil
}

// bulkChunk keeps one INSERT well under both databases' bound-parameter
// limits.
const bulkChunk = 500

func maxSequence(ctx context.Context, tx *ent.Tx) (int64, error) {
	var rows []struct {
		Max sql.NullInt64 `json:"max"`
	}
	err := tx.Event.Query().Aggregate(ent.As(ent.Max(event.FieldSequence), "max")).Scan(ctx, &rows)
	if err != nil {
		return 0, fmt.Errorf("events: read head sequence: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	return rows[0].Max.Int64, nil
}
