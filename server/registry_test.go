package server_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

// diamond is a → (b, c) → d, with a context schema requiring order_id.
func diamond(namespace, version string) *taskerv1.TaskTemplate {
	schema, _ := structpb.NewStruct(map[string]any{
		"type":       "object",
		"required":   []any{"order_id"},
		"properties": map[string]any{"order_id": map[string]any{"type": "string"}},
	})
	config, _ := structpb.NewStruct(map[string]any{"url": "https://example.invalid/a"})
	return &taskerv1.TaskTemplate{
		Namespace:     namespace,
		Name:          "diamond",
		Version:       version,
		Description:   "a fans out to b and c, which join in d",
		ContextSchema: schema,
		RetryPolicy:   &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(4), InitialBackoff: durationpb.New(0)},
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "work", Config: config},
			{Name: "b", Handler: "work", DependsOn: []string{"a"}},
			{Name: "c", Handler: "other", DependsOn: []string{"a"}, RetryPolicy: &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(1)}},
			{Name: "d", Handler: "work", DependsOn: []string{"c", "b"}},
		},
	}
}

func TestRegisterTaskTemplate(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)

		resp, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_CREATED, resp.GetOutcome())
		require.NotEmpty(t, resp.GetTemplate().GetContentHash())
		require.Equal(t, int32(4), resp.GetTemplate().GetRetryPolicy().GetMaxAttempts())
		require.NotNil(t, resp.GetTemplate().GetLeaseDuration(), "defaults are filled")

		again, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", "1.0.0")})
		require.NoError(t, err)
		require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_UNCHANGED, again.GetOutcome())
		require.Equal(t, resp.GetTemplate().GetContentHash(), again.GetTemplate().GetContentHash())

		changed := diamond("shop", "1.0.0")
		changed.Description = "changed"
		_, err = b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: changed})
		requireCode(t, err, codes.AlreadyExists)
		got, err := b.registry.GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{Namespace: "shop", Name: "diamond", Version: "1.0.0"})
		require.NoError(t, err)
		require.Equal(t, "a fans out to b and c, which join in d", got.GetTemplate().GetDescription(), "a refused registration changes nothing")

		replaced, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: changed, Replace: true})
		require.NoError(t, err)
		require.Equal(t, taskerv1.RegistrationOutcome_REGISTRATION_OUTCOME_REPLACED, replaced.GetOutcome())
		require.Equal(t, "changed", replaced.GetTemplate().GetDescription())
	})
}

func TestRegisterTaskTemplateRefusesBadInput(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		for _, tc := range []struct {
			name  string
			edit  func(*taskerv1.TaskTemplate)
			field string
		}{
			{"bad namespace", func(tpl *taskerv1.TaskTemplate) { tpl.Namespace = "Shop!" }, "template.namespace"},
			{"bad version", func(tpl *taskerv1.TaskTemplate) { tpl.Version = "v1" }, "template.version"},
			{"unknown dependency", func(tpl *taskerv1.TaskTemplate) { tpl.Steps[1].DependsOn = []string{"zzz"} }, "template.steps[1].depends_on[0]"},
			{"duplicate step", func(tpl *taskerv1.TaskTemplate) { tpl.Steps[2].Name = "b" }, "template.steps[2].name"},
			{"cycle", func(tpl *taskerv1.TaskTemplate) { tpl.Steps[0].DependsOn = []string{"d"} }, ""},
			{"jitter", func(tpl *taskerv1.TaskTemplate) { tpl.RetryPolicy.Jitter = proto.Float64(2) }, "template.retry_policy.jitter"},
			{"no steps", func(tpl *taskerv1.TaskTemplate) { tpl.Steps = nil }, "template.steps"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tpl := diamond("bad", "1.0.0")
				tc.edit(tpl)
				_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
				st := requireCode(t, err, codes.InvalidArgument)
				fields := badFields(st)
				require.NotEmpty(t, fields)
				if tc.field != "" {
					require.Contains(t, fields, tc.field)
				} else {
					require.Contains(t, st.Message(), "cycle")
				}
			})
		}
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{})
		require.Equal(t, []string{"template"}, badFields(requireCode(t, err, codes.InvalidArgument)))

		list, err := b.registry.ListTaskTemplates(ctx, &taskerv1.ListTaskTemplatesRequest{})
		require.NoError(t, err)
		require.Empty(t, list.GetTemplates(), "nothing is stored for refused templates")
		nss, err := b.registry.ListNamespaces(ctx, &taskerv1.ListNamespacesRequest{})
		require.NoError(t, err)
		require.Empty(t, nss.GetNamespaces())
	})
}

func TestGetAndListTaskTemplates(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		b := setup(t, db)
		ctx := testContext(t)
		for _, v := range []string{"1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1"} {
			_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("shop", v)})
			require.NoError(t, err)
		}
		_, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond("billing", "0.1.0-alpha")})
		require.NoError(t, err)

		latest, err := b.registry.GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{Namespace: "shop", Name: "diamond"})
		require.NoError(t, err)
		require.Equal(t, "1.10.0", latest.GetTemplate().GetVersion(), "latest is the highest release, not a pre-release")
		pre, err := b.registry.GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{Namespace: "billing", Name: "diamond"})
		require.NoError(t, err)
		require.Equal(t, "0.1.0-alpha", pre.GetTemplate().GetVersion(), "a pre-release is latest when there is nothing else")

		_, err = b.registry.GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{Namespace: "shop", Name: "diamond", Version: "3.0.0"})
		requireCode(t, err, codes.NotFound)
		_, err = b.registry.GetTaskTemplate(ctx, &taskerv1.GetTaskTemplateRequest{Namespace: "shop", Name: "nope"})
		requireCode(t, err, codes.NotFound)

		var seen []string
		token := ""
		for {
			resp, err := b.registry.ListTaskTemplates(ctx, &taskerv1.ListTaskTemplatesRequest{Namespace: "shop", PageSize: 3, PageToken: token})
			require.NoError(t, err)
			for _, tpl := range resp.GetTemplates() {
				seen = append(seen, tpl.GetVersion())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
			_, err = b.registry.ListTaskTemplates(ctx, &taskerv1.ListTaskTemplatesRequest{Namespace: "billing", PageSize: 3, PageToken: token})
			require.Equal(t, []string{"page_token"}, badFields(requireCode(t, err, codes.InvalidArgument)))
		}
		require.ElementsMatch(t, []string{"1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1"}, seen)

		nss, err := b.registry.ListNamespaces(ctx, &taskerv1.ListNamespacesRequest{})
		require.NoError(t, err)
		require.Len(t, nss.GetNamespaces(), 2)
		require.Equal(t, "billing", nss.GetNamespaces()[0].GetName())
		require.Equal(t, int32(4), nss.GetNamespaces()[1].GetTemplateCount())
	})
}
