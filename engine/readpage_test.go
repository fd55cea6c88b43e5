package engine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadPage: a page holds at most size items whose sizes sum to at most
// maxBytes (the first always), reads in chunks so a size-cut page never has
// more than one chunk beyond it in memory, and tells whether items follow.
func TestReadPage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		stored, size, maxBytes, itemSize int
		want                             int
		more                             bool
		maxRead                          int
	}{
		{stored: 0, size: 50, want: 0},
		{stored: 10, size: 50, want: 10},
		{stored: 50, size: 50, want: 50},
		{stored: 51, size: 50, want: 50, more: true},
		{stored: 500, size: 500, maxBytes: 100, itemSize: 1, want: 100, more: true, maxRead: 100 + listChunk + 1},
		{stored: 500, size: 500, maxBytes: 1 << 20, itemSize: 1, want: 500},
		{stored: 501, size: 500, maxBytes: 1 << 20, itemSize: 1, want: 500, more: true},
		{stored: 500, size: 500, maxBytes: 10, itemSize: 11, want: 1, more: true, maxRead: listChunk + 1},
		{stored: 1, size: 500, maxBytes: 10, itemSize: 11, want: 1},
		{stored: 128, size: 128, maxBytes: 64, itemSize: 1, want: 64, more: true},
		{stored: 64, size: 500, maxBytes: 64, itemSize: 1, want: 64},
	} {
		t.Run(fmt.Sprintf("%d stored, page %d, %d bytes of %d", tc.stored, tc.size, tc.maxBytes, tc.itemSize), func(t *testing.T) {
			t.Parallel()
			read := 0
			var sizeOf func(int) int
			if tc.itemSize > 0 {
				sizeOf = func(int) int { return tc.itemSize }
			}
			items, more, err := readPage(tc.size, tc.maxBytes, sizeOf, func(last int, first bool, n int) ([]int, error) {
				from := 0
				if !first {
					from = last + 1
				}
				var out []int
				for i := from; i < tc.stored && len(out) < n; i++ {
					out = append(out, i)
				}
				read += len(out)
				return out, nil
			})
			require.NoError(t, err)
			require.Len(t, items, tc.want)
			for i, it := range items {
				require.Equal(t, i, it, "items in order, none skipped or repeated")
			}
			require.Equal(t, tc.more, more)
			if tc.maxRead > 0 {
				require.LessOrEqual(t, read, tc.maxRead)
			}
		})
	}
}
