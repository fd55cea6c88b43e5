package server

import (
	"context"
	"log/slog"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/taskerhq/tasker/auth"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// BenchmarkAuthorizeCompleteStep measures what authorization adds to a
// worker's report once the token and the step's namespace are cached:
// the hot path of every claimed step.
func BenchmarkAuthorizeCompleteStep(b *testing.B) {
	db := storagetest.Open(b, "sqlite")
	store := auth.NewStore(db)
	secret, _, err := store.Create(context.Background(), auth.CreateParams{
		Name: "worker", Scopes: []auth.Scope{auth.StepsWork}, Namespaces: []string{"shop"},
	})
	require.NoError(b, err)
	log := slog.New(slog.DiscardHandler)
	a := &authorizer{log: log, authn: auth.NewAuthenticator(store, log, auth.AuthenticatorOptions{}), namespaces: auth.NewNamespaces(db, 0)}
	stepID := uuid.NewString()
	a.namespaces.RememberStep(stepID, "shop")
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+secret))
	req := &taskerv1.CompleteStepRequest{StepId: stepID, LeaseToken: "x"}
	info := &grpc.UnaryServerInfo{FullMethod: stepSvc + "CompleteStep"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	_, err = a.unaryInterceptor(ctx, req, info, handler)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.unaryInterceptor(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}
