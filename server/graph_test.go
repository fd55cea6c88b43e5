package server_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o600))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}

func TestGetTaskGraphDiamond(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		created, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "shop", Name: "diamond", Context: orderContext(t, "1")})
		require.NoError(t, err)
		id := created.GetTask().GetId()

		claim, err := b.steps.ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "w", Handlers: []*taskerv1.HandlerRef{{Namespace: "shop", Handler: "work"}}, MaxSteps: 1,
		})
		require.NoError(t, err)
		require.Len(t, claim.GetSteps(), 1)
		result, err := structpb.NewStruct(map[string]any{"ok": true})
		require.NoError(t, err)
		_, err = b.steps.CompleteStep(ctx, &taskerv1.CompleteStepRequest{
			StepId: claim.GetSteps()[0].GetStepId(), LeaseToken: claim.GetSteps()[0].GetLeaseToken(), Result: result,
		})
		require.NoError(t, err)

		g, err := b.tasks.GetTaskGraph(ctx, &taskerv1.GetTaskGraphRequest{Id: id})
		require.NoError(t, err)
		require.Len(t, g.GetNodes(), 4)
		var edges []string
		for _, e := range g.GetEdges() {
			edges = append(edges, e.GetParent()+"->"+e.GetChild())
		}
		require.Equal(t, []string{"a->b", "a->c", "b->d", "c->d"}, edges)
		golden(t, "diamond.dot", strings.ReplaceAll(g.GetDot(), id, "TASK_ID"))
		golden(t, "diamond.mmd", g.GetMermaid())
	})
}
