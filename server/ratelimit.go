package server

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/taskerhq/tasker/fault"
)

// RateLimit is the per-token limit of calls: a token bucket of Burst calls
// refilled at Rate calls a second. The zero value (Rate 0) is no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// maxRateLimited bounds the tokens whose buckets are kept; past it the
// buckets that have refilled are dropped first (a full bucket is what a
// new one would be).
const maxRateLimited = 10_000

// rateLimits holds one bucket per token name.
type rateLimits struct {
	limit RateLimit
	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

func newRateLimits(l RateLimit) *rateLimits {
	if l.Rate <= 0 {
		return nil
	}
	if l.Burst < 1 {
		l.Burst = max(1, int(l.Rate))
	}
	return &rateLimits{limit: l, byKey: map[string]*rate.Limiter{}}
}

// allow takes one call from key's bucket, or answers ResourceExhausted
// with the time until the next call would be taken.
func (r *rateLimits) allow(key string, now time.Time) error {
	r.mu.Lock()
	lim, ok := r.byKey[key]
	if !ok {
		if len(r.byKey) >= maxRateLimited {
			r.forgetFull(now)
		}
		lim = rate.NewLimiter(rate.Limit(r.limit.Rate), r.limit.Burst)
		r.byKey[key] = lim
	}
	r.mu.Unlock()
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	res.CancelAt(now) // a refused call takes nothing from the bucket
	return &fault.Error{
		Code: fault.ResourceExhausted, Reason: fault.ReasonRateLimited, RetryAfter: delay,
		Message: fmt.Sprintf("this token may make %g calls a second (bursts of %d); retry in %s", r.limit.Rate, r.limit.Burst, delay.Round(time.Millisecond)),
	}
}

// forgetFull drops the buckets that have refilled, and if none has, all:
// under r.mu.
func (r *rateLimits) forgetFull(now time.Time) {
	for k, l := range r.byKey {
		if l.TokensAt(now) >= float64(r.limit.Burst) {
			delete(r.byKey, k)
		}
	}
	if len(r.byKey) >= maxRateLimited {
		clear(r.byKey)
	}
}
