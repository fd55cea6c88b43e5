package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/taskerhq/tasker/backoff"
	"github.com/taskerhq/tasker/fault"
)

// readerPage is how many events the replica's reader reads per query: a
// busy log takes a few queries per wake-up, and no page is larger than a
// subscription's buffer, so a subscription that keeps up is never
// detached by one burst.
const readerPage = 256

// DefaultSubscriptionBuffer is how many matching events a live
// subscription may have waiting when SubscriptionOptions.Buffer is 0. The
// events are shared with the other subscriptions, so the buffer costs
// little; one that stays full means the consumer is slower than the log,
// and it is better served reading the log at its own pace.
const DefaultSubscriptionBuffer = 512

// Backoff of the reader after a failed read.
const (
	minReaderBackoff = 100 * time.Millisecond
	maxReaderBackoff = 5 * time.Second
)

// errReaderRunning reports a second Run of one Log.
var errReaderRunning = errors.New("events: the log's reader is already running")

// fanout is the replica's one reader of the log (Log.Run) and the
// subscriptions it feeds.
type fanout struct {
	mu      sync.Mutex
	running bool
	// pos is the reader's position: every event up to it has been offered
	// to the live subscriptions.
	pos  int64
	live map[*Subscription]struct{}
	// started is closed when the reader starts, so subscriptions that
	// found it not running and wait for the log to grow try to join.
	started chan struct{}
}

// liveFeed is what the reader hands one live subscription. Its fields are
// guarded by mu; signal holds a wake-up for the subscription.
type liveFeed struct {
	mu sync.Mutex
	// events are matching events above from that the subscription has not
	// taken yet, in sequence order.
	events []*Stored
	// scanned is the reader's position when it last handed over a page.
	scanned int64
	// from is the subscription's position when it joined: events up to it
	// it has already seen.
	from int64
	// detached is set when the reader lets the subscription go: its
	// buffer was full, or the reader stopped.
	detached bool
	signal   chan struct{}
}

// Run is the replica's one reader of the log. Once per wake-up (Wait) it
// reads the events numbered after its position, unfiltered, and offers
// each live subscription the ones its filter selects, into a bounded
// buffer of the subscription's own. However many subscriptions follow the
// log, a commit costs the same few queries. A subscription whose buffer
// would overflow is detached: it reads the log itself, a page at a time
// at its own pace, and joins the feed again once it has caught up (see
// Subscription.Run), so a slow consumer never holds back the reader, the
// engine or the other subscriptions.
//
// Run reads until ctx ends, then returns nil, detaching every live
// subscription. Read failures are logged and retried with backoff; they
// never end Run. Run once per Log. Subscriptions of a Log whose reader
// does not run read the log themselves.
func (l *Log) Run(ctx context.Context) error {
	wait := backoff.New(minReaderBackoff, maxReaderBackoff)
	var pos int64
	for {
		head, err := l.Head(ctx)
		if err == nil {
			pos = head
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		l.logger.WarnContext(ctx, "event reader: reading the head failed; retrying", slog.Any("error", err))
		sleep(ctx, wait.Next())
	}
	if !l.fan.start(pos) {
		return errReaderRunning
	}
	defer l.fan.stop()
	for {
		err := l.Wait(ctx, pos)
		var p Page
		if err == nil {
			p, err = l.List(ctx, Query{After: pos, Limit: readerPage})
		}
		if ctx.Err() != nil {
			return nil
		}
		if fe, ok := fault.As(err); ok && fe.Reason == fault.ReasonLogTruncated {
			// Retention passed the reader (its reads failed for longer
			// than events are kept): the live subscriptions read for
			// themselves, and each learns of the truncation from its own
			// read; the reader starts again at the head.
			var head int64
			if head, err = l.Head(ctx); err == nil {
				l.logger.WarnContext(ctx, "event reader fell behind retention; restarting at the head", slog.Int64("head", head))
				l.fan.restart(head)
				pos = head
				continue
			}
		}
		if err != nil {
			pause := wait.Next()
			l.logger.WarnContext(ctx, "event reader: reading the log failed; retrying", slog.Any("error", err), slog.Duration("backoff", pause))
			sleep(ctx, pause)
			continue
		}
		wait.Reset()
		l.fan.publish(p.Events, p.Scanned)
		pos = p.Scanned
	}
}

// Subscriptions returns how many subscriptions follow the reader's feed
// right now (the others are reading the log for themselves).
func (l *Log) Subscriptions() int {
	l.fan.mu.Lock()
	defer l.fan.mu.Unlock()
	return len(l.fan.live)
}

// Reads returns how many queries the log has run since it was made: the
// measure of what following the log costs the database.
func (l *Log) Reads() int64 { return l.reads.Load() }

// start marks the reader running at pos; false if it already runs.
func (f *fanout) start(pos int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		return false
	}
	f.running, f.pos, f.live = true, pos, map[*Subscription]struct{}{}
	if f.started == nil {
		f.started = make(chan struct{})
	}
	close(f.started)
	return true
}

// stop detaches every live subscription: they read for themselves from
// now on.
func (f *fanout) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	f.started = nil
	f.detachAll()
}

// restart detaches every live subscription and moves the reader to pos.
func (f *fanout) restart(pos int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detachAll()
	f.pos = pos
}

func (f *fanout) detachAll() {
	for s := range f.live {
		s.feed.detach()
	}
	clear(f.live)
}

// publish offers a page the reader read, up to scanned, to every live
// subscription, and detaches those whose buffer cannot take it.
func (f *fanout) publish(evs []*Stored, scanned int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.live {
		if !s.feed.offer(s.queryMatcher, evs, scanned, s.opts.Buffer) {
			delete(f.live, s)
		}
	}
	f.pos = scanned
}

// join makes s live when the reader runs and has not passed s's position,
// so the feed continues exactly where s's own reading stopped: s skips
// what the reader offers up to its position, and nothing after it can be
// missed, because the reader has not offered it yet. It reports whether
// s joined, and, when the reader does not run, a channel closed when it
// starts (nil when it runs).
func (f *fanout) join(s *Subscription) (joined bool, notRunning <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running {
		if f.started == nil {
			f.started = make(chan struct{})
		}
		return false, f.started
	}
	if f.pos > s.scanned {
		return false, nil // the reader is ahead: read up to it first
	}
	// s is not live, so the reader does not touch its feed: no lock
	// needed beyond f.mu, which orders this with the next publish.
	s.feed.events, s.feed.scanned, s.feed.from, s.feed.detached = nil, s.scanned, s.scanned, false
	f.live[s] = struct{}{}
	return true, nil
}

// leave takes s off the feed, if it is still on it.
func (f *fanout) leave(s *Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, s)
}

// offer hands the events of evs that m selects, above the feed's start, to
// the subscription, and records scanned, unless its buffer cannot take
// them all: then the feed is detached and offer returns false. A page
// goes whole or not at all, so a detached subscription resumes reading
// right after the last page it took.
func (fd *liveFeed) offer(m *Matcher, evs []*Stored, scanned int64, limit int) bool {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	n := 0
	for _, ev := range evs {
		if ev.Sequence > fd.from && m.Match(ev) {
			n++
		}
	}
	if len(fd.events)+n > limit {
		fd.detached = true
		fd.poke()
		return false
	}
	if n > 0 {
		for _, ev := range evs {
			if ev.Sequence > fd.from && m.Match(ev) {
				fd.events = append(fd.events, ev)
			}
		}
		fd.poke()
	}
	fd.scanned = scanned
	return true
}

func (fd *liveFeed) detach() {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.detached = true
	fd.poke()
}

// take returns what the reader handed over since the last take.
func (fd *liveFeed) take() (evs []*Stored, scanned int64, detached bool) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	evs, fd.events = fd.events, nil
	return evs, fd.scanned, fd.detached
}

// poke wakes the subscription; a wake-up already pending covers this one.
func (fd *liveFeed) poke() {
	select {
	case fd.signal <- struct{}{}:
	default:
	}
}
