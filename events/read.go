package events

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/fault"
	"github.com/taskerhq/tasker/storage"
)

// Bounds of Query.Limit.
const (
	// DefaultListLimit is the page size when Query.Limit is 0.
	DefaultListLimit = 100
	// MaxListLimit is the largest page List returns.
	MaxListLimit = 1000
	// DefaultPageBytes is Query.MaxBytes when it is 0: half gRPC's default
	// 4 MiB receive limit, so a page of large events reaches any client.
	DefaultPageBytes = 2 << 20
	// readChunk is how many events List reads from the database at a time,
	// so a page cut short by bytes holds little more than it returns.
	readChunk = 64
)

// Log reads the event log: numbered events only, in sequence order, and
// wakes readers when the head advances (see Wait). One Log serves a whole
// process; it is safe for concurrent use.
type Log struct {
	db     *storage.DB
	logger *slog.Logger

	// sequencer wakes the PostgreSQL sequencer after commits that
	// appended events.
	sequencer *storage.Notifier
	// local is this process's Sequencer (UseSequencer): while it leads,
	// Appended wakes it directly instead of through a NOTIFY.
	local atomic.Pointer[Sequencer]

	// listened is set once Listen has registered the log with the
	// process's listener.
	listened atomic.Bool
	// fan is the replica's one reader of the log and its live subscribers
	// (Run).
	fan fanout
	// reads counts the queries the log has run, for benchmarks.
	reads atomic.Int64
	// running are the subscriptions whose Run is running, for the
	// subscription gauges (Following).
	running sync.Map // *Subscription -> struct{}

	mu sync.Mutex
	// head is the highest sequence known to be numbered and committed; it
	// only grows.
	head int64
	// changed is closed, and replaced, whenever waiters should look again.
	changed chan struct{}
}

// NewLog returns the log of db. Call Appended after every commit that
// appended events; on PostgreSQL, also register it with the process's
// listener (Listen) so readers learn of the sequencer's progress; and run
// (*Log).Run, the one reader that feeds every subscription of the process.
func NewLog(db *storage.DB, logger *slog.Logger) *Log {
	return &Log{
		db: db, logger: logger, changed: make(chan struct{}),
		sequencer: db.NewNotifier(appendedChannel, logger),
	}
}

// Query selects a range of the log.
type Query struct {
	// Filter selects events; validated as by ParseFilter.
	Filter Filter
	// After excludes events up to this sequence: the last one the reader
	// has seen or scanned, 0 for the beginning.
	After int64
	// Until, when above 0, excludes events after this sequence.
	Until int64
	// Limit bounds the events returned: 0 means DefaultListLimit, more than
	// MaxListLimit means MaxListLimit.
	Limit int
	// MaxBytes bounds the page by size as well: events are added while
	// their sizes sum to at most MaxBytes, but the first always is. 0 means
	// DefaultPageBytes.
	MaxBytes int
	// Size measures an event for MaxBytes (the server passes its encoded
	// size); nil counts its payload and identifying strings.
	Size func(*Stored) int
}

// approximateSize is Query.Size when the caller gives none.
func approximateSize(ev *Stored) int {
	return len(ev.Payload) + len(ev.Type) + len(ev.CorrelationID) + len(ev.Namespace) +
		len(ev.TemplateName) + len(ev.TemplateVersion) + 64
}

// Page is the answer to a Query.
type Page struct {
	// Events are the matching events in sequence order; every one has a
	// sequence.
	Events []*Stored
	// Scanned is the highest sequence considered: the last event's when the
	// page is full, otherwise the head at query time, bounded by Until. A
	// reader resumes with After = Scanned and skips what its filter
	// rejected. It is never below the query's After.
	Scanned int64
	// Head is the highest sequence in the log at query time.
	Head int64
	// Full reports that the page stopped at its count or byte limit, so
	// more events may follow at once.
	Full bool
}

// Head returns the highest numbered sequence, 0 when the log is empty.
func (l *Log) Head(ctx context.Context) (int64, error) {
	return l.aggregate(ctx, "MAX")
}

// Unnumbered returns how many committed events wait for the sequencer to
// number them (PostgreSQL; always 0 on SQLite, which numbers as it
// appends): the sequencer's lag. It reads the partial index of unnumbered
// events, which holds only them.
func (l *Log) Unnumbered(ctx context.Context) (int64, error) {
	var v int64
	query := "SELECT COUNT(*) FROM " + event.Table + " WHERE " + event.FieldSequence + " IS NULL"
	l.reads.Add(1)
	if err := l.db.ReadDB.QueryRowContext(ctx, query).Scan(&v); err != nil {
		return 0, fmt.Errorf("events: count unnumbered events: %w", l.db.InterpretError(err))
	}
	return v, nil
}

// Following returns how many subscriptions are running in this process
// (following the reader's feed or reading for themselves) and the lowest
// sequence any of them has reached, -1 when none runs: head minus that is
// the largest subscriber lag.
func (l *Log) Following() (n int, lowest int64) {
	lowest = -1
	l.running.Range(func(k, _ any) bool {
		n++
		if pos := k.(*Subscription).pos.Load(); lowest < 0 || pos < lowest {
			lowest = pos
		}
		return true
	})
	return n, lowest
}

// Oldest returns the lowest numbered sequence still retained, 0 when the
// log is empty.
func (l *Log) Oldest(ctx context.Context) (int64, error) {
	return l.aggregate(ctx, "MIN")
}

// aggregate reads MAX or MIN of the sequence; both dialects answer from the
// unique index on sequence, and both skip the unnumbered rows.
func (l *Log) aggregate(ctx context.Context, fn string) (int64, error) {
	var v int64
	query := "SELECT COALESCE(" + fn + "(" + event.FieldSequence + "), 0) FROM " + event.Table
	l.reads.Add(1)
	if err := l.db.ReadDB.QueryRowContext(ctx, query).Scan(&v); err != nil {
		return 0, fmt.Errorf("events: read %s sequence: %w", fn, l.db.InterpretError(err))
	}
	return v, nil
}

// List returns the events after q.After that match q.Filter. It fails with
// InvalidArgument for a bad filter or range, and with OutOfRange
// LOG_TRUNCATED (metadata "oldest_sequence") when retention has already
// removed events after q.After, so the reader would silently miss some.
func (l *Log) List(ctx context.Context, q Query) (Page, error) {
	m, err := ParseFilter(q.Filter)
	if err != nil {
		return Page{}, err
	}
	switch {
	case q.After < 0:
		return Page{}, fault.Invalid("after_sequence", "must not be negative, got %d", q.After)
	case q.Until < 0:
		return Page{}, fault.Invalid("until_sequence", "must not be negative, got %d", q.Until)
	case q.Until > 0 && q.Until < q.After:
		return Page{}, fault.Invalid("until_sequence", "must be 0 or at least after_sequence (%d), got %d", q.After, q.Until)
	}
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}

	// The head first: numbered events form a dense prefix of the sequence
	// at any moment, so every event up to this head is visible to the
	// query below, and Scanned may claim all of them.
	head, err := l.Head(ctx)
	if err != nil {
		return Page{}, err
	}
	bound := head
	if q.Until > 0 {
		bound = min(bound, q.Until)
	}
	p := Page{Scanned: max(q.After, bound), Head: head}
	if bound > q.After {
		full, err := l.read(ctx, q, m, bound, limit, &p)
		if err != nil {
			return Page{}, err
		}
		if full {
			p.Full = true
			p.Scanned = p.Events[len(p.Events)-1].Sequence
		}
	}

	// Retention deletes from the low end only, so the oldest sequence never
	// goes down: checked after the read, a retained After+1 means the read
	// started there, and a gap means events after After are gone.
	oldest, err := l.Oldest(ctx)
	if err != nil {
		return Page{}, err
	}
	if oldest > 1 && q.After < oldest-1 {
		return Page{}, truncated(q.After, oldest)
	}
	return p, nil
}

// read fills p.Events with the events of (q.After, bound] that match m, at
// most limit of them and q.MaxBytes in all, reading readChunk at a time. It
// reports whether the page is full, so Scanned must stop at its last event.
func (l *Log) read(ctx context.Context, q Query, m *Matcher, bound int64, limit int, p *Page) (bool, error) {
	maxBytes, size := q.MaxBytes, q.Size
	if maxBytes <= 0 {
		maxBytes = DefaultPageBytes
	}
	if size == nil {
		size = approximateSize
	}
	after, total := q.After, 0
	for len(p.Events) < limit {
		n := min(readChunk, limit-len(p.Events))
		l.reads.Add(1)
		batch, err := l.db.Reader.Event.Query().
			Where(event.SequenceGT(after), event.SequenceLTE(bound)).
			Where(m.predicates()...).
			Order(ent.Asc(event.FieldSequence)).
			Limit(n).
			All(ctx)
		if err != nil {
			return false, fmt.Errorf("events: list: %w", l.db.InterpretError(err))
		}
		for _, ev := range batch {
			st := storedOf(ev)
			sz := size(st)
			if len(p.Events) > 0 && total+sz > maxBytes {
				return true, nil
			}
			total += sz
			p.Events = append(p.Events, st)
		}
		if len(batch) < n {
			return false, nil
		}
		after = *batch[len(batch)-1].Sequence
	}
	return true, nil
}

// truncated is the error for a resume point older than the retained log.
func truncated(after, oldest int64) *fault.Error {
	return &fault.Error{
		Code:     fault.OutOfRange,
		Reason:   fault.ReasonLogTruncated,
		Message:  fmt.Sprintf("events after sequence %d are no longer retained; the oldest retained event is %d", after, oldest),
		Metadata: map[string]string{"oldest_sequence": strconv.FormatInt(oldest, 10)},
	}
}
