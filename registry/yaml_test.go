package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

const diamondYAML = `
namespace: demo
name: diamond
version: 1.0.0
identity_strategy: IDENTITY_STRATEGY_STRICT
retry_policy:
  max_attempts: 4
  initialBackoff: 1.5s  # JSON names work too
lease_duration: 30s
steps:
  - name: a
    handler: h
    config: {url: "https://example.com", "n": 3}
  - name: b
    handler: h
    depends_on: [a]
    execution_timeout: 0s
`

func TestParseYAML(t *testing.T) {
	t.Parallel()
	got, err := ParseYAML([]byte(diamondYAML))
	require.NoError(t, err)
	want := &taskerv1.TaskTemplate{
		Namespace:        "demo",
		Name:             "diamond",
		Version:          "1.0.0",
		IdentityStrategy: taskerv1.IdentityStrategy_IDENTITY_STRATEGY_STRICT,
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:    proto.Int32(4),
			InitialBackoff: durationpb.New(1500 * time.Millisecond),
		},
		LeaseDuration: durationpb.New(30 * time.Second),
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "h", Config: mustStruct(map[string]any{"url": "https://example.com", "n": 3})},
			{Name: "b", Handler: "h", DependsOn: []string{"a"}, ExecutionTimeout: durationpb.New(0)},
		},
	}
	require.Empty(t, cmpDiff(want, got))
	require.NoError(t, Validate(got))
}

func TestParseYAMLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		yaml  string
		field string
		desc  string
	}{
		{"empty", "", "template", "empty"},
		{"comment only", "# nothing\n", "template", "empty"},
		{"not YAML", "a: [", "template", "invalid YAML"},
		{"duplicate key", "name: a\nname: b\n", "template", `key "name" already set`},
		{"duplicate nested key", "steps:\n- name: a\n  name: b\n", "template", `key "name" already set`},
		{"list at top", "- a\n", "template", "unexpected token ["},
		{"unknown field", "naem: x\n", "template.naem", `unknown field "naem"`},
		{"unknown step field", "steps:\n- name: a\n- name: b\n  hadler: h\n", "template.steps[1].hadler", `unknown field "hadler"`},
		{"wrong type", "name: 3\n", "template.name", "invalid value for string field name: 3"},
		{"bad number", "retry_policy:\n  max_attempts: many\n", "template.retry_policy.max_attempts", "invalid value for int32 field"},
		{"Go duration", "steps:\n- name: a\n  lease_duration: 5m\n", "template.steps[0].lease_duration", `invalid google.protobuf.Duration value "5m"`},
		{"list for object", "steps:\n- name: a\n  config: [1]\n", "template.steps[0].config", "unexpected token ["},
		{"object for list", "steps:\n- name: a\n  depends_on: {x: 1}\n", "template.steps[0].depends_on", "unexpected token {"},
		{"unknown enum", "identity_strategy: SOMETIMES\n", "template.identity_strategy", "invalid value for enum field"},
		{"non-ASCII before the error", "description: \"héllo wörld\"\nnaem: x\n", "template.naem", `unknown field "naem"`},
		{"too large", "description: " + strings.Repeat("x", 1<<20) + "\n", "template", "exceeds 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := ParseYAML([]byte(tc.yaml))
			require.Nil(t, tpl)
			vs := requireViolations(t, err, tc.field)
			require.Contains(t, vs[0].Description, tc.desc)
			require.NotContains(t, vs[0].Description, "(line ", "JSON positions mean nothing to a YAML author")
		})
	}
}

func FuzzParseYAML(f *testing.F) {
	f.Add([]byte(diamondYAML))
	f.Add([]byte("steps:\n- name: a\n  config: {a: [1, {b: null}]}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("retry_policy: {jitter: NaN}\n"))
	f.Add([]byte("- [\n"))
	if b, err := os.ReadFile("../examples/templates/ecommerce_order.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tpl, err := ParseYAML(data)
		if err != nil {
			require.Nil(t, tpl)
			require.Equal(t, fault.InvalidArgument, fault.CodeOf(err), "%v", err)
			return
		}
		// Whatever parses can be validated, and what validates can be
		// hashed, without panicking.
		if Validate(tpl) == nil {
			ContentHash(tpl)
		}
	})
}

func TestLoadDirExamples(t *testing.T) {
	t.Parallel()
	loaded, err := LoadDir("../examples/templates")
	require.NoError(t, err)
	require.Len(t, loaded, 3)
	require.Equal(t, filepath.Join("../examples/templates", "diamond.yaml"), loaded[0].Path)
	require.Equal(t, "demo/diamond@1.0.0", ref(loaded[0].Template))
	require.Equal(t, "ecommerce/order_fulfillment@1.0.0", ref(loaded[1].Template))
	require.Equal(t, "checkout/http_checkout@1.0.0", ref(loaded[2].Template))
	var kinds []string
	for _, s := range loaded[2].Template.GetSteps() {
		kinds = append(kinds, s.GetBuiltin()+s.GetHandler())
	}
	require.Equal(t, []string{"http", "price_order", "http", "render_receipt", "http"}, kinds)

	order := loaded[1].Template
	var names []string
	for _, s := range order.GetSteps() {
		names = append(names, s.GetName())
		require.Equal(t, s.GetName(), s.GetHandler())
	}
	require.Equal(t, []string{"fetch_cart", "fetch_products", "validate_products", "create_order", "publish_event"}, names)

	sch, err := CompileSchema(order.GetContextSchema().AsMap())
	require.NoError(t, err)
	require.NoError(t, sch.Validate(map[string]any{"cart_id": "c-1", "customer_id": "u-1"}))
	require.Error(t, sch.Validate(map[string]any{"cart_id": "c-1"}))
	require.Error(t, sch.Validate(map[string]any{"cart_id": 7.0, "customer_id": "u-1"}))
}

func ref(t *taskerv1.TaskTemplate) string {
	return t.GetNamespace() + "/" + t.GetName() + "@" + t.GetVersion()
}

func TestLoadDirStopsAtFirstBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	good := "namespace: demo\nname: one\nversion: 1.0.0\nsteps:\n- {name: a, handler: h}\n"
	write("a.yaml", good)
	write("notes.txt", "not a template")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700))
	write("b.yml", strings.Replace(good, "- {name: a, handler: h}", "- {name: a, handler: h, depends_on: [zz]}", 1))
	write("c.yaml", "naem: x\n")

	_, err := LoadDir(dir)
	require.ErrorContains(t, err, filepath.Join(dir, "b.yml")+": ")
	requireViolations(t, err, "template.steps[0].depends_on[0]")

	require.NoError(t, os.Remove(filepath.Join(dir, "b.yml")))
	_, err = LoadDir(dir)
	require.ErrorContains(t, err, filepath.Join(dir, "c.yaml")+": ")
	requireViolations(t, err, "template.naem")

	write("c.yaml", good)
	_, err = LoadDir(dir)
	require.ErrorContains(t, err, "demo/one@1.0.0 is also defined in "+filepath.Join(dir, "a.yaml"))

	write("c.yaml", strings.Replace(good, "1.0.0", "1.1.0", 1))
	loaded, err := LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, loaded, 2)

	_, err = LoadDir(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
