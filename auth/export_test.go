package auth

import "time"

// SetClock replaces the authenticator's clock.
func (a *Authenticator) SetClock(now func() time.Time) { a.now = now }

// Cached returns the number of cached tokens.
func (a *Authenticator) Cached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}
