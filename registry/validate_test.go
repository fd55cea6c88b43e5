package registry

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// validTemplate is a diamond a -> (b, c) -> d that passes every rule, for
// tests to break one rule at a time.
func validTemplate() *taskerv1.TaskTemplate {
	return &taskerv1.TaskTemplate{
		Namespace:   "shop.eu-west",
		Name:        "order_fulfillment",
		Version:     "1.2.0-rc.1",
		Description: "fulfil an order",
		ContextSchema: mustStruct(map[string]any{
			"type":     "object",
			"required": []any{"cart_id"},
			"properties": map[string]any{
				"cart_id": map[string]any{"type": "string"},
				"items":   map[string]any{"$ref": "#/$defs/items"},
			},
			"$defs": map[string]any{"items": map[string]any{"type": "array"}},
		}),
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:    proto.Int32(4),
			InitialBackoff: durationpb.New(2 * time.Second),
		},
		ExecutionTimeout: durationpb.New(time.Minute),
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "fetch", Config: mustStruct(map[string]any{"url": "https://example.com", "n": 3})},
			{Name: "b", Handler: "work", DependsOn: []string{"a"}, Description: "left"},
			{Name: "c", Handler: "work", DependsOn: []string{"a"}, RetryPolicy: &taskerv1.RetryPolicy{Jitter: proto.Float64(0)}},
			{Name: "d", Handler: "join", DependsOn: []string{"b", "c"}, LeaseDuration: durationpb.New(5 * time.Minute)},
		},
	}
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// requireViolations asserts err is an InvalidArgument listing exactly the
// given fields, in order, and returns the violations.
func requireViolations(t *testing.T, err error, fields ...string) []fault.Violation {
	t.Helper()
	fe, ok := fault.As(err)
	require.True(t, ok, "want a *fault.Error, got %v", err)
	require.Equal(t, fault.InvalidArgument, fe.Code)
	got := make([]string, len(fe.Violations))
	for i, v := range fe.Violations {
		got[i] = v.Field
	}
	require.Equal(t, fields, got, "violations: %v", fe.Violations)
	return fe.Violations
}

func TestValidateAcceptsValid(t *testing.T) {
	t.Parallel()
	require.NoError(t, Validate(validTemplate()))

	// Output-only fields are ignored, and the limits are inclusive.
	tpl := validTemplate()
	tpl.CreateTime, tpl.UpdateTime, tpl.ContentHash = timestamppb.Now(), timestamppb.Now(), "whatever"
	tpl.Namespace = "n" + strings.Repeat("x", 62)
	tpl.Description = strings.Repeat("x", 4096)
	tpl.IdentityStrategy = taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY
	tpl.RetryPolicy = &taskerv1.RetryPolicy{
		MaxAttempts:       proto.Int32(100),
		InitialBackoff:    durationpb.New(24 * time.Hour),
		BackoffMultiplier: proto.Float64(10),
		MaxBackoff:        durationpb.New(24 * time.Hour),
		Jitter:            proto.Float64(1),
	}
	tpl.LeaseDuration = durationpb.New(time.Hour)
	tpl.ExecutionTimeout = durationpb.New(24 * time.Hour)
	tpl.Steps[0].LeaseDuration = durationpb.New(time.Second)
	tpl.Steps[0].ExecutionTimeout = durationpb.New(0)
	tpl.Steps[0].RetryPolicy = &taskerv1.RetryPolicy{MaxAttempts: proto.Int32(1), BackoffMultiplier: proto.Float64(1)}
	require.NoError(t, Validate(tpl))
}

func TestValidateRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(t *taskerv1.TaskTemplate)
		field  string
		desc   string // a substring of the description
	}{
		{"nil template", nil, "template", "is required"},
		{"namespace missing", func(t *taskerv1.TaskTemplate) { t.Namespace = "" }, "template.namespace", "is required"},
		{"namespace uppercase", func(t *taskerv1.TaskTemplate) { t.Namespace = "Shop" }, "template.namespace", "must match"},
		{"namespace leading digit", func(t *taskerv1.TaskTemplate) { t.Namespace = "1shop" }, "template.namespace", "must match"},
		{"namespace too long", func(t *taskerv1.TaskTemplate) { t.Namespace = "n" + strings.Repeat("x", 63) }, "template.namespace", "must match"},
		{"name with slash", func(t *taskerv1.TaskTemplate) { t.Name = "a/b" }, "template.name", "must match"},
		{"version missing", func(t *taskerv1.TaskTemplate) { t.Version = "" }, "template.version", "is required"},
		{"version leading v", func(t *taskerv1.TaskTemplate) { t.Version = "v1.0.0" }, "template.version", "semantic version"},
		{"version short", func(t *taskerv1.TaskTemplate) { t.Version = "1.0" }, "template.version", "semantic version"},
		{"version leading zero", func(t *taskerv1.TaskTemplate) { t.Version = "01.0.0" }, "template.version", "semantic version"},
		{"version too long", func(t *taskerv1.TaskTemplate) { t.Version = "1.0.0-" + strings.Repeat("a", 123) }, "template.version", "at most 128"},
		{"description too long", func(t *taskerv1.TaskTemplate) { t.Description = strings.Repeat("x", 4097) }, "template.description", "at most 4096"},
		{"description not UTF-8", func(t *taskerv1.TaskTemplate) { t.Description = "\xff" }, "template.description", "UTF-8"},
		{"description NUL", func(t *taskerv1.TaskTemplate) { t.Description = "a\x00b" }, "template.description", "NUL"},
		{"identity unknown", func(t *taskerv1.TaskTemplate) { t.IdentityStrategy = 9 }, "template.identity_strategy", "unknown value 9"},
		{"schema invalid", func(t *taskerv1.TaskTemplate) {
			t.ContextSchema = mustStruct(map[string]any{"type": "nope"})
		}, "template.context_schema", "not a valid JSON Schema"},
		{"schema remote ref", func(t *taskerv1.TaskTemplate) {
			t.ContextSchema = mustStruct(map[string]any{"$ref": "https://example.com/schema.json"})
		}, "template.context_schema", "may not reference other documents"},
		{"schema file ref", func(t *taskerv1.TaskTemplate) {
			t.ContextSchema = mustStruct(map[string]any{"$ref": "file:///etc/passwd"})
		}, "template.context_schema", "may not reference other documents"},
		{"schema custom metaschema", func(t *taskerv1.TaskTemplate) {
			t.ContextSchema = mustStruct(map[string]any{"$schema": "https://example.com/meta"})
		}, "template.context_schema", "may not reference other documents"},
		{"schema too large", func(t *taskerv1.TaskTemplate) {
			t.ContextSchema = mustStruct(map[string]any{"description": strings.Repeat("x", 64<<10)})
		}, "template.context_schema", "at most 65536"},
		{"schema NUL", func(t *taskerv1.TaskTemplate) {
			t.ContextSchema = mustStruct(map[string]any{"description": "\x00"})
		}, "template.context_schema", "NUL"},
		{"max_attempts zero", func(t *taskerv1.TaskTemplate) { t.RetryPolicy.MaxAttempts = proto.Int32(0) }, "template.retry_policy.max_attempts", "between 1 and 100"},
		{"max_attempts too many", func(t *taskerv1.TaskTemplate) { t.RetryPolicy.MaxAttempts = proto.Int32(101) }, "template.retry_policy.max_attempts", "got 101"},
		{"initial_backoff negative", func(t *taskerv1.TaskTemplate) {
			t.RetryPolicy.InitialBackoff = durationpb.New(-time.Second)
		}, "template.retry_policy.initial_backoff", "between 0s and 24h0m0s"},
		{"initial_backoff malformed", func(t *taskerv1.TaskTemplate) {
			t.RetryPolicy.InitialBackoff = &durationpb.Duration{Seconds: 1, Nanos: -1}
		}, "template.retry_policy.initial_backoff", "not a valid duration"},
		{"initial_backoff sub-millisecond", func(t *taskerv1.TaskTemplate) {
			t.RetryPolicy.InitialBackoff = durationpb.New(1500 * time.Microsecond)
		}, "template.retry_policy.initial_backoff", "whole number of milliseconds"},
		{"multiplier below 1", func(t *taskerv1.TaskTemplate) { t.RetryPolicy.BackoffMultiplier = proto.Float64(0.5) }, "template.retry_policy.backoff_multiplier", "between 1 and 10"},
		{"multiplier NaN", func(t *taskerv1.TaskTemplate) { t.RetryPolicy.BackoffMultiplier = proto.Float64(math.NaN()) }, "template.retry_policy.backoff_multiplier", "got NaN"},
		{"max_backoff above 24h", func(t *taskerv1.TaskTemplate) {
			t.RetryPolicy.MaxBackoff = durationpb.New(25 * time.Hour)
		}, "template.retry_policy.max_backoff", "between 0s and 24h0m0s"},
		{"max_backoff below initial", func(t *taskerv1.TaskTemplate) {
			t.RetryPolicy.MaxBackoff = durationpb.New(time.Second)
		}, "template.retry_policy.max_backoff", "at least initial_backoff (2s), got 1s (set here)"},
		{"default max_backoff below initial", func(t *taskerv1.TaskTemplate) {
			t.RetryPolicy.InitialBackoff = durationpb.New(10 * time.Minute)
		}, "template.retry_policy.max_backoff", "got 5m0s (inherited)"},
		{"jitter above 1", func(t *taskerv1.TaskTemplate) { t.RetryPolicy.Jitter = proto.Float64(1.5) }, "template.retry_policy.jitter", "between 0 and 1"},
		{"jitter negative", func(t *taskerv1.TaskTemplate) { t.RetryPolicy.Jitter = proto.Float64(-0.1) }, "template.retry_policy.jitter", "between 0 and 1"},
		{"lease too short", func(t *taskerv1.TaskTemplate) { t.LeaseDuration = durationpb.New(999 * time.Millisecond) }, "template.lease_duration", "between 1s and 1h0m0s"},
		{"lease too long", func(t *taskerv1.TaskTemplate) { t.LeaseDuration = durationpb.New(time.Hour + time.Millisecond) }, "template.lease_duration", "between 1s and 1h0m0s"},
		{"timeout too long", func(t *taskerv1.TaskTemplate) { t.ExecutionTimeout = durationpb.New(25 * time.Hour) }, "template.execution_timeout", "between 0s and 24h0m0s"},
		{"no steps", func(t *taskerv1.TaskTemplate) { t.Steps = nil }, "template.steps", "at least one step"},
		{"nil step", func(t *taskerv1.TaskTemplate) { t.Steps[1] = nil }, "template.steps[1]", "is required"},
		{"step name missing", func(t *taskerv1.TaskTemplate) {
			t.Steps[3].Name = ""
			t.Steps = t.Steps[3:]
			t.Steps[0].DependsOn = nil
		}, "template.steps[0].name", "is required"},
		{"step name with dash", func(t *taskerv1.TaskTemplate) {
			t.Steps[3].Name = "d-1"
		}, "template.steps[3].name", "must match ^[a-z][a-z0-9_]{0,62}$"},
		{"step name duplicate", func(t *taskerv1.TaskTemplate) { t.Steps[3].Name, t.Steps[3].DependsOn = "b", []string{"c"} }, "template.steps[3].name", `"b" is already the name of steps[1]`},
		{"handler missing", func(t *taskerv1.TaskTemplate) { t.Steps[2].Handler = "" }, "template.steps[2].handler", "is required"},
		{"handler with dot", func(t *taskerv1.TaskTemplate) { t.Steps[2].Handler = "x.y" }, "template.steps[2].handler", "must match"},
		{"step description too long", func(t *taskerv1.TaskTemplate) { t.Steps[1].Description = strings.Repeat("x", 4097) }, "template.steps[1].description", "at most 4096"},
		{"depends on unknown", func(t *taskerv1.TaskTemplate) { t.Steps[3].DependsOn = []string{"b", "z"} }, "template.steps[3].depends_on[1]", `"z" is not a step`},
		{"depends on itself", func(t *taskerv1.TaskTemplate) { t.Steps[1].DependsOn = []string{"a", "b"} }, "template.steps[1].depends_on[1]", "itself"},
		{"depends twice", func(t *taskerv1.TaskTemplate) { t.Steps[3].DependsOn = []string{"b", "c", "b"} }, "template.steps[3].depends_on[2]", "already listed at depends_on[0]"},
		{"cycle", func(t *taskerv1.TaskTemplate) { t.Steps[0].DependsOn = []string{"d"} }, "template.steps[0].depends_on[0]", "cycle: a -> b -> d -> a"},
		{"config too large", func(t *taskerv1.TaskTemplate) {
			t.Steps[0].Config = mustStruct(map[string]any{"x": strings.Repeat("y", 64<<10)})
		}, "template.steps[0].config", "at most 65536"},
		{"config infinity", func(t *taskerv1.TaskTemplate) {
			t.Steps[0].Config = &structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.Inf(1))}}
		}, "template.steps[0].config", "holds the number +Inf"},
		{"config NUL in key", func(t *taskerv1.TaskTemplate) {
			t.Steps[0].Config = mustStruct(map[string]any{"a": []any{map[string]any{"\x00": 1}}})
		}, "template.steps[0].config", "NUL"},
		{"step max_attempts", func(t *taskerv1.TaskTemplate) {
			t.Steps[2].RetryPolicy.MaxAttempts = proto.Int32(-1)
		}, "template.steps[2].retry_policy.max_attempts", "between 1 and 100"},
		{"step multiplier", func(t *taskerv1.TaskTemplate) {
			t.Steps[2].RetryPolicy.BackoffMultiplier = proto.Float64(11)
		}, "template.steps[2].retry_policy.backoff_multiplier", "between 1 and 10"},
		{"step jitter", func(t *taskerv1.TaskTemplate) {
			t.Steps[2].RetryPolicy.Jitter = proto.Float64(2)
		}, "template.steps[2].retry_policy.jitter", "between 0 and 1"},
		{"step max_backoff below inherited initial", func(t *taskerv1.TaskTemplate) {
			t.Steps[2].RetryPolicy.MaxBackoff = durationpb.New(time.Second)
		}, "template.steps[2].retry_policy.max_backoff", "at least initial_backoff (2s), got 1s (set here)"},
		{"step initial above inherited max", func(t *taskerv1.TaskTemplate) {
			t.Steps[2].RetryPolicy.InitialBackoff = durationpb.New(time.Hour)
		}, "template.steps[2].retry_policy.max_backoff", "at least initial_backoff (1h0m0s), got 5m0s (inherited)"},
		{"step initial_backoff malformed", func(t *taskerv1.TaskTemplate) {
			t.Steps[2].RetryPolicy.InitialBackoff = &durationpb.Duration{Seconds: 1e12}
		}, "template.steps[2].retry_policy.initial_backoff", "not a valid duration"},
		{"step lease", func(t *taskerv1.TaskTemplate) { t.Steps[3].LeaseDuration = durationpb.New(0) }, "template.steps[3].lease_duration", "between 1s and 1h0m0s"},
		{"step timeout", func(t *taskerv1.TaskTemplate) { t.Steps[3].ExecutionTimeout = durationpb.New(-time.Millisecond) }, "template.steps[3].execution_timeout", "between 0s and 24h0m0s"},
		{"template too large", func(t *taskerv1.TaskTemplate) {
			for i := range 20 {
				s := t.Steps[i%4]
				if s.Config == nil {
					s.Config = mustStruct(nil)
				}
				s.Config.Fields["pad"+itoa(i)] = structpb.NewStringValue(strings.Repeat("x", 60<<10))
			}
		}, "template", "at most 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tpl *taskerv1.TaskTemplate
			if tc.mutate != nil {
				tpl = validTemplate()
				tc.mutate(tpl)
			}
			vs := requireViolations(t, Validate(tpl), tc.field)
			require.Contains(t, vs[0].Description, tc.desc)
		})
	}
}

func TestValidateTooManySteps(t *testing.T) {
	t.Parallel()
	tpl := validTemplate()
	tpl.Steps = nil
	for i := range 501 {
		tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{Name: "s" + itoa(i), Handler: "h"})
	}
	requireViolations(t, Validate(tpl), "template.steps")
	tpl.Steps = tpl.Steps[:500]
	require.NoError(t, Validate(tpl))
}

func TestValidateTooManyDependencies(t *testing.T) {
	t.Parallel()
	tpl := validTemplate()
	tpl.Steps = nil
	// Each step depends on every earlier one: 100 steps make 4,950 edges.
	for i := range 102 {
		s := &taskerv1.StepTemplate{Name: "s" + itoa(i), Handler: "h"}
		for j := range i {
			s.DependsOn = append(s.DependsOn, "s"+itoa(j))
		}
		tpl.Steps = append(tpl.Steps, s)
	}
	vs := requireViolations(t, Validate(tpl), "template.steps")
	require.Contains(t, vs[0].Description, "5151 dependencies")
	tpl.Steps = tpl.Steps[:100]
	require.NoError(t, Validate(tpl))
}

// itoa spells i with letters, making unique step names.
func itoa(i int) string {
	const digits = "abcdefghij"
	var b []byte
	for {
		b = append([]byte{digits[i%10]}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}

func TestValidateListsEveryViolation(t *testing.T) {
	t.Parallel()
	tpl := validTemplate()
	tpl.Namespace = "Bad"
	tpl.Version = "1"
	tpl.RetryPolicy.Jitter = proto.Float64(3)
	tpl.Steps[2].DependsOn = []string{"nope"}
	tpl.Steps[3].Handler = ""
	err := Validate(tpl)
	requireViolations(t, err,
		"template.namespace",
		"template.version",
		"template.retry_policy.jitter",
		"template.steps[2].depends_on[0]",
		"template.steps[3].handler",
	)
	require.Contains(t, err.Error(), `template.steps[2].depends_on[0]: "nope" is not a step of this template`)
}

func TestValidateBoundsViolations(t *testing.T) {
	t.Parallel()
	tpl := validTemplate()
	tpl.Steps = nil
	for i := range 300 {
		tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{Name: "s" + itoa(i), Handler: "Bad"})
	}
	fe, ok := fault.As(Validate(tpl))
	require.True(t, ok)
	require.Len(t, fe.Violations, maxViolations+1)
	require.Equal(t, fault.Violation{Field: "template", Description: "200 more violations not listed"}, fe.Violations[maxViolations])
}

func TestValidateCycles(t *testing.T) {
	t.Parallel()
	step := func(name string, deps ...string) *taskerv1.StepTemplate {
		return &taskerv1.StepTemplate{Name: name, Handler: "h", DependsOn: deps}
	}
	for _, tc := range []struct {
		name  string
		steps []*taskerv1.StepTemplate
		field string
		msg   string
	}{
		{
			"two steps",
			[]*taskerv1.StepTemplate{step("a", "b"), step("b", "a")},
			"template.steps[0].depends_on[0]", "cycle: a -> b -> a",
		},
		{
			// Execution order: a runs before b, b before c, c before a.
			"three steps declared out of order",
			[]*taskerv1.StepTemplate{step("a", "c"), step("c", "b"), step("b", "a")},
			"template.steps[0].depends_on[0]", "cycle: a -> b -> c -> a",
		},
		{
			"behind a root, found from the first step in declaration order",
			[]*taskerv1.StepTemplate{step("root"), step("x", "root", "z"), step("y", "x"), step("z", "y")},
			"template.steps[1].depends_on[1]", "cycle: x -> y -> z -> x",
		},
		{
			"two cycles: the first found is reported",
			[]*taskerv1.StepTemplate{step("p", "q"), step("q", "p"), step("r", "s"), step("s", "r")},
			"template.steps[0].depends_on[0]", "cycle: p -> q -> p",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl := validTemplate()
			tpl.Steps = tc.steps
			vs := requireViolations(t, Validate(tpl), tc.field)
			require.Equal(t, tc.msg, vs[0].Description)
		})
	}
}

func TestCompileSchemaValidates(t *testing.T) {
	t.Parallel()
	sch, err := CompileSchema(validTemplate().GetContextSchema().AsMap())
	require.NoError(t, err)
	require.NoError(t, sch.Validate(map[string]any{"cart_id": "c1", "items": []any{}}))
	require.Error(t, sch.Validate(map[string]any{"items": []any{}}))
	require.Error(t, sch.Validate(map[string]any{"cart_id": "c1", "items": "no"}))
}

// FuzzCheckNames: the name rules ClaimSteps applies accept exactly what a
// template may declare, and their messages never quote the name.
func FuzzCheckNames(f *testing.F) {
	for _, s := range []string{"", "work", "Not Valid!", "shop.eu-west", strings.Repeat("a", 64), "a\x00b", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, h := CheckNamespace(s), CheckHandler(s)
		require.Equal(t, namespaceRE.MatchString(s), ns == "")
		require.Equal(t, stepRE.MatchString(s), h == "")
		if h == "" {
			require.Empty(t, ns, "every handler name is a namespace name")
		}
		if len(s) > 3 {
			require.NotContains(t, ns, s)
			require.NotContains(t, h, s)
		}
	})
}
