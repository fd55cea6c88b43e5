package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/taskerhq/tasker/registry"
)

// HTTPOptions configure the http built-in.
type HTTPOptions struct {
	// Allow is the outbound policy (--http-allow-hosts); nil allows every
	// public host.
	Allow *AllowList
	// Env names the environment variables templates may read with env
	// (--http-allow-env).
	Env []string
	// LookupEnv reads a variable; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Concurrency caps the http steps running at once in this process; 0
	// means 32.
	Concurrency int
	// Resolver resolves host names; default net.DefaultResolver.
	Resolver *net.Resolver
	// UserAgent is sent when a step sets none; default "tasker".
	UserAgent string
}

// HTTP is the "http" built-in handler.
type HTTP struct {
	opts   HTTPOptions
	env    map[string]bool
	client *http.Client
}

// maxRedirects bounds the redirects one call follows.
const maxRedirects = 5

// Bounds of what a step renders and reports.
const (
	maxRenderedURL    = 16 << 10
	maxRenderedHeader = 16 << 10
	maxRenderedBody   = 1 << 20
	maxExcerpt        = 512
)

// NewHTTP returns the http built-in.
func NewHTTP(opts HTTPOptions) *HTTP {
	if opts.Allow == nil {
		opts.Allow = &AllowList{hosts: map[string]bool{}}
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 32
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "tasker"
	}
	h := &HTTP{opts: opts, env: map[string]bool{}}
	for _, n := range opts.Env {
		if n = strings.TrimSpace(n); n != "" {
			h.env[n] = true
		}
	}
	d := &dialer{allow: opts.Allow, resolver: opts.Resolver, net: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}}
	transport := &http.Transport{
		// No proxy from the environment: a proxy would dial for us,
		// past the address check.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	h.client = &http.Client{Transport: transport, CheckRedirect: h.checkRedirect}
	return h
}

// Register registers the http built-in in reg for every namespace.
func (h *HTTP) Register(reg *Registry) error {
	return reg.Register("", registry.BuiltinHandler(registry.BuiltinHTTP), h.Handle, Options{Concurrency: h.opts.Concurrency})
}

// redirectRefusedError is a redirect to a host the allow-list refuses.
type redirectRefusedError struct{ host string }

func (e *redirectRefusedError) Error() string {
	return fmt.Sprintf("redirect to host %s refused: --http-allow-hosts does not allow it", e.host)
}

func (h *HTTP) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if !h.opts.Allow.HostAllowed(req.URL.Hostname(), portOf(req.URL.Scheme, req.URL.Port())) {
		return &redirectRefusedError{host: req.URL.Hostname()}
	}
	return nil
}

func portOf(scheme, port string) string {
	switch {
	case port != "":
		return port
	case scheme == "https":
		return "443"
	}
	return "80"
}

// Handle runs one http step: renders the request from the step's
// HttpStepConfig, calls it and maps the response.
func (h *HTTP) Handle(ctx context.Context, s *Step) (map[string]any, error) {
	cfg, err := registry.DecodeHTTPConfig(s.Config)
	if err != nil {
		return nil, Permanent("config", "the step's http config cannot be read: %v", err)
	}
	method, timeout, maxResponse, resultMap := registry.HTTPDefaults(cfg)
	data, err := templateData(s)
	if err != nil {
		return nil, err
	}
	funcs := registry.HTTPFuncs(h.lookupEnv)
	rawURL, err := render("url", cfg.GetUrl(), funcs, data, maxRenderedURL)
	if err != nil {
		return nil, err
	}
	u, err := registry.ParseHTTPURL(rawURL)
	if err != nil {
		// The rendered URL may hold a secret: it is not quoted.
		return nil, Permanent("template", "the rendered url %v", err)
	}
	if !h.opts.Allow.HostAllowed(u.Hostname(), portOf(u.Scheme, u.Port())) {
		return nil, Permanent("host_not_allowed", "host %s is not allowed by --http-allow-hosts", u.Hostname())
	}
	var body io.Reader
	if cfg.GetBody() != "" {
		b, err := render("body", cfg.GetBody(), funcs, data, maxRenderedBody)
		if err != nil {
			return nil, err
		}
		body = strings.NewReader(b)
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, method, u.String(), body)
	if err != nil {
		return nil, Permanent("template", "the request cannot be built")
	}
	for name, text := range cfg.GetHeaders() {
		v, err := render("headers["+name+"]", text, funcs, data, maxRenderedHeader)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, Permanent("template", "the rendered header %s holds a line break or NUL", name)
		}
		req.Header.Set(name, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", h.opts.UserAgent)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, h.transportError(ctx, reqCtx, timeout, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, h.transportError(ctx, reqCtx, timeout, err)
	}
	if int64(len(raw)) > maxResponse {
		return nil, Permanent("response_too_large", "HTTP %d: the response body exceeds max_response_bytes (%d)", resp.StatusCode, maxResponse)
	}
	return mapResponse(cfg.GetSuccessCodes(), resultMap, resp, raw, time.Now())
}

// mapResponse completes or fails by the status, as HttpStepConfig
// documents.
func mapResponse(success []int32, resultMap map[string]string, resp *http.Response, raw []byte, now time.Time) (map[string]any, error) {
	code := resp.StatusCode
	ok := len(success) == 0 && code >= 200 && code <= 299
	for _, c := range success {
		ok = ok || int(c) == code
	}
	if ok {
		return buildResult(resultMap, resp, raw), nil
	}
	status := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	if ex := excerpt(raw); ex != "" {
		status += ": " + ex
	}
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return nil, Retryable("http_status", RetryAfter(resp.Header.Get("Retry-After"), now), "%s", status)
	case code == http.StatusRequestTimeout || code >= 500:
		return nil, Retryable("http_status", 0, "%s", status)
	}
	return nil, Permanent("http_status", "%s", status)
}

// RetryAfter reads a Retry-After header: delay seconds or an HTTP date
// (relative to now). It returns 0 when the header is absent, malformed or
// in the past.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		const maxSeconds = int64(24 * time.Hour / time.Second)
		return time.Duration(min(max(n, 0), maxSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// transportError classifies a failed call. The *url.Error of net/http
// quotes the URL, which may hold a secret: only the cause is reported.
func (h *HTTP) transportError(ctx, reqCtx context.Context, timeout time.Duration, err error) error {
	var refused *RefusedError
	var redirect *redirectRefusedError
	switch {
	case ctx.Err() != nil:
		// The lease was lost, the step cancelled or timed out, or the
		// server stops: the runner decides.
		return context.Cause(ctx)
	case errors.As(err, &refused):
		return Permanent("host_not_allowed", "%v", refused)
	case errors.As(err, &redirect):
		return Permanent("host_not_allowed", "%v", redirect)
	case reqCtx.Err() != nil:
		return Retryable("timeout", 0, "no complete response within the timeout of %s", timeout)
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return Retryable("connection", 0, "%v", cause)
}

func (h *HTTP) lookupEnv(name string) (string, error) {
	if !h.env[name] {
		return "", fmt.Errorf("environment variable %s is not allowed by --http-allow-env", name)
	}
	v, ok := h.opts.LookupEnv(name)
	if !ok {
		return "", fmt.Errorf("environment variable %s is not set", name)
	}
	return v, nil
}

// templateData is what the templates read: .context, .parents.<name> and
// .step (id, task_id, namespace, name, attempt).
func templateData(s *Step) (map[string]any, error) {
	var ctxDoc any = map[string]any{}
	if len(s.Context) > 0 {
		if err := json.Unmarshal(s.Context, &ctxDoc); err != nil {
			return nil, Permanent("template", "the task context cannot be read: %v", err)
		}
	}
	parents := make(map[string]any, len(s.Parents))
	for name, raw := range s.Parents {
		var v any = map[string]any{}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, Permanent("template", "the result of parent %s cannot be read: %v", name, err)
			}
		}
		parents[name] = v
	}
	return map[string]any{
		"context": ctxDoc,
		"parents": parents,
		"step": map[string]any{
			"id": s.ID.String(), "task_id": s.TaskID.String(), "namespace": s.Namespace,
			"name": s.Name, "attempt": s.Attempt,
		},
	}, nil
}

// errTooLong stops a template whose output passes its bound.
var errTooLong = errors.New("output too long")

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

// render runs one template. Errors name the field and the template's own
// message (a missing key, a refused env name), never the rendered text.
func render(field, text string, funcs template.FuncMap, data map[string]any, limit int) (string, error) {
	t, err := registry.ParseHTTPTemplate(field, text, funcs)
	if err != nil {
		return "", Permanent("template", "%s: %v", field, err)
	}
	out := &limitedBuffer{limit: limit}
	if err := t.Execute(out, data); err != nil {
		if errors.Is(err, errTooLong) {
			return "", Permanent("template", "%s renders to more than %d bytes", field, limit)
		}
		return "", Permanent("template", "%s: %v", field, err)
	}
	return out.String(), nil
}

// buildResult maps the response to the step's result.
func buildResult(resultMap map[string]string, resp *http.Response, raw []byte) map[string]any {
	var doc any
	decoded := false
	if len(bytes.TrimSpace(raw)) > 0 && json.Valid(raw) {
		decoded = json.Unmarshal(raw, &doc) == nil
	}
	body := func() any {
		if decoded {
			return doc
		}
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	out := make(map[string]any, len(resultMap))
	for key, sel := range resultMap {
		switch {
		case sel == "status":
			out[key] = resp.StatusCode
		case sel == "body":
			out[key] = body()
		case strings.HasPrefix(sel, "body."):
			out[key] = lookup(doc, strings.Split(strings.TrimPrefix(sel, "body."), "."))
		case strings.HasPrefix(sel, "header."):
			out[key] = resp.Header.Get(strings.TrimPrefix(sel, "header."))
		}
	}
	return out
}

// lookup walks a decoded JSON document by keys and array indexes; nil when
// the path is absent.
func lookup(v any, path []string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// excerpt is the start of a body for an error message: at most maxExcerpt
// bytes of valid UTF-8, whitespace collapsed.
func excerpt(raw []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(raw[:min(len(raw), 4*maxExcerpt)]), "?")), " ")
	if len(s) <= maxExcerpt {
		return s
	}
	s = s[:maxExcerpt]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// CloseIdleConnections closes the kept-alive connections of finished
// calls, e.g. when the server stops.
func (h *HTTP) CloseIdleConnections() { h.client.CloseIdleConnections() }
