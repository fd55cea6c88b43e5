package registry

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/fault"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// httpTemplate is validTemplate whose step b is an http step.
func httpTemplate(mod func(s *taskerv1.StepTemplate)) *taskerv1.TaskTemplate {
	t := validTemplate()
	b := t.Steps[1]
	b.Handler, b.Builtin = "", BuiltinHTTP
	b.Http = &taskerv1.HttpStepConfig{
		Method:       "POST",
		Url:          "https://pay.example.com/carts/{{ .context.cart_id }}/charge",
		Headers:      map[string]string{"Authorization": `Bearer {{ env "PAYMENTS_TOKEN" }}`},
		Body:         `{"items": {{ json .parents.a.items }}}`,
		Timeout:      durationpb.New(5 * time.Second),
		SuccessCodes: []int32{200, 201},
		Result:       map[string]string{"charge": "body.id", "code": "status", "trace": "header.X-Trace"},
	}
	if mod != nil {
		mod(b)
	}
	return t
}

func TestValidateHTTPStep(t *testing.T) {
	t.Parallel()
	require.NoError(t, Validate(httpTemplate(nil)))
	const p = "template.steps[1]"
	cases := []struct {
		name   string
		mod    func(s *taskerv1.StepTemplate)
		fields []string
	}{
		{"handler_and_builtin", func(s *taskerv1.StepTemplate) { s.Handler = "work" }, []string{p + ".builtin"}},
		{"unknown_builtin", func(s *taskerv1.StepTemplate) { s.Builtin = "ftp" }, []string{p + ".builtin"}},
		{"http_without_builtin", func(s *taskerv1.StepTemplate) { s.Builtin, s.Handler = "", "work" }, []string{p + ".http"}},
		{"builtin_without_http", func(s *taskerv1.StepTemplate) { s.Http = nil }, []string{p + ".http"}},
		{"config_on_builtin", func(s *taskerv1.StepTemplate) { s.Config = mustStruct(map[string]any{"x": 1}) }, []string{p + ".config"}},
		{"method", func(s *taskerv1.StepTemplate) { s.Http.Method = "post" }, []string{p + ".http.method"}},
		{"url_missing", func(s *taskerv1.StepTemplate) { s.Http.Url = "" }, []string{p + ".http.url"}},
		{"url_bad_template", func(s *taskerv1.StepTemplate) { s.Http.Url = "https://x/{{ .context.id " }, []string{p + ".http.url"}},
		{"url_unknown_function", func(s *taskerv1.StepTemplate) { s.Http.Url = "https://x/{{ exec .a }}" }, []string{p + ".http.url"}},
		{"url_scheme", func(s *taskerv1.StepTemplate) { s.Http.Url = "ftp://x/y" }, []string{p + ".http.url"}},
		{"url_user_info", func(s *taskerv1.StepTemplate) { s.Http.Url = "https://u:p@x/y" }, []string{p + ".http.url"}},
		{"url_too_long", func(s *taskerv1.StepTemplate) { s.Http.Url = "https://x/" + strings.Repeat("a", 9000) }, []string{p + ".http.url"}},
		{"define", func(s *taskerv1.StepTemplate) { s.Http.Body = `{{ define "x" }}{{ template "x" }}{{ end }}` }, []string{p + ".http.body"}},
		{"template_call", func(s *taskerv1.StepTemplate) { s.Http.Body = `{{ if 1 }}{{ template "y" }}{{ end }}` }, []string{p + ".http.body"}},
		{"header_name", func(s *taskerv1.StepTemplate) { s.Http.Headers["Bad Name"] = "x" }, []string{p + `.http.headers["Bad Name"]`}},
		{"header_reserved", func(s *taskerv1.StepTemplate) { s.Http.Headers["host"] = "x" }, []string{p + `.http.headers["host"]`}},
		{"header_template", func(s *taskerv1.StepTemplate) { s.Http.Headers["X-A"] = "{{" }, []string{p + `.http.headers["X-A"]`}},
		{"body_too_long", func(s *taskerv1.StepTemplate) { s.Http.Body = strings.Repeat("b", 70<<10) }, []string{p + ".http.body"}},
		{"timeout_zero", func(s *taskerv1.StepTemplate) { s.Http.Timeout = durationpb.New(0) }, []string{p + ".http.timeout"}},
		{"timeout_long", func(s *taskerv1.StepTemplate) { s.Http.Timeout = durationpb.New(2 * time.Hour) }, []string{p + ".http.timeout"}},
		{"success_code", func(s *taskerv1.StepTemplate) { s.Http.SuccessCodes = []int32{200, 99} }, []string{p + ".http.success_codes[1]"}},
		{"result_selector", func(s *taskerv1.StepTemplate) { s.Http.Result["x"] = "body..a" }, []string{p + `.http.result["x"]`}},
		{"result_unknown", func(s *taskerv1.StepTemplate) { s.Http.Result["x"] = "cookies" }, []string{p + `.http.result["x"]`}},
		{"max_response", func(s *taskerv1.StepTemplate) { s.Http.MaxResponseBytes = 17 << 20 }, []string{p + ".http.max_response_bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireViolations(t, Validate(httpTemplate(tc.mod)), tc.fields...)
		})
	}
}

func TestHTTPStepHashAndYAML(t *testing.T) {
	t.Parallel()
	a, b := httpTemplate(nil), httpTemplate(nil)
	require.Equal(t, ContentHash(a), ContentHash(b))
	b.Steps[1].Http.Headers["X-More"] = "1"
	require.NotEqual(t, ContentHash(a), ContentHash(b), "the http config is part of the content")
	// Templates without built-in steps hash as before the field existed.
	plain := validTemplate()
	require.Equal(t, ContentHash(plain), ContentHash(proto.Clone(plain).(*taskerv1.TaskTemplate)))

	tpl, err := ParseYAML([]byte(`
namespace: shop
name: notify
version: 1.0.0
steps:
- name: call
  builtin: http
  http:
    method: POST
    url: "https://hooks.example.com/{{ .context.id }}"
    headers: {X-Token: '{{ env "HOOK_TOKEN" }}'}
    timeout: 2.5s
    success_codes: [200, 202]
    result: {id: body.id}
`))
	require.NoError(t, err)
	require.NoError(t, Validate(tpl))
	s := tpl.GetSteps()[0]
	require.Equal(t, BuiltinHTTP, s.GetBuiltin())
	require.Equal(t, 2500*time.Millisecond, s.GetHttp().GetTimeout().AsDuration())
	require.Equal(t, []int32{200, 202}, s.GetHttp().GetSuccessCodes())

	_, err = ParseYAML([]byte("namespace: a\nsteps:\n- name: c\n  builtin: http\n  http: {urll: x}\n"))
	require.Equal(t, fault.InvalidArgument, fault.CodeOf(err))
	fe, _ := fault.As(err)
	require.Equal(t, "template.steps[0].http.urll", fe.Violations[0].Field)
}

// FuzzValidateHTTP feeds arbitrary templates and selectors through the
// validation of an http step: it must answer, never panic, and whatever it
// accepts must parse again as a template.
func FuzzValidateHTTP(f *testing.F) {
	f.Add("https://x/{{ .context.id }}", `{{ json .parents }}`, "body.a.0", "X-A")
	f.Add("{{ range .context.items }}{{ . }}{{ end }}", `{{ define "a" }}{{ end }}`, "header.X", "Bad Name")
	f.Add("{{ env \"A\" | printf \"%s\" }}", "{{ template \"x\" }}", "status", "")
	f.Add("https://x/{{ with $x := 1 }}{{ $x }}{{ else }}{{ end }}", "{{ block \"b\" . }}{{ end }}", "body..", "Host")
	f.Fuzz(func(t *testing.T, url, body, selector, header string) {
		tpl := httpTemplate(func(s *taskerv1.StepTemplate) {
			s.Http.Url, s.Http.Body = url, body
			s.Http.Result = map[string]string{"x": selector}
			s.Http.Headers = map[string]string{header: body}
		})
		err := Validate(tpl)
		if err != nil {
			require.Equal(t, fault.InvalidArgument, fault.CodeOf(err))
			return
		}
		ContentHash(tpl)
		funcs := HTTPFuncs(func(string) (string, error) { return "", nil })
		for _, text := range []string{url, body} {
			_, err := ParseHTTPTemplate("t", text, funcs)
			require.NoError(t, err)
		}
	})
}
