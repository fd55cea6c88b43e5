package auth_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		store := auth.NewStore(db)
		secret, tok, err := store.Create(ctx, auth.CreateParams{
			Name: "ci", Scopes: []auth.Scope{auth.TasksWrite, auth.EventsRead}, Namespaces: []string{"shop", "billing"}, ExpiresIn: time.Hour,
		})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(secret, "tasker_"))
		require.Len(t, secret, len("tasker_")+43, "256 bits, base64url")
		require.False(t, tok.ExpiresAt.IsZero())

		other, _, err := store.Create(ctx, auth.CreateParams{Name: "worker", Scopes: []auth.Scope{auth.StepsWork}, Namespaces: []string{"*"}})
		require.NoError(t, err)
		require.NotEqual(t, secret, other)

		_, _, err = store.Create(ctx, auth.CreateParams{Name: "ci", Scopes: []auth.Scope{auth.Admin}, Namespaces: []string{"*"}})
		require.ErrorContains(t, err, "already exists")
		for name, p := range map[string]auth.CreateParams{
			"name":       {Name: "bad name", Scopes: []auth.Scope{auth.Admin}, Namespaces: []string{"*"}},
			"scopes":     {Name: "a", Namespaces: []string{"*"}},
			"unknown":    {Name: "a", Scopes: []auth.Scope{"tasks:delete"}, Namespaces: []string{"*"}},
			"namespaces": {Name: "a", Scopes: []auth.Scope{auth.Admin}},
			"Bad NS":     {Name: "a", Scopes: []auth.Scope{auth.Admin}, Namespaces: []string{"Shop!"}},
			"expires":    {Name: "a", Scopes: []auth.Scope{auth.Admin}, Namespaces: []string{"*"}, ExpiresIn: -time.Second},
		} {
			_, _, err := store.Create(ctx, p)
			require.Error(t, err, name)
		}

		toks, err := store.List(ctx)
		require.NoError(t, err)
		require.Len(t, toks, 2)
		require.Equal(t, "ci", toks[0].Name)
		require.Equal(t, []string{"shop", "billing"}, toks[0].Namespaces)
		require.Equal(t, []auth.Scope{auth.TasksWrite, auth.EventsRead}, toks[0].Scopes)

		revoked, err := store.Revoke(ctx, "ci")
		require.NoError(t, err)
		require.False(t, revoked.RevokedAt.IsZero())
		again, err := store.Revoke(ctx, "ci")
		require.NoError(t, err)
		require.Equal(t, revoked.RevokedAt, again.RevokedAt, "revoking twice keeps the first time")
		_, err = store.Revoke(ctx, "nobody")
		require.ErrorIs(t, err, auth.ErrNotFound)
	})
}

func TestAuthenticator(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		store := auth.NewStore(db)
		var now atomic.Int64
		now.Store(time.Now().UnixNano())
		clock := func() time.Time { return time.Unix(0, now.Load()) }
		authn := auth.NewAuthenticator(store, slog.New(slog.DiscardHandler), auth.AuthenticatorOptions{TTL: 5 * time.Second, MaxEntries: 3})
		authn.SetClock(clock)

		secret, _, err := store.Create(ctx, auth.CreateParams{Name: "shop", Scopes: []auth.Scope{auth.TasksRead}, Namespaces: []string{"shop"}, ExpiresIn: time.Hour})
		require.NoError(t, err)
		p, err := authn.Authenticate(ctx, secret)
		require.NoError(t, err)
		require.Equal(t, "shop", p.Name)
		require.True(t, p.Has(auth.TasksRead))
		require.False(t, p.Has(auth.TasksWrite))
		require.True(t, p.Allows("shop"))
		require.False(t, p.Allows("billing"))
		require.False(t, p.AllNamespaces())

		toks, err := store.List(ctx)
		require.NoError(t, err)
		require.False(t, toks[0].LastUsedAt.IsZero(), "the first use is recorded")

		for _, bad := range []string{"", "tasker_", "Bearer x", secret + "x", "tasker_" + strings.Repeat("A", 43)} {
			_, err := authn.Authenticate(ctx, bad)
			require.ErrorIs(t, err, auth.ErrInvalidToken, bad)
		}

		// A revocation is seen once the cached lookup is older than the TTL.
		_, err = store.Revoke(ctx, "shop")
		require.NoError(t, err)
		_, err = authn.Authenticate(ctx, secret)
		require.NoError(t, err, "still cached")
		now.Add(int64(5 * time.Second))
		_, err = authn.Authenticate(ctx, secret)
		require.ErrorIs(t, err, auth.ErrInvalidToken)
		require.ErrorContains(t, err, "revoked")

		// Expiry is exact, cache or not.
		expiring, _, err := store.Create(ctx, auth.CreateParams{Name: "brief", Scopes: []auth.Scope{auth.Admin}, Namespaces: []string{"*"}, ExpiresIn: time.Minute})
		require.NoError(t, err)
		p, err = authn.Authenticate(ctx, expiring)
		require.NoError(t, err)
		require.True(t, p.Has(auth.StepsWork), "admin holds every scope")
		require.True(t, p.Allows("anything"))
		now.Add(int64(2 * time.Minute))
		_, err = authn.Authenticate(ctx, expiring)
		require.ErrorContains(t, err, "expired")

		// The cache is bounded.
		for i := range 10 {
			s, _, err := store.Create(ctx, auth.CreateParams{Name: fmt.Sprintf("t%d", i), Scopes: []auth.Scope{auth.EventsRead}, Namespaces: []string{"*"}})
			require.NoError(t, err)
			_, err = authn.Authenticate(ctx, s)
			require.NoError(t, err)
			require.LessOrEqual(t, authn.Cached(), 3)
		}
	})
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	got, err := auth.ParseScopes(" tasks:read, steps:work,tasks:read ")
	require.NoError(t, err)
	require.Equal(t, []auth.Scope{auth.TasksRead, auth.StepsWork}, got)
	_, err = auth.ParseScopes("")
	require.Error(t, err)
	_, err = auth.ParseScopes("tasks:read,root")
	require.ErrorContains(t, err, `"root"`)
}
