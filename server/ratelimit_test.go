package server_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskerhq/tasker/auth"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestRateLimitPerToken: a token gets its burst of calls, then
// ResourceExhausted RATE_LIMITED with a RetryInfo; another token has a
// bucket of its own, and a refused call costs nothing.
func TestRateLimitPerToken(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		log := slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		store := auth.NewStore(db)
		// One call every 100 s: the test never sees the bucket refill.
		srv := servertest.Start(t, db, servertest.Options{Logger: log, Config: server.Config{
			Authenticator: auth.NewAuthenticator(store, log, auth.AuthenticatorOptions{}),
			RateLimit:     server.RateLimit{Rate: 0.01, Burst: 3},
		}})
		f := &authFixture{addr: srv.Addr, store: store}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list := func(secret string) error {
			_, err := taskerv1.NewRegistryServiceClient(f.conn(t, secret)).ListNamespaces(ctx, &taskerv1.ListNamespacesRequest{})
			return err
		}
		a := f.token(t, "a", []auth.Scope{auth.Admin}, auth.AllNamespaces)
		for range 3 {
			require.NoError(t, list(a))
		}
		for range 2 {
			err := list(a)
			require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
			var retry *errdetails.RetryInfo
			var info *errdetails.ErrorInfo
			for _, d := range status.Convert(err).Details() {
				switch d := d.(type) {
				case *errdetails.RetryInfo:
					retry = d
				case *errdetails.ErrorInfo:
					info = d
				}
			}
			require.NotNil(t, retry)
			require.Greater(t, retry.GetRetryDelay().AsDuration(), 90*time.Second)
			require.Equal(t, "RATE_LIMITED", info.GetReason())
		}
		b := f.token(t, "b", []auth.Scope{auth.Admin}, auth.AllNamespaces)
		require.NoError(t, list(b), "each token has its own bucket")
	})
}
