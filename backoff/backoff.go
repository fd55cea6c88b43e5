package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with jitter: Next returns a pause around
// Min, then around twice as much after each call, never above Max. The zero
// value of the state is ready to use once Min and Max are set; it is not
// safe for concurrent use (each retry loop owns one).
type Backoff struct {
	// Min is the first pause; Max caps the pauses.
	Min, Max time.Duration
	// cur is the pause before jitter that Next returns next; 0 means Min.
	cur time.Duration
}

// New returns a Backoff from minimum to maximum.
func New(minimum, maximum time.Duration) *Backoff {
	return &Backoff{Min: minimum, Max: maximum}
}

// Next returns the pause before the next attempt and doubles the one after.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := Jitter(min(b.cur, b.Max))
	b.cur = min(2*b.cur, b.Max)
	return d
}

// Reset starts again from Min, after an attempt succeeded.
func (b *Backoff) Reset() { b.cur = 0 }

// Exponential returns the pause after the n-th failure in a row (n from 1):
// initial doubled n-1 times, capped at maximum, jittered. It is Next for
// loops that count their failures rather than keep a Backoff.
func Exponential(initial, maximum time.Duration, n int) time.Duration {
	d := initial
	for i := 1; i < n && d < maximum; i++ {
		d *= 2
	}
	return Jitter(min(d, maximum))
}

// Jitter returns d less a random part of up to a fifth of it: spread
// enough that retries of many clients do not line up, close enough to d
// that a configured pause still means what it says.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - time.Duration(rand.Int64N(int64(d)/5+1)) //nolint:gosec // jitter needs no cryptographic randomness
}
