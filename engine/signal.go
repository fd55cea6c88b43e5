package engine

import (
	"slices"
	"sync"
)

// broadcast wakes every waiter at once: waiters take the current channel,
// notify closes it and starts a new one. A waiter that takes the channel
// before checking for work cannot miss a notification sent after the check.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// claimWaits are the long-polling claimers of this process. A commit that
// made k steps of a handler claimable wakes k claimers serving that handler,
// the longest waiting first, instead of every claimer: the others would
// each look, find the steps taken, and sleep again.
//
// A claimer joins before it looks for work, so a commit between its look and
// its sleep wakes it. A claimer woken while it was busy, which then returns
// without looking again, passes the wake on (leave), so no step is left with
// its wake spent on a claimer that did not look for it.
type claimWaits struct {
	mu      sync.Mutex
	waiting []*claimWaiter
}

type claimWaiter struct {
	handlers []HandlerRef
	// woken is closed when the claimer is woken; reason is the handler it
	// was woken for (zero for a wake of every claimer).
	woken  chan struct{}
	reason HandlerRef
	done   bool
	// asleep is set once the claimer has looked and found nothing, as it
	// starts to wait.
	asleep bool
}

// sleep marks w as waiting for a wake-up (SleepingClaimers counts it).
func (c *claimWaits) sleep(w *claimWaiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.asleep = true
}

// sleeping counts the claimers waiting for a wake-up.
func (c *claimWaits) sleeping() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.waiting {
		if w.asleep && !w.done {
			n++
		}
	}
	return n
}

func (w *claimWaiter) serves(h HandlerRef) bool {
	for _, x := range w.handlers {
		if x == h {
			return true
		}
	}
	return false
}

// join registers a claimer of hs.
func (c *claimWaits) join(hs []HandlerRef) *claimWaiter {
	w := &claimWaiter{handlers: hs, woken: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = append(c.waiting, w)
	return w
}

// leave unregisters w. When w was woken for a handler and passOn is set
// (the claimer returns without looking again), the wake goes to another
// claimer of that handler.
func (c *claimWaits) leave(w *claimWaiter, passOn bool) {
	c.mu.Lock()
	if !w.done {
		w.done = true
		c.remove(w)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if passOn && w.reason != (HandlerRef{}) {
		c.notify(map[HandlerRef]int{w.reason: 1})
	}
}

// notify wakes, for each handler, as many of its claimers as the count.
func (c *claimWaits) notify(ready map[HandlerRef]int) {
	if len(ready) == 0 {
		return
	}
	left := make(map[HandlerRef]int, len(ready))
	for h, n := range ready {
		left[h] = n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.waiting[:0]
	for _, w := range c.waiting {
		woke := false
		for h, n := range left {
			if n > 0 && w.serves(h) {
				left[h] = n - 1
				w.wake(h)
				woke = true
				break
			}
		}
		if !woke {
			kept = append(kept, w)
		}
	}
	clear(c.waiting[len(kept):])
	c.waiting = kept
}

// notifyAll wakes every claimer: work was committed by another replica, or
// may have been while the listener was away, and how much is unknown.
func (c *claimWaits) notifyAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.waiting {
		w.wake(HandlerRef{})
	}
	clear(c.waiting)
	c.waiting = c.waiting[:0]
}

func (w *claimWaiter) wake(reason HandlerRef) {
	w.done, w.reason = true, reason
	close(w.woken)
}

func (c *claimWaits) remove(w *claimWaiter) {
	for i, x := range c.waiting {
		if x == w {
			c.waiting = slices.Delete(c.waiting, i, i+1)
			return
		}
	}
}
