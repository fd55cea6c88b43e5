package server_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

func TestListHandlers(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		_, err = b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "w1", MaxSteps: 1,
			Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}, {Namespace: "shop", Handler: "unused"}},
		})
		require.NoError(t, err)

		resp, err := b.registry.ListHandlers(ctx, &taskerv1.ListHandlersRequest{Namespace: "shop"})
		require.NoError(t, err)
		got := map[string]*taskerv1.HandlerInfo{}
		for _, h := range resp.GetHandlers() {
			got[h.GetHandler().GetHandler()] = h
		}
		require.Len(t, got, 3)
		require.True(t, got["work"].GetUsedByTemplates())
		require.Len(t, got["work"].GetWorkers(), 1)
		require.Equal(t, "w1", got["work"].GetWorkers()[0].GetWorkerId())
		require.NotNil(t, got["work"].GetLastSeenTime())
		require.True(t, got["other"].GetUsedByTemplates())
		require.Empty(t, got["other"].GetWorkers(), "nothing serves other: an operator sees the gap")
		require.Nil(t, got["other"].GetLastSeenTime())
		require.False(t, got["unused"].GetUsedByTemplates())

		other, err := b.registry.ListHandlers(ctx, &taskerv1.ListHandlersRequest{Namespace: "billing"})
		require.NoError(t, err)
		require.Empty(t, other.GetHandlers())
		_, err = b.registry.ListHandlers(ctx, &taskerv1.ListHandlersRequest{ActiveWithin: durationpb.New(time.Millisecond)})
		requireCode(t, err, codes.InvalidArgument)
	})
}
