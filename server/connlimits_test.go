package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// TestStreamsPerConnection: one connection holds at most
// MaxStreamsPerConnection calls at once; one more waits (here until its
// deadline) and goes through once another ends.
func TestStreamsPerConnection(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := serve(t, db, servertest.Options{Config: server.Config{MaxStreamsPerConnection: 2}})
		ctx := testContext(t)
		// open opens a stream and waits for its started message.
		open := func(ctx context.Context) error {
			stream, err := b.events.Subscribe(ctx, &taskerv1.SubscribeRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}
		firstCtx, closeFirst := context.WithCancel(ctx)
		require.NoError(t, open(firstCtx))
		require.NoError(t, open(ctx))

		thirdCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		err := open(thirdCtx)
		require.Equal(t, codes.DeadlineExceeded, status.Code(err), "a third stream waits for a free one: %v", err)

		closeFirst()
		require.NoError(t, open(ctx), "once a stream ends, the next one opens")
	})
}
