package events_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// collector runs one subscription and records the sequences it delivers.
type collector struct {
	mu   sync.Mutex
	seqs []int64
	// gate, when set, is received from before each delivery: a consumer
	// that does not read until the test lets it.
	gate chan struct{}
	done chan error
}

func (b *bundle) collect(t *testing.T, ctx context.Context, opts events.SubscriptionOptions, gate chan struct{}) *collector {
	t.Helper()
	sub, err := b.log.Subscribe(ctx, opts)
	require.NoError(t, err)
	c := &collector{gate: gate, done: make(chan error, 1)}
	go func() {
		c.done <- sub.Run(ctx, func(ctx context.Context, ev *events.Stored) error {
			if c.gate != nil {
				select {
				case <-c.gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.seqs = append(c.seqs, ev.Sequence)
			return nil
		}, nil)
	}()
	return c
}

func (c *collector) got() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.seqs...)
}

// waitFor waits until c has delivered want (exactly, in order).
func (c *collector) waitFor(t *testing.T, want []int64, name string) {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.got()) >= len(want) }, 30*time.Second, 5*time.Millisecond,
		"%s delivered %d of %d", name, len(c.got()), len(want))
	require.Equal(t, want, c.got(), "%s: every matching event once, in order", name)
}

// mixedEvents are n events numbered 1..n once appended in one go: even
// ones are step events of namespace "a", odd ones task events of "b".
func mixedEvents(from, n int) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		if (from+i)%2 == 0 {
			evs[i] = events.Event{Type: events.StepEnqueued, Namespace: "a"}
		} else {
			evs[i] = events.Event{Type: events.TaskCreated, Namespace: "b"}
		}
	}
	return evs
}

// TestFanOut: many subscriptions with different filters follow the one
// reader; each delivers exactly its matching events of 1..N, once and in
// order, and the events cost the database the same few reads however
// many subscriptions there are.
func TestFanOut(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		filters := []events.Filter{{}, {Types: []string{"step.*"}}, {Namespace: "b"}, {Types: []string{"task.created"}, Namespace: "a"}}
		const perFilter = 10
		var subs []*collector
		for range perFilter {
			for _, f := range filters {
				subs = append(subs, b.collect(t, ctx, events.SubscriptionOptions{Filter: f, Start: events.StartNow}, nil))
			}
		}
		require.Eventually(t, func() bool { return b.log.Subscriptions() == len(subs) }, 10*time.Second, time.Millisecond,
			"every subscription follows the reader")

		const n = 600
		reads := b.log.Reads()
		var wg sync.WaitGroup
		errs := make(chan error, 60)
		for w := range 6 {
			wg.Go(func() {
				for i := range 10 {
					errs <- b.append(ctx, mixedEvents(w*100+i*10, 10)...)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		b.waitHead(t, n)

		byFilter := make([][]int64, len(filters))
		all, err := b.log.List(ctx, events.Query{Limit: events.MaxListLimit})
		require.NoError(t, err)
		require.Len(t, all.Events, n)
		for _, ev := range all.Events {
			for i, f := range filters {
				m, err := events.ParseFilter(f)
				require.NoError(t, err)
				if m.Match(ev) {
					byFilter[i] = append(byFilter[i], ev.Sequence)
				}
			}
		}
		require.Len(t, byFilter[0], n)
		require.Empty(t, byFilter[3], "a filter nothing matches")
		for i, c := range subs {
			c.waitFor(t, byFilter[i%len(filters)], fmt.Sprintf("subscription %d", i))
		}
		// 60 commits, 40 subscriptions: reading per subscription would be
		// thousands of queries; the reader needs a few per wake-up.
		require.Less(t, b.log.Reads()-reads, int64(60*6), "reads do not grow with the subscriptions")
	})
}

// TestFanOutSlowSubscriber: a subscription whose consumer does not read
// falls a buffer behind and is detached, without holding back appends or
// the other subscriptions; once it reads, it delivers every event once, in
// order, and joins the reader's feed again.
func TestFanOutSlowSubscriber(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		gate := make(chan struct{})
		slow := b.collect(t, ctx, events.SubscriptionOptions{Start: events.StartNow, PageSize: 50}, gate)
		fast := b.collect(t, ctx, events.SubscriptionOptions{Start: events.StartNow}, nil)
		require.Eventually(t, func() bool { return b.log.Subscriptions() == 2 }, 10*time.Second, time.Millisecond)

		const n = 2 * events.DefaultSubscriptionBuffer
		for i := range n / 64 {
			b.appendTx(t, mixedEvents(i*64, 64)...)
		}
		want := seqRange(1, n)
		// The fast one gets everything while the slow one still holds its
		// first event: the slow one was let go.
		fast.waitFor(t, want, "fast")
		require.Equal(t, 1, b.log.Subscriptions(), "the slow subscription was detached")
		require.Empty(t, slow.got())

		close(gate)
		slow.waitFor(t, want, "slow")
		require.Eventually(t, func() bool { return b.log.Subscriptions() == 2 }, 10*time.Second, time.Millisecond,
			"caught up, it follows the reader again")

		// And from the feed again, without a gap or a repeat.
		b.appendTx(t, mixedEvents(n, 10)...)
		more := seqRange(1, n+10)
		slow.waitFor(t, more, "slow after rejoining")
		fast.waitFor(t, more, "fast")
	})
}

// TestFanOutWithoutReader: a log whose reader does not run still serves
// subscriptions, each reading for itself.
func TestFanOutWithoutReader(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		other := &bundle{db: db, log: events.NewLog(db, b.logger), logger: b.logger}
		c := other.collect(t, ctx, events.SubscriptionOptions{Start: events.StartBeginning}, nil)
		// Appended through the readerless log, which wakes its waiters.
		require.NoError(t, other.append(ctx, mixedEvents(0, 3)...))
		c.waitFor(t, []int64{1, 2, 3}, "readerless")
		require.Zero(t, other.log.Subscriptions())
	})
}

// seqRange returns from..to.
func seqRange(from, to int) []int64 {
	out := make([]int64, 0, to-from+1)
	for i := from; i <= to; i++ {
		out = append(out, int64(i))
	}
	return out
}
