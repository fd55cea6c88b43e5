package registry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func TestContentHashStable(t *testing.T) {
	t.Parallel()
	h := ContentHash(validTemplate())
	require.Len(t, h, 64)

	// Pinned: a change here changes the hash of every stored template, and
	// re-registering any of them unchanged would become AlreadyExists.
	require.Equal(t, "fcb63d188f487856ed7a3f76454ee30e798f8dfaf142f62adc8b65c226db4869", h)

	for i := 0; i < 20; i++ {
		require.Equal(t, h, ContentHash(validTemplate()), "map iteration order must not matter")
	}

	same := validTemplate()
	same.CreateTime, same.UpdateTime, same.ContentHash = timestamppb.Now(), timestamppb.Now(), "x"
	require.Equal(t, h, ContentHash(same), "output-only fields are excluded")
	require.Equal(t, h, ContentHash(Normalize(validTemplate())), "hash of the stored form")

	// Defaults written out, or a step's empty config and policy, are the
	// same content as leaving them unset.
	explicit := validTemplate()
	explicit.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_ALWAYS_UNIQUE
	explicit.RetryPolicy.Jitter = proto.Float64(0.2)
	explicit.LeaseDuration = durationpb.New(30 * time.Second)
	explicit.Steps[1].Config = &structpb.Struct{}
	require.Equal(t, h, ContentHash(explicit))

	// The same document built in another order.
	reordered := validTemplate()
	reordered.Steps[0].Config = &structpb.Struct{Fields: map[string]*structpb.Value{}}
	reordered.Steps[0].Config.Fields["n"] = structpb.NewNumberValue(3)
	reordered.Steps[0].Config.Fields["url"] = structpb.NewStringValue("https://example.com")
	require.Equal(t, h, ContentHash(reordered))
}

func TestContentHashChangesWithContent(t *testing.T) {
	t.Parallel()
	base := ContentHash(validTemplate())
	for name, mutate := range map[string]func(*taskerv1.TaskTemplate){
		"namespace":   func(t *taskerv1.TaskTemplate) { t.Namespace = "other" },
		"name":        func(t *taskerv1.TaskTemplate) { t.Name = "other" },
		"version":     func(t *taskerv1.TaskTemplate) { t.Version = "1.2.0" },
		"description": func(t *taskerv1.TaskTemplate) { t.Description += "!" },
		"identity": func(t *taskerv1.TaskTemplate) {
			t.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT
		},
		"schema removed":      func(t *taskerv1.TaskTemplate) { t.ContextSchema = nil },
		"schema emptied":      func(t *taskerv1.TaskTemplate) { t.ContextSchema = &structpb.Struct{} },
		"schema value":        func(t *taskerv1.TaskTemplate) { t.ContextSchema.Fields["type"] = structpb.NewStringValue("array") },
		"max_attempts":        func(t *taskerv1.TaskTemplate) { t.RetryPolicy.MaxAttempts = proto.Int32(5) },
		"initial_backoff":     func(t *taskerv1.TaskTemplate) { t.RetryPolicy.InitialBackoff = durationpb.New(3 * time.Second) },
		"multiplier":          func(t *taskerv1.TaskTemplate) { t.RetryPolicy.BackoffMultiplier = proto.Float64(2.5) },
		"max_backoff":         func(t *taskerv1.TaskTemplate) { t.RetryPolicy.MaxBackoff = durationpb.New(time.Minute) },
		"jitter":              func(t *taskerv1.TaskTemplate) { t.RetryPolicy.Jitter = proto.Float64(0.3) },
		"lease":               func(t *taskerv1.TaskTemplate) { t.LeaseDuration = durationpb.New(31 * time.Second) },
		"timeout":             func(t *taskerv1.TaskTemplate) { t.ExecutionTimeout = durationpb.New(2 * time.Minute) },
		"timeout removed":     func(t *taskerv1.TaskTemplate) { t.ExecutionTimeout = nil },
		"step order":          func(t *taskerv1.TaskTemplate) { t.Steps[1], t.Steps[2] = t.Steps[2], t.Steps[1] },
		"step name":           func(t *taskerv1.TaskTemplate) { t.Steps[3].Name = "e" },
		"handler":             func(t *taskerv1.TaskTemplate) { t.Steps[0].Handler = "other" },
		"depends_on":          func(t *taskerv1.TaskTemplate) { t.Steps[3].DependsOn = []string{"b"} },
		"config value":        func(t *taskerv1.TaskTemplate) { t.Steps[0].Config.Fields["n"] = structpb.NewNumberValue(4) },
		"config type":         func(t *taskerv1.TaskTemplate) { t.Steps[0].Config.Fields["n"] = structpb.NewStringValue("3") },
		"config removed":      func(t *taskerv1.TaskTemplate) { t.Steps[0].Config = nil },
		"step policy":         func(t *taskerv1.TaskTemplate) { t.Steps[2].RetryPolicy.Jitter = proto.Float64(0.1) },
		"step policy removed": func(t *taskerv1.TaskTemplate) { t.Steps[2].RetryPolicy = nil },
		"step policy field": func(t *taskerv1.TaskTemplate) {
			t.Steps[1].RetryPolicy = &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(4)}
		},
		"step lease":        func(t *taskerv1.TaskTemplate) { t.Steps[3].LeaseDuration = durationpb.New(6 * time.Minute) },
		"step timeout zero": func(t *taskerv1.TaskTemplate) { t.Steps[3].ExecutionTimeout = durationpb.New(0) },
		"step description":  func(t *taskerv1.TaskTemplate) { t.Steps[1].Description = "right" },
	} {
		tpl := validTemplate()
		mutate(tpl)
		require.NoError(t, Validate(tpl), name)
		require.NotEqual(t, base, ContentHash(tpl), name)
	}
}
