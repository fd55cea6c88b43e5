package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/storage"
)

// Retention says how much of the log to keep. The zero value keeps
// everything. An event is removed when it is older than MaxAge or when
// more than MaxCount newer events exist, whichever removes more; removal
// only ever takes the oldest events, by sequence, so the retained log is
// always a dense range ending at the newest event, which is never removed
// (the numbering continues from it).
type Retention struct {
	// MaxAge removes events committed longer ago than this; 0 for no age
	// limit. Ages are read in sequence order: an old event numbered after
	// a younger one waits for it.
	MaxAge time.Duration
	// MaxCount keeps at most this many of the newest events; 0 for no
	// limit.
	MaxCount int64
	// Interval is how often the log is trimmed; default 1 minute.
	Interval time.Duration
	// BatchSize bounds the events removed per transaction, so trimming a
	// long log never holds SQLite's writer for long; default 1000.
	BatchSize int
}

// Enabled reports whether r removes anything.
func (r Retention) Enabled() bool { return r.MaxAge > 0 || r.MaxCount > 0 }

// Validate reports a negative setting.
func (r Retention) Validate() error {
	switch {
	case r.MaxAge < 0:
		return errors.New("events: retention max age must not be negative")
	case r.MaxCount < 0:
		return errors.New("events: retention max count must not be negative")
	case r.Interval < 0:
		return errors.New("events: retention interval must not be negative")
	case r.BatchSize < 0:
		return errors.New("events: retention batch size must not be negative")
	}
	return nil
}

// Retainer trims the log by its Retention. Readers that resume before the
// retained range get OutOfRange LOG_TRUNCATED from List and Subscribe;
// readers inside it are unaffected.
type Retainer struct {
	db     *storage.DB
	logger *slog.Logger
	r      Retention
	now    func() time.Time
}

// NewRetainer returns a retainer of db's log; r must be valid (Validate).
func NewRetainer(db *storage.DB, logger *slog.Logger, r Retention) *Retainer {
	if r.Interval <= 0 {
		r.Interval = time.Minute
	}
	if r.BatchSize <= 0 {
		r.BatchSize = 1000
	}
	return &Retainer{db: db, logger: logger, r: r, now: time.Now}
}

// Run trims the log every Interval until ctx ends, then returns nil. A
// failed pass is logged and tried again at the next interval. With a
// Retention that keeps everything it just waits for ctx. Every replica may
// run one: passes that overlap delete the same rows once.
func (t *Retainer) Run(ctx context.Context) error {
	if !t.r.Enabled() {
		<-ctx.Done()
		return nil
	}
	for {
		n, err := t.Trim(ctx)
		switch {
		case err != nil && ctx.Err() == nil: // a pass cut short by shutdown is no failure
			t.logger.WarnContext(ctx, "trimming the event log failed", slog.Any("error", err))
		case n > 0:
			t.logger.InfoContext(ctx, "trimmed the event log", slog.Int64("deleted", n))
		}
		if !sleep(ctx, t.r.Interval) {
			return nil
		}
	}
}

// Trim removes what the retention no longer keeps, in batches of one
// transaction each, and returns how many events it removed.
func (t *Retainer) Trim(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, full, err := t.trimBatch(ctx)
		total += n
		if err != nil || !full {
			return total, err
		}
	}
}

// trimBatch removes events from the oldest one on, at most BatchSize, and
// reports whether it removed a whole batch (there may be more).
func (t *Retainer) trimBatch(ctx context.Context) (deleted int64, full bool, err error) {
	rows, err := t.db.Reader.Event.Query().
		Where(event.SequenceNotNil()).
		Order(ent.Asc(event.FieldSequence)).
		Limit(t.r.BatchSize).
		Select(event.FieldSequence, event.FieldCreatedAt).
		All(ctx)
	if err != nil || len(rows) == 0 {
		return 0, false, t.wrap(err)
	}
	head, err := t.head(ctx)
	if err != nil {
		return 0, false, err
	}
	first, last := *rows[0].Sequence, *rows[len(rows)-1].Sequence
	var upTo int64
	if t.r.MaxCount > 0 {
		upTo = head - t.r.MaxCount
	}
	if t.r.MaxAge > 0 {
		cutoff := t.now().Add(-t.r.MaxAge)
		for _, ev := range rows {
			if !ev.CreatedAt.Before(cutoff) {
				break
			}
			upTo = max(upTo, *ev.Sequence)
		}
	}
	// Never the newest event, and never past this batch.
	upTo = min(upTo, head-1, last)
	if upTo < first {
		return 0, false, nil
	}
	n, err := t.db.Client.Event.Delete().
		Where(event.SequenceGTE(first), event.SequenceLTE(upTo)).
		Exec(ctx)
	if err != nil {
		return 0, false, t.wrap(err)
	}
	return int64(n), upTo == last && len(rows) == t.r.BatchSize, nil
}

func (t *Retainer) head(ctx context.Context) (int64, error) {
	var head int64
	query := "SELECT COALESCE(MAX(" + event.FieldSequence + "), 0) FROM " + event.Table
	if err := t.db.ReadDB.QueryRowContext(ctx, query).Scan(&head); err != nil {
		return 0, t.wrap(err)
	}
	return head, nil
}

func (t *Retainer) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("events: retention: %w", t.db.InterpretError(err))
}
