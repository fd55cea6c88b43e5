package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// Built-in handlers. A built-in step is stored, copied onto its steps and
// claimed under the handler name BuiltinHandler(name), which no worker can
// claim: ':' breaks the handler name rule every ClaimSteps request is held
// to.
const (
	// BuiltinHTTP is the "http" built-in: one HTTP call per step.
	BuiltinHTTP = "http"
	// builtinPrefix starts the handler name of a built-in step.
	builtinPrefix = "builtin:"
)

// BuiltinHandler returns the handler name steps of the built-in name are
// claimed under, e.g. "builtin:http".
func BuiltinHandler(name string) string { return builtinPrefix + name }

// IsBuiltinHandler reports whether handler names a built-in, and which.
func IsBuiltinHandler(handler string) (string, bool) {
	return strings.CutPrefix(handler, builtinPrefix)
}

// Bounds of an HttpStepConfig, as its message documents them.
const (
	maxHTTPURL          = 8 << 10
	maxHTTPBody         = 64 << 10
	maxHTTPHeaderValue  = 8 << 10
	maxHTTPEntries      = 50
	defaultHTTPTimeout  = 30 * time.Second
	maxHTTPTimeout      = time.Hour
	defaultHTTPResponse = 1 << 20
	maxHTTPResponse     = 16 << 20
)

// HTTPMethods are the methods an http step may use.
var HTTPMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// HTTPDefaults returns c with its defaults filled in: method GET, timeout
// 30s, any 2xx as success, status and body as the result, a 1 MiB
// response cap. c is not modified.
func HTTPDefaults(c *taskerv1.HttpStepConfig) (method string, timeout time.Duration, maxResponse int64, result map[string]string) {
	method = c.GetMethod()
	if method == "" {
		method = http.MethodGet
	}
	timeout = defaultHTTPTimeout
	if c.GetTimeout() != nil {
		timeout = c.GetTimeout().AsDuration()
	}
	maxResponse = c.GetMaxResponseBytes()
	if maxResponse == 0 {
		maxResponse = defaultHTTPResponse
	}
	result = c.GetResult()
	if len(result) == 0 {
		result = map[string]string{"status": "status", "body": "body"}
	}
	return method, timeout, maxResponse, result
}

// HTTPFuncs are the functions an http step's templates may call. env reads
// a variable of the server's environment; it decides which names it
// answers. Validation parses with an env that is never called.
func HTTPFuncs(env func(name string) (string, error)) template.FuncMap {
	return template.FuncMap{
		"env": env,
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}
}

var errNoEnv = errors.New("env is not available here")

// ParseHTTPTemplate parses one template of an http step (URL, a header or
// the body). Missing keys are errors when it runs, so a typo in a
// reference fails the step instead of sending "<no value>". The
// define, template and block actions are refused: a template is one
// text, and recursion through them would only serve to make a runaway.
func ParseHTTPTemplate(name, text string, funcs template.FuncMap) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define and block actions are not allowed")
	}
	if t.Tree != nil && hasTemplateCall(t.Root) {
		return nil, errors.New("template actions are not allowed")
	}
	return t, nil
}

// hasTemplateCall reports whether the tree under n calls a template.
func hasTemplateCall(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return false
		}
		for _, c := range n.Nodes {
			if hasTemplateCall(c) {
				return true
			}
		}
	case *parse.TemplateNode:
		return true
	case *parse.IfNode:
		return hasTemplateCall(n.List) || hasTemplateCall(n.ElseList)
	case *parse.RangeNode:
		return hasTemplateCall(n.List) || hasTemplateCall(n.ElseList)
	case *parse.WithNode:
		return hasTemplateCall(n.List) || hasTemplateCall(n.ElseList)
	}
	return false
}

// validateHTTP checks the http config of a step at path p.
func validateHTTP(vs *violations, p string, c *taskerv1.HttpStepConfig) {
	funcs := HTTPFuncs(func(string) (string, error) { return "", errNoEnv })
	if m := c.GetMethod(); m != "" {
		ok := false
		for _, x := range HTTPMethods {
			ok = ok || m == x
		}
		if !ok {
			vs.add(p+".method", "%q must be one of %s", clip(m), strings.Join(HTTPMethods, ", "))
		}
	}
	switch u := c.GetUrl(); {
	case u == "":
		vs.add(p+".url", "is required")
	case len(u) > maxHTTPURL:
		vs.add(p+".url", "is %d bytes; at most %d", len(u), maxHTTPURL)
	default:
		checkHTTPTemplate(vs, p+".url", u, funcs)
		// A URL without actions is checked now rather than at run time;
		// one with actions can only be checked once rendered.
		if !strings.Contains(u, "{{") {
			if _, err := ParseHTTPURL(u); err != nil {
				vs.add(p+".url", "%v", err)
			}
		}
	}
	if n := len(c.GetHeaders()); n > maxHTTPEntries {
		vs.add(p+".headers", "has %d entries; at most %d", n, maxHTTPEntries)
	} else {
		for _, name := range sortedKeys(c.GetHeaders()) {
			f := fmt.Sprintf("%s.headers[%q]", p, clip(name))
			v := c.GetHeaders()[name]
			switch {
			case !validHeaderName(name):
				vs.add(f, "is not a valid header name")
			case strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length") ||
				strings.EqualFold(name, "Transfer-Encoding") || strings.EqualFold(name, "Connection"):
				vs.add(f, "is set by the server and cannot be configured")
			case len(v) > maxHTTPHeaderValue:
				vs.add(f, "is %d bytes; at most %d", len(v), maxHTTPHeaderValue)
			default:
				checkHTTPTemplate(vs, f, v, funcs)
			}
		}
	}
	if b := c.GetBody(); len(b) > maxHTTPBody {
		vs.add(p+".body", "is %d bytes; at most %d", len(b), maxHTTPBody)
	} else if b != "" {
		checkHTTPTemplate(vs, p+".body", b, funcs)
	}
	if d := c.GetTimeout(); d != nil && checkDuration(vs, p+".timeout", d, time.Millisecond, maxHTTPTimeout) && d.AsDuration() == 0 {
		vs.add(p+".timeout", "must be between 1ms and %s, got 0s", maxHTTPTimeout)
	}
	if n := len(c.GetSuccessCodes()); n > maxHTTPEntries {
		vs.add(p+".success_codes", "has %d entries; at most %d", n, maxHTTPEntries)
	} else {
		for i, code := range c.GetSuccessCodes() {
			if code < 100 || code > 599 {
				vs.add(fmt.Sprintf("%s.success_codes[%d]", p, i), "must be between 100 and 599, got %d", code)
			}
		}
	}
	if n := len(c.GetResult()); n > maxHTTPEntries {
		vs.add(p+".result", "has %d entries; at most %d", n, maxHTTPEntries)
	} else {
		for _, key := range sortedKeys(c.GetResult()) {
			f := fmt.Sprintf("%s.result[%q]", p, clip(key))
			switch sel := c.GetResult()[key]; {
			case key == "" || len(key) > 128 || !utf8.ValidString(key) || strings.ContainsRune(key, 0):
				vs.add(f, "a result field name must be 1 to 128 bytes of UTF-8 without NUL")
			case !validSelector(sel):
				vs.add(f, `%q must be "status", "body", "body.<path>" or "header.<Name>"`, clip(sel))
			}
		}
	}
	if n := c.GetMaxResponseBytes(); n < 0 || n > maxHTTPResponse {
		vs.add(p+".max_response_bytes", "must be between 1 and %d (0 for %d), got %d", maxHTTPResponse, defaultHTTPResponse, n)
	}
}

func checkHTTPTemplate(vs *violations, field, text string, funcs template.FuncMap) {
	if !utf8.ValidString(text) {
		vs.add(field, "is not valid UTF-8")
		return
	}
	if _, err := ParseHTTPTemplate(field, text, funcs); err != nil {
		vs.add(field, "is not a valid template: %s", clip(err.Error()))
	}
}

// ParseHTTPURL parses a rendered URL: absolute, http or https, with a host
// and no user information (credentials belong in headers, read with env,
// where they stay out of error messages).
func ParseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an absolute http or https URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("must name a host")
	case u.User != nil:
		return nil, errors.New("must not carry user information; send credentials in a header")
	}
	return u, nil
}

func validSelector(s string) bool {
	switch {
	case s == "status", s == "body":
		return true
	case strings.HasPrefix(s, "body."):
		for part := range strings.SplitSeq(strings.TrimPrefix(s, "body."), ".") {
			if part == "" {
				return false
			}
		}
		return len(s) <= 1024
	case strings.HasPrefix(s, "header."):
		return validHeaderName(strings.TrimPrefix(s, "header."))
	}
	return false
}

// validHeaderName is the token rule of RFC 9110.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// httpJSON is how an http config is stored in a step template's config
// column (and so handed to the in-process handler with each claim): its
// protojson form with the proto field names.
func httpJSON(c *taskerv1.HttpStepConfig) []byte {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("registry: encode a validated http config: %v", err))
	}
	return b
}

// DecodeHTTPConfig reads the stored form of an http config, a step's config
// as claimed.
func DecodeHTTPConfig(raw []byte) (*taskerv1.HttpStepConfig, error) {
	c := &taskerv1.HttpStepConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, c); err != nil {
		return nil, err
	}
	return c, nil
}
