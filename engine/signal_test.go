package engine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func woken(w *claimWaiter) bool {
	select {
	case <-w.woken:
		return true
	default:
		return false
	}
}

func TestClaimWaits(t *testing.T) {
	t.Parallel()
	a := HandlerRef{Namespace: "ns", Handler: "a"}
	b := HandlerRef{Namespace: "ns", Handler: "b"}

	t.Run("wakes as many claimers of the handler as steps, longest waiting first", func(t *testing.T) {
		t.Parallel()
		var c claimWaits
		onlyB := c.join([]HandlerRef{b})
		first := c.join([]HandlerRef{a})
		both := c.join([]HandlerRef{b, a})
		last := c.join([]HandlerRef{a})
		c.notify(map[HandlerRef]int{a: 2})
		require.False(t, woken(onlyB), "does not serve a")
		require.True(t, woken(first))
		require.True(t, woken(both))
		require.False(t, woken(last), "two steps wake two claimers")
		require.Equal(t, a, first.reason)
		require.Len(t, c.waiting, 2)
	})

	t.Run("notifyAll wakes every claimer", func(t *testing.T) {
		t.Parallel()
		var c claimWaits
		ws := []*claimWaiter{c.join([]HandlerRef{a}), c.join([]HandlerRef{b})}
		c.notifyAll()
		for _, w := range ws {
			require.True(t, woken(w))
			require.Equal(t, HandlerRef{}, w.reason)
		}
		require.Empty(t, c.waiting)
	})

	t.Run("a claimer that leaves unwoken is forgotten", func(t *testing.T) {
		t.Parallel()
		var c claimWaits
		gone := c.join([]HandlerRef{a})
		c.leave(gone, true)
		stays := c.join([]HandlerRef{a})
		c.notify(map[HandlerRef]int{a: 1})
		require.False(t, woken(gone))
		require.True(t, woken(stays), "the wake goes to a claimer still waiting")
	})

	t.Run("a woken claimer that returns without looking passes the wake on", func(t *testing.T) {
		t.Parallel()
		var c claimWaits
		busy := c.join([]HandlerRef{a})
		next := c.join([]HandlerRef{a})
		c.notify(map[HandlerRef]int{a: 1})
		require.True(t, woken(busy))
		require.False(t, woken(next))
		c.leave(busy, true)
		require.True(t, woken(next), "passed on")
	})

	t.Run("a woken claimer that looks again keeps the wake", func(t *testing.T) {
		t.Parallel()
		var c claimWaits
		w := c.join([]HandlerRef{a})
		other := c.join([]HandlerRef{a})
		c.notify(map[HandlerRef]int{a: 1})
		c.leave(w, false)
		require.False(t, woken(other))
	})
}
