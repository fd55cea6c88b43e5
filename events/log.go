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
// SQLite the events are numbered in tx; call (*Log).Appended after tx
// commits to wake readers in this process. On PostgreSQL they are written
// unnumbered and the Sequencer numbers them once tx has committed.
func Append(ctx context.Context, tx *ent.Tx, dialectName string, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	var next int64
	if dialectName == dialect.SQLite {
		// The single writer connection serialises every writing
		// transaction, so max+1 is dense and no other commit can take it.
		var err error
		if next, err = maxSequence(ctx, tx); err != nil {
			return err
		}
	}
	builders := make([]*ent.EventCreate, 0, len(evs))
	for i, ev := range evs {
		payload := ev.Payload
		if payload == nil {
			payload = map[string]any{}
		}
		raw, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("events: marshal %s payload: %w", ev.Type, err)
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
			b.SetSequence(next + int64(i) + 1)
		}
		builders = append(builders, b)
	}
	for start := 0; start < len(builders); start += bulkChunk {
		end := min(start+bulkChunk, len(builders))
		if err := tx.Event.CreateBulk(builders[start:end]...).Exec(ctx); err != nil {
			return fmt.Errorf("events: append: %w", err)
		}
	}
	if dialectName == dialect.Postgres {
		// Wake the sequencer. NOTIFY is transactional: it is delivered
		// when tx commits and dropped when it rolls back, and PostgreSQL
		// folds the identical notifications of one transaction into one.
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, '')", appendedChannel); err != nil {
			return fmt.Errorf("events: notify sequencer: %w", err)
		}
	}
	return nil
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
