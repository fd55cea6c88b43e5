package events

import (
	"context"
	"errors"
	"fmt"
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
// query when SubscriptionOptions.PageSize is 0: large enough to keep up
// with a busy log, small enough that a stream blocked on a slow client
// holds little memory.
const DefaultSubscriptionPage = 256

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
	// PageSize bounds the events read per query; 0 means
	// DefaultSubscriptionPage.
	PageSize int
}

// Subscription follows the log from a start position, delivering every
// matching event exactly once, in sequence order. It reads the log at its
// own pace, one page at a time, and sleeps in Log.Wait when it has caught
// up, so a slow consumer only falls behind: it never holds anything the
// engine or other subscribers need. Make one with Log.Subscribe.
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
	query Filter
	// scanned is every sequence considered so far.
	scanned int64
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
	s := &Subscription{Head: head, Oldest: oldest, log: l, opts: opts, matcher: m, query: opts.Filter}
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
func (s *Subscription) Run(ctx context.Context, deliver func(context.Context, *ent.Event) error,
	heartbeat func(ctx context.Context, scanned int64) error,
) error {
	if s.done {
		return nil
	}
	beats := s.opts.Heartbeat > 0 && heartbeat != nil
	nextBeat := time.Now().Add(s.opts.Heartbeat)
	for {
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
			s.scanned = *ev.Sequence
			if s.opts.UntilTaskFinished && finishing(ev.Type) {
				return nil
			}
		}
		s.scanned = p.Scanned
		if beats && !time.Now().Before(nextBeat) {
			if err := heartbeat(ctx, s.scanned); err != nil {
				return err
			}
			nextBeat = time.Now().Add(s.opts.Heartbeat)
		}
		if len(p.Events) == s.opts.PageSize {
			continue // more to read at once
		}
		if err := s.wait(ctx, beats, nextBeat); err != nil {
			return err
		}
	}
}

// wait sleeps until the log grows past what was scanned, or until the
// next heartbeat is due.
func (s *Subscription) wait(ctx context.Context, beats bool, nextBeat time.Time) error {
	if !beats {
		return s.log.Wait(ctx, s.scanned)
	}
	wctx, cancel := context.WithDeadline(ctx, nextBeat)
	defer cancel()
	err := s.log.Wait(wctx, s.scanned)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil // the heartbeat is due: the loop sends it after a look
	}
	return err
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
