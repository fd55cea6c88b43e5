package auth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrInvalidToken is returned for a token that is unknown, expired or
// revoked; the wrapping message says which.
var ErrInvalidToken = errors.New("invalid token")

// AuthenticatorOptions are the optional settings of an Authenticator.
type AuthenticatorOptions struct {
	// TTL is how long a lookup is trusted before the database is asked
	// again: the longest a revocation takes to reach this replica. Default
	// 5s.
	TTL time.Duration
	// MaxEntries bounds the cache; default 10,000 tokens.
	MaxEntries int
}

// Authenticator turns bearer secrets into principals.
type Authenticator struct {
	store *Store
	log   *slog.Logger
	ttl   time.Duration
	max   int
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]cached // by hash of the secret
}

type cached struct {
	token     Token
	principal *Principal
	fetched   time.Time
}

// NewAuthenticator returns an authenticator over store's tokens.
func NewAuthenticator(store *Store, log *slog.Logger, opts AuthenticatorOptions) *Authenticator {
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	return &Authenticator{
		store: store, log: log, ttl: opts.TTL, max: opts.MaxEntries,
		now: time.Now, entries: make(map[string]cached),
	}
}

// Authenticate returns the principal of secret, an error wrapping
// ErrInvalidToken when it is unknown, expired or revoked, or the database's
// error when it cannot tell.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (*Principal, error) {
	if !plausible(secret) {
		return nil, errors.Join(ErrInvalidToken, errors.New("not a Tasker token"))
	}
	key := hashSecret(secret)
	now := a.now()
	a.mu.Lock()
	c, ok := a.entries[key]
	a.mu.Unlock()
	if !ok || now.Sub(c.fetched) >= a.ttl {
		tok, err := a.store.lookup(ctx, secret)
		if errors.Is(err, ErrNotFound) {
			// Unknown secrets are not cached: the cache would be the
			// first thing a flood of made-up tokens filled.
			a.forget(key)
			return nil, errors.Join(ErrInvalidToken, errors.New("unknown token"))
		}
		if err != nil {
			return nil, err
		}
		c = cached{token: tok, principal: NewPrincipal(tok.Name, tok.Scopes, tok.Namespaces), fetched: now}
		a.remember(key, c)
		if tok.Usable(now) && now.Sub(tok.LastUsedAt) >= time.Minute {
			if err := a.store.touch(ctx, tok.Name, now.UTC().Truncate(time.Microsecond)); err != nil {
				a.log.WarnContext(ctx, "recording a token's last use failed", slog.String("token", tok.Name), slog.Any("error", err))
			}
		}
	}
	switch {
	case !c.token.RevokedAt.IsZero():
		return nil, errors.Join(ErrInvalidToken, errors.New("token revoked"))
	case !c.token.ExpiresAt.IsZero() && !now.Before(c.token.ExpiresAt):
		return nil, errors.Join(ErrInvalidToken, errors.New("token expired"))
	}
	return c.principal, nil
}

func (a *Authenticator) forget(key string) {
	a.mu.Lock()
	delete(a.entries, key)
	a.mu.Unlock()
}

// remember caches c. A full cache first drops stale entries, then, if
// still full, an arbitrary one: a dropped token only costs a lookup.
func (a *Authenticator) remember(key string, c cached) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.entries[key]; !ok && len(a.entries) >= a.max {
		for k, e := range a.entries {
			if c.fetched.Sub(e.fetched) >= a.ttl {
				delete(a.entries, k)
			}
		}
		for k := range a.entries {
			if len(a.entries) < a.max {
				break
			}
			delete(a.entries, k)
		}
	}
	a.entries[key] = c
}
