package server_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/taskerhq/tasker/ent/event"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestDeduplication(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		strict := diamond("shop", "1.0.0")
		strict.Name = "strict"
		strict.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT
		keyed := diamond("shop", "1.0.0")
		keyed.Name = "keyed"
		keyed.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY
		for _, tpl := range []*taskerv1.TaskTemplate{strict, keyed} {
			_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
			require.NoError(t, err)
		}
		create := func(req *taskerv1.CreateTaskRequest) (*taskerv1.CreateTaskResponse, error) {
			return b.tasks.CreateTask(ctx, req)
		}

		t.Run("strict", func(t *testing.T) {
			req := &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "strict", Context: orderContext(t, "s1")}
			// Concurrent identical requests: exactly one task.
			ids := make(chan string, 8)
			var dups sync.WaitGroup
			for range 8 {
				dups.Go(func() {
					resp, err := create(req)
					require.NoError(t, err)
					ids <- resp.GetTask().GetId()
				})
			}
			dups.Wait()
			close(ids)
			distinct := map[string]bool{}
			for id := range ids {
				distinct[id] = true
			}
			require.Len(t, distinct, 1, "concurrent identical CreateTask calls yield one task")
			var first string
			for id := range distinct {
				first = id
			}
			again, err := create(req)
			require.NoError(t, err)
			require.True(t, again.GetDuplicate())
			require.Equal(t, first, again.GetTask().GetId())

			other, err := create(&taskerv1.CreateTaskRequest{Namespace: "shop", Name: "strict", Context: orderContext(t, "s2")})
			require.NoError(t, err)
			require.False(t, other.GetDuplicate())

			// Once finished, the same context may run again.
			_, err = b.tasks.CancelTask(ctx, &taskerv1.CancelTaskRequest{Id: first})
			require.NoError(t, err)
			fresh, err := create(req)
			require.NoError(t, err)
			require.False(t, fresh.GetDuplicate())
			require.NotEqual(t, first, fresh.GetTask().GetId())
		})

		t.Run("caller key", func(t *testing.T) {
			_, err := create(&taskerv1.CreateTaskRequest{Namespace: "shop", Name: "keyed", Context: orderContext(t, "k1")})
			require.Equal(t, []string{"idempotency_key"}, badFields(requireCode(t, err, codes.InvalidArgument)))

			req := &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "keyed", Context: orderContext(t, "k1"), IdempotencyKey: "order-1"}
			first, err := create(req)
			require.NoError(t, err)
			require.False(t, first.GetDuplicate())
			require.Equal(t, "order-1", first.GetTask().GetIdempotencyKey())
			again, err := create(req)
			require.NoError(t, err)
			require.True(t, again.GetDuplicate())
			require.Equal(t, first.GetTask().GetId(), again.GetTask().GetId())

			_, err = create(&taskerv1.CreateTaskRequest{Namespace: "shop", Name: "keyed", Context: orderContext(t, "k2"), IdempotencyKey: "order-1"})
			requireCode(t, err, codes.AlreadyExists)

			n, err := db.Reader.Event.Query().Where(event.Type("workflow.duplicate_detected")).Count(ctx)
			require.NoError(t, err)
			require.Positive(t, n, "a duplicate answer is recorded in the log")
		})
	})
}
