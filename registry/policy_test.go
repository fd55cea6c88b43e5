package registry

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

func TestNormalizeFillsTemplateDefaultsOnly(t *testing.T) {
	t.Parallel()
	in := &taskerv1.TaskTemplate{
		Namespace:        "demo",
		Name:             "n",
		Version:          "1.0.0",
		ExecutionTimeout: durationpb.New(0),
		RetryPolicy:      &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(7)},
		CreateTime:       timestamppb.Now(),
		ContentHash:      "stale",
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "h", Config: &structpb.Struct{}, RetryPolicy: &taskerv1.RetryPolicy{}, DependsOn: []string{}},
			{Name: "b", Handler: "h", DependsOn: []string{"a"}, RetryPolicy: &taskerv1.RetryPolicy{Jitter: proto.Float64(0)},
				ExecutionTimeout: durationpb.New(0)},
		},
	}
	before := proto.Clone(in)
	got := Normalize(in)
	require.True(t, proto.Equal(before, in), "Normalize must not modify its argument")
	want := &taskerv1.TaskTemplate{
		Namespace:        "demo",
		Name:             "n",
		Version:          "1.0.0",
		IdentityStrategy: taskerv1.IdentityStrategy_IDENTITY_STRATEGY_ALWAYS_UNIQUE,
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:       proto.Int32(7),
			InitialBackoff:    durationpb.New(time.Second),
			BackoffMultiplier: proto.Float64(2),
			MaxBackoff:        durationpb.New(5 * time.Minute),
			Jitter:            proto.Float64(0.2),
		},
		LeaseDuration: durationpb.New(30 * time.Second),
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "h"},
			// A step's explicit 0 timeout overrides the template's: kept.
			{Name: "b", Handler: "h", DependsOn: []string{"a"}, RetryPolicy: &taskerv1.RetryPolicy{Jitter: proto.Float64(0)},
				ExecutionTimeout: durationpb.New(0)},
		},
	}
	require.Empty(t, cmpDiff(want, got))
	require.True(t, proto.Equal(got, Normalize(got)), "Normalize is idempotent")
}

func TestEffectivePolicy(t *testing.T) {
	t.Parallel()
	tpl := validTemplate()
	// Template: max_attempts 4, initial 2s, timeout 1m; the rest defaults.
	base := Policy{
		MaxAttempts:       4,
		InitialBackoff:    2 * time.Second,
		BackoffMultiplier: 2,
		MaxBackoff:        5 * time.Minute,
		Jitter:            0.2,
		LeaseDuration:     30 * time.Second,
		ExecutionTimeout:  time.Minute,
	}
	require.Equal(t, base, EffectivePolicy(tpl, tpl.Steps[0]))
	require.Equal(t, base, EffectivePolicy(Normalize(tpl), tpl.Steps[0]), "the same on the stored form")

	c := base
	c.Jitter = 0 // an explicit zero overrides
	require.Equal(t, c, EffectivePolicy(tpl, tpl.Steps[2]))

	d := base
	d.LeaseDuration = 5 * time.Minute
	require.Equal(t, d, EffectivePolicy(tpl, tpl.Steps[3]))

	step := &taskerv1.StepTemplate{
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:       proto.Int32(1),
			InitialBackoff:    durationpb.New(time.Millisecond),
			BackoffMultiplier: proto.Float64(1.5),
			MaxBackoff:        durationpb.New(time.Hour),
			Jitter:            proto.Float64(1),
		},
		LeaseDuration:    durationpb.New(time.Hour),
		ExecutionTimeout: durationpb.New(0),
	}
	require.Equal(t, Policy{
		MaxAttempts:       1,
		InitialBackoff:    time.Millisecond,
		BackoffMultiplier: 1.5,
		MaxBackoff:        time.Hour,
		Jitter:            1,
		LeaseDuration:     time.Hour,
	}, EffectivePolicy(tpl, step))

	require.Equal(t, defaultPolicy, EffectivePolicy(&taskerv1.TaskTemplate{}, &taskerv1.StepTemplate{}))
}

// cmpDiff is a readable diff of two messages, empty when they are equal.
func cmpDiff(want, got proto.Message) string {
	return cmp.Diff(want, got, protocmp.Transform())
}
