package events

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/task"
	"github.com/taskerhq/tasker/fault"
)

// Start says where a subscription starts.
type Start int

// Start positions.
const (
	// StartNow delivers only events numbered after the subscription
	// started.
	StartNow Start = iota
	// StartBeginning delivers every retained event.
	StartBeginning
	// StartAfter delivers the events after SubscriptionOptions.After.
	StartAfter
)

// DefaultSubscriptionPage is how many events a subscription reads per
// query when SubscriptionOptions.PageSize is 0. It reads for itself only
// while it is behind the replica's reader, usually because its client is
// slow, so the page is small: a thousand streams blocked on slow clients
// each hold one.
const DefaultSubscriptionPage = 64

// FinishingTypes are the task events after which until_task_finished ends a
// subscription: the task is terminal, or in error (which only an operator
// can revive).
var FinishingTypes = []string{TaskCompleted, TaskFailed, TaskCancelled, TaskResolvedManually}

// SubscriptionOptions say what a subscription delivers.
type SubscriptionOptions struct {
	// Filter selects events, as for List.
	Filter Filter
	// Start and After say where the subscription starts.
	Start Start
	// After is the last sequence the subscriber has seen, with StartAfter;
	// it must be 0 otherwise.
	After int64
	// UntilTaskFinished ends the subscription once the task of
	// Filter.TaskID (required) has finished and its events up to the
	// finishing one are delivered.
	UntilTaskFinished bool
	// Heartbeat, when above 0, is how often Run reports how far it has
	// scanned, events or not.
	Heartbeat time.Duration
	// PageSize bounds the events read per query while the subscription
	// reads the log itself; 0 means DefaultSubscriptionPage.
	PageSize int
	// Buffer bounds the matching events the replica's reader may hand the
	// subscription before it has taken them; 0 means
	// DefaultSubscriptionBuffer. A subscription that falls this far behind
	// reads the log itself until it has caught up.
	Buffer int
}

// Subscription follows the log from a start position, delivering every
// matching event exactly once, in sequence order. It reads the log itself,
// one page at a time at its own pace, until it has caught up with the
// replica's reader (Log.Run); then it follows the reader's feed, which
// costs the database nothing more, until it falls a buffer behind, when it
// reads for itself again. A slow consumer only falls behind: it never
// holds anything the engine or other subscribers need. Make one with
// Log.Subscribe.
type Subscription struct {
	// Head is the newest sequence in the log when the subscription started.
	Head int64
	// StartAfter is where it starts: events after it follow.
	StartAfter int64
	// Oldest is the oldest sequence retained when it started (0 for an
	// empty log).
	Oldest int64

	log     *Log
	opts    SubscriptionOptions
	matcher *Matcher
	// query is what is read: the filter, or with UntilTaskFinished every
	// event of the task, so the finishing event is seen even when the
	// filter's types leave it out; matcher then picks what is delivered.
	// queryMatcher matches query in memory, for the reader's feed.
	query        Filter
	queryMatcher *Matcher
	// feed is what the replica's reader hands over while the subscription
	// is live.
	feed liveFeed
	// scanned is every sequence considered so far; pos mirrors it for
	// readers outside Run (Log.Following).
	scanned int64
	pos     atomic.Int64
	// done is set when the subscription has nothing left to deliver: its
	// task finished before StartAfter.
	done bool
}

// Subscribe validates opts and fixes the start position. Errors:
// InvalidArgument naming the field ("filter.…", "after_sequence",
// "filter.task_id" when UntilTaskFinished has no task); NotFound when
// UntilTaskFinished names an unknown task; OutOfRange LOG_TRUNCATED when
// After is older than the retained log.
func (l *Log) Subscribe(ctx context.Context, opts SubscriptionOptions) (*Subscription, error) {
	m, err := ParseFilter(opts.Filter)
	if err != nil {
		return nil, err
	}
	if opts.UntilTaskFinished && opts.Filter.TaskID == "" {
		return nil, fault.Invalid("filter.task_id", "is required with until_task_finished")
	}
	switch {
	case opts.After < 0:
		return nil, fault.Invalid("after_sequence", "must not be negative, got %d", opts.After)
	case opts.After != 0 && opts.Start != StartAfter:
		return nil, fault.Invalid("after_sequence", "is only read with START_POSITION_AFTER_SEQUENCE; set start to resume after %d", opts.After)
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultSubscriptionPage
	}
	opts.PageSize = min(opts.PageSize, MaxListLimit)
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultSubscriptionBuffer
	}
	// The reader offers a page whole or not at all: a buffer smaller than
	// its page would detach the subscription at every busy moment.
	opts.Buffer = max(opts.Buffer, readerPage)

	// The head before the task's state, so a task that is not finished at
	// that read finishes with an event numbered after the head.
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	oldest, err := l.Oldest(ctx)
	if err != nil {
		return nil, err
	}
	s := &Subscription{
		Head: head, Oldest: oldest, log: l, opts: opts, matcher: m, query: opts.Filter, queryMatcher: m,
		feed: liveFeed{signal: make(chan struct{}, 1)},
	}
	switch opts.Start {
	case StartNow:
		s.StartAfter = head
	case StartBeginning:
		s.StartAfter = max(oldest-1, 0)
	case StartAfter:
		switch {
		case opts.After > head:
			return nil, fault.Invalid("after_sequence", "is beyond the newest event of the log (%d)", head)
		case oldest > 1 && opts.After < oldest-1:
			return nil, truncated(opts.After, oldest)
		}
		s.StartAfter = opts.After
	default:
		return nil, fault.Invalid("start", "is not a start position: %d", opts.Start)
	}
	s.scanned = s.StartAfter

	if opts.UntilTaskFinished {
		s.query = Filter{TaskID: opts.Filter.TaskID}
		if s.queryMatcher, err = ParseFilter(s.query); err != nil {
			return nil, err
		}
		if s.done, err = l.finishedBefore(ctx, m, s.StartAfter); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// finishedBefore reports whether the matcher's task has already finished
// with an event at or below after, so a subscription starting there has
// nothing left to wait for. A finished task whose finishing event is not
// numbered yet (PostgreSQL, between commit and sequencer) is not: that
// event is still to come.
func (l *Log) finishedBefore(ctx context.Context, m *Matcher, after int64) (bool, error) {
	t, err := l.db.Reader.Task.Get(ctx, *m.taskID)
	if ent.IsNotFound(err) {
		return false, fault.NotFoundf("task", m.taskID.String())
	}
	if err != nil {
		return false, fmt.Errorf("events: read task: %w", l.db.InterpretError(err))
	}
	switch t.State {
	case task.StateComplete, task.StateError, task.StateCancelled, task.StateResolvedManually:
	default:
		return false, nil
	}
	last, err := l.db.Reader.Event.Query().
		Where(event.TaskID(t.ID), event.TypeIn(FinishingTypes...)).
		Order(ent.Desc(event.FieldID)).
		First(ctx)
	switch {
	case ent.IsNotFound(err):
		return true, nil // retention took it: it is long past
	case err != nil:
		return false, fmt.Errorf("events: read the task's last event: %w", l.db.InterpretError(err))
	}
	return last.Sequence != nil && *last.Sequence <= after, nil
}

// Scanned returns the last sequence the subscription has considered: every
// matching event up to it has been delivered. Resume after it. Read it
// once Run has returned, or from Run's own callbacks.
func (s *Subscription) Scanned() int64 { return s.scanned }

// Run delivers the subscription's events to deliver, in sequence order,
// and reports progress to heartbeat (nil to skip) every
// SubscriptionOptions.Heartbeat, until ctx ends (ctx.Err()), a callback
// fails (its error), the task has finished with UntilTaskFinished (nil),
// or reading fails: OutOfRange LOG_TRUNCATED when retention removed events
// this subscription had not read yet. Run once.
//
// It reads the log in pages until it has caught up with the replica's
// reader, then joins the reader's feed; when it falls a buffer behind, the
// reader lets it go, and it reads pages again from right after the last
// event the feed gave it. Sequence numbers make both hand-overs exact: no
// event is missed or delivered twice.
func (s *Subscription) Run(ctx context.Context, deliver func(context.Context, *Stored) error,
	heartbeat func(ctx context.Context, scanned int64) error,
) error {
	if s.done {
		return nil
	}
	s.pos.Store(s.scanned)
	s.log.running.Store(s, struct{}{})
	defer s.log.running.Delete(s)
	hb := heartbeats{every: s.opts.Heartbeat, fn: heartbeat}
	hb.start()
	for {
		joined, notRunning := s.log.fan.join(s)
		if joined {
			finished, err := s.follow(ctx, deliver, &hb)
			if finished || err != nil {
				return err
			}
			continue // detached: read the log from where the feed stopped
		}
		p, err := s.log.List(ctx, Query{Filter: s.query, After: s.scanned, Limit: s.opts.PageSize})
		if err != nil {
			return err
		}
		for _, ev := range p.Events {
			if s.matcher.Match(ev) {
				if err := deliver(ctx, ev); err != nil {
					return err
				}
			}
			// Scanned moves event by event, so a callback that fails
			// leaves it right after the last delivered event.
			s.scanned = ev.Sequence
			if s.opts.UntilTaskFinished && finishing(ev.Type) {
				return nil
			}
		}
		s.scanned = p.Scanned
		s.pos.Store(s.scanned)
		if err := hb.due(ctx, s.scanned); err != nil {
			return err
		}
		if p.Full || notRunning == nil {
			// More to read at once, or caught up with the head of a
			// moment ago: join the reader, or read up to it if it moved
			// on meanwhile.
			continue
		}
		if err := s.wait(ctx, &hb, notRunning); err != nil {
			return err
		}
	}
}

// follow delivers what the reader's feed hands over until the reader lets
// the subscription go (false, nil), the task has finished with
// UntilTaskFinished (true, nil), or ctx or a callback fails.
func (s *Subscription) follow(ctx context.Context, deliver func(context.Context, *Stored) error, hb *heartbeats) (bool, error) {
	defer s.log.fan.leave(s)
	for {
		evs, scanned, detached := s.feed.take()
		for _, ev := range evs {
			if s.matcher.Match(ev) {
				if err := deliver(ctx, ev); err != nil {
					return false, err
				}
			}
			s.scanned = ev.Sequence
			if s.opts.UntilTaskFinished && finishing(ev.Type) {
				return true, nil
			}
		}
		// The reader may still be below where the subscription joined.
		s.scanned = max(s.scanned, scanned)
		s.pos.Store(s.scanned)
		if detached {
			return false, nil
		}
		if err := hb.due(ctx, s.scanned); err != nil {
			return false, err
		}
		timer, stop := hb.timer()
		select {
		case <-s.feed.signal:
		case <-timer:
		case <-ctx.Done():
			stop()
			return false, ctx.Err()
		}
		stop()
	}
}

// wait sleeps until the log grows past what was scanned, the next
// heartbeat is due, or the replica's reader starts (readerStarts closes),
// which the subscription then joins.
func (s *Subscription) wait(ctx context.Context, hb *heartbeats, readerStarts <-chan struct{}) error {
	wctx, started := context.WithCancel(ctx)
	defer started()
	if hb.on() {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(wctx, hb.next)
		defer cancel()
	}
	if readerStarts != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-readerStarts:
				started()
			case <-done:
			}
		}()
	}
	err := s.log.Wait(wctx, s.scanned)
	if err != nil && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return nil // the heartbeat is due or the reader started: look again
	}
	return err
}

// heartbeats paces a subscription's progress reports.
type heartbeats struct {
	every time.Duration
	fn    func(ctx context.Context, scanned int64) error
	next  time.Time
}

func (h *heartbeats) on() bool { return h.every > 0 && h.fn != nil }

func (h *heartbeats) start() { h.next = time.Now().Add(h.every) }

// due sends a heartbeat when one is due.
func (h *heartbeats) due(ctx context.Context, scanned int64) error {
	if !h.on() || time.Now().Before(h.next) {
		return nil
	}
	if err := h.fn(ctx, scanned); err != nil {
		return err
	}
	h.start()
	return nil
}

// timer fires when the next heartbeat is due (never without heartbeats);
// call stop when done with it.
func (h *heartbeats) timer() (<-chan time.Time, func() bool) {
	if !h.on() {
		return nil, func() bool { return false }
	}
	t := time.NewTimer(time.Until(h.next))
	return t.C, t.Stop
}

// finishing reports whether typ ends an until_task_finished subscription.
func finishing(typ string) bool {
	for _, f := range FinishingTypes {
		if typ == f {
			return true
		}
	}
	return false
}
