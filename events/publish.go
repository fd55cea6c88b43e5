package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
)

// PublishTimeout bounds how long Publish waits on PostgreSQL for the
// sequencer to number the event it committed.
const PublishTimeout = 5 * time.Second

// Custom is a custom event to publish, as a worker or an integration sends
// it.
type Custom struct {
	// Type is the event type, validated by ValidateCustomType.
	Type string
	// TaskID optionally attaches the event to a task: it then carries the
	// task's correlation id, namespace and template.
	TaskID string
	// StepID optionally attaches the event to a step; it must belong to
	// TaskID, or names the task itself when TaskID is empty.
	StepID string
	// Payload is the event's fields; nil is stored as {}. At most
	// MaxCustomPayloadBytes as JSON.
	Payload map[string]any
	// CorrelationID is the caller's, used when the event names no task.
	CorrelationID string
}

// Publish appends a custom event in its own transaction and returns it as
// stored, numbered. Errors: InvalidArgument naming the field ("type",
// "payload", "task_id", "step_id"); NotFound for an unknown task or step;
// Unavailable when, on PostgreSQL, the event committed but was not numbered
// within PublishTimeout (no sequencer running).
func (l *Log) Publish(ctx context.Context, c Custom) (*Stored, error) {
	var vs []fault.Violation
	if err := ValidateCustomType(c.Type); err != nil {
		vs = append(vs, fault.Violation{Field: "type", Description: err.Error()})
	}
	payload := c.Payload
	if payload == nil {
		payload = map[string]any{}
	}
	raw, err := json.Marshal(payload)
	switch {
	case err != nil:
		vs = append(vs, fault.Violation{Field: "payload", Description: "is not a JSON object: " + err.Error()})
	case len(raw) > MaxCustomPayloadBytes:
		vs = append(vs, fault.Violation{Field: "payload", Description: "is " + strconv.Itoa(len(raw)) + " bytes as JSON; at most " + strconv.Itoa(MaxCustomPayloadBytes) + " are allowed"})
	}
	taskID, ok := parseUUID(c.TaskID)
	if !ok {
		vs = append(vs, fault.Violation{Field: "task_id", Description: "is not a task id (a UUID like 123e4567-e89b-12d3-a456-426614174000)"})
	}
	stepID, ok := parseUUID(c.StepID)
	if !ok {
		vs = append(vs, fault.Violation{Field: "step_id", Description: "is not a step id (a UUID like 123e4567-e89b-12d3-a456-426614174000)"})
	}
	if len(vs) > 0 {
		return nil, fault.Invalids(vs)
	}

	var id int64
	err = l.db.Tx(storage.TxName(ctx, "PublishEvent"), func(tx *ent.Tx) error {
		ev := Event{Type: c.Type, CorrelationID: c.CorrelationID, Payload: payload, At: time.Now()}
		if stepID != nil {
			st, err := tx.Step.Get(ctx, *stepID)
			if ent.IsNotFound(err) {
				return fault.NotFoundf("step", c.StepID)
			}
			if err != nil {
				return err
			}
			if taskID != nil && st.TaskID != *taskID {
				return fault.Invalid("step_id", "belongs to task %s, not to task_id %s", st.TaskID, c.TaskID)
			}
			taskID = &st.TaskID
			ev.StepID = stepID
		}
		if taskID != nil {
			t, err := tx.Task.Get(ctx, *taskID)
			if ent.IsNotFound(err) {
				return fault.NotFoundf("task", taskID.String())
			}
			if err != nil {
				return err
			}
			ev.TaskID = taskID
			ev.CorrelationID = t.CorrelationID
			ev.Namespace = t.Namespace
			ev.TemplateName = t.TemplateName
			ev.TemplateVersion = t.TemplateVersion
		}
		row, err := appendOne(ctx, tx, l.db.SQL(), ev)
		if err != nil {
			return err
		}
		id = row.ID
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.Appended()
	return l.numbered(ctx, id)
}

// numbered returns the event with row id once it has its sequence: at once
// on SQLite, where Append numbers in the transaction; on PostgreSQL once
// the sequencer has stamped it, waiting at most PublishTimeout.
func (l *Log) numbered(ctx context.Context, id int64) (*Stored, error) {
	ctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	for {
		// The head before the row: if the row is still unnumbered after
		// this read, its number will be above head, so Wait(head) cannot
		// sleep past it.
		head, err := l.Head(ctx)
		if err != nil {
			return nil, l.publishWaitErr(ctx, err)
		}
		ev, err := l.db.Reader.Event.Get(ctx, id)
		if err != nil {
			return nil, l.publishWaitErr(ctx, fmt.Errorf("events: read published event: %w", l.db.InterpretError(err)))
		}
		if ev.Sequence != nil {
			return storedOf(ev), nil
		}
		if err := l.Wait(ctx, head); err != nil {
			return nil, l.publishWaitErr(ctx, err)
		}
	}
}

// publishWaitErr explains a wait for the sequence that ran out of time:
// the event is committed, so the caller must not take the error for a
// failure to publish.
func (l *Log) publishWaitErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
		return &fault.Error{Code: fault.Unavailable, Message: "the event was committed but not numbered within " +
			PublishTimeout.String() + "; is the sequencer running? It will appear in the log once numbered"}
	}
	return err
}

// parseUUID parses an optional id written the one canonical way; "" gives
// nil and ok.
func parseUUID(s string) (*uuid.UUID, bool) {
	if s == "" {
		return nil, true
	}
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return nil, false
	}
	return &id, true
}
