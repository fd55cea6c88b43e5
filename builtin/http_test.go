package builtin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/builtin"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
)

const (
	complete = taskerv1.TaskState_TASK_STATE_COMPLETE
	failed   = taskerv1.TaskState_TASK_STATE_ERROR
)

// An http step renders its request from the context, a parent's result
// and an allowed environment variable, and maps the response to its
// result, which the next http step reads.
func TestHTTPStepSuccessMapsResult(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		api := newRemote(t,
			jsonBody(`{"id":"cart-7","items":[{"sku":"tea"},{"sku":"cup"}],"total":12.5}`),
			jsonBody(`{"charge":"ch_1"}`))
		b := start(t, db, config{allow: hostPort(api), env: map[string]string{"PAYMENTS_TOKEN": "s3cret"}})
		task := b.run(t, tmpl("checkout",
			httpStep("fetch_cart", &taskerv1.HttpStepConfig{
				Url: api.URL + "/carts/{{ .context.cart_id }}",
				Result: map[string]string{
					"id": "body.id", "first_sku": "body.items.0.sku", "total": "body.total",
					"code": "status", "request": "header.X-Request-Id", "missing": "body.nope.deeper",
				},
			}),
			httpStep("charge", &taskerv1.HttpStepConfig{
				Method:  "POST",
				Url:     api.URL + "/charges?cart={{ urlquery .parents.fetch_cart.id }}",
				Headers: map[string]string{"Authorization": `Bearer {{ env "PAYMENTS_TOKEN" }}`, "Content-Type": "application/json"},
				Body:    `{"cart":{{ json .parents.fetch_cart.id }},"amount":{{ .parents.fetch_cart.total }}}`,
			}, "fetch_cart"),
		), map[string]any{"cart_id": "cart-7"})
		require.Equal(t, complete, task.GetState())

		fetch := b.step(t, task, "fetch_cart")
		require.Equal(t, "builtin:http", fetch.GetHandler())
		require.Equal(t, map[string]any{
			"id": "cart-7", "first_sku": "tea", "total": 12.5, "code": float64(200), "request": "req-1", "missing": nil,
		}, fetch.GetResult().AsMap())
		charge := b.step(t, task, "charge")
		require.Equal(t, map[string]any{"status": float64(200), "body": map[string]any{"charge": "ch_1"}}, charge.GetResult().AsMap())

		calls := api.got()
		require.Len(t, calls, 2)
		require.Equal(t, "/carts/cart-7", calls[0].path)
		require.Equal(t, http.MethodPost, calls[1].method)
		require.Equal(t, "/charges?cart=cart-7", calls[1].path)
		require.Equal(t, "Bearer s3cret", calls[1].header.Get("Authorization"))
		require.JSONEq(t, `{"cart":"cart-7","amount":12.5}`, calls[1].body)

		// The secret is in no step and no event.
		events, err := taskerv1.NewEventServiceClient(b.srv.Conn).ListEvents(testContext(t), &taskerv1.ListEventsRequest{PageSize: 500})
		require.NoError(t, err)
		require.NotEmpty(t, events.GetEvents())
		require.NotContains(t, events.String(), "s3cret")
		require.NotContains(t, charge.String(), "s3cret")
	})
}

// Each status class: 4xx fails at once with the status and a body
// excerpt; 408 and 5xx retry with the policy; 429 and 503 retry after
// Retry-After, in seconds or as an HTTP date.
func TestHTTPStepStatusClasses(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 2000)
	cases := []struct {
		name    string
		answers []http.HandlerFunc
		state   taskerv1.TaskState
		calls   int
		errType string
		errHas  string
		// minGap is the least time between the first two calls.
		minGap time.Duration
	}{
		{name: "not_found", answers: []http.HandlerFunc{status(404, "no such cart "+long)},
			state: failed, calls: 1, errType: "http_status", errHas: "HTTP 404 Not Found: no such cart xxx"},
		{name: "conflict", answers: []http.HandlerFunc{status(409, "taken")},
			state: failed, calls: 1, errType: "http_status", errHas: "HTTP 409 Conflict: taken"},
		{name: "server_error_then_ok", answers: []http.HandlerFunc{status(500, "boom"), jsonBody(`{}`)},
			state: complete, calls: 2},
		{name: "request_timeout_then_ok", answers: []http.HandlerFunc{status(408, ""), jsonBody(`{}`)},
			state: complete, calls: 2},
		{name: "bad_gateway_exhausts", answers: []http.HandlerFunc{status(502, "down")},
			state: failed, calls: 3, errType: "http_status", errHas: "HTTP 502 Bad Gateway: down"},
		{name: "too_many_requests_seconds", answers: []http.HandlerFunc{retryAfter(429, "1"), jsonBody(`{}`)},
			state: complete, calls: 2, minGap: time.Second},
		{name: "unavailable_http_date", answers: []http.HandlerFunc{
			func(w http.ResponseWriter, r *http.Request) {
				retryAfter(503, time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))(w, r)
			}, jsonBody(`{}`),
		}, state: complete, calls: 2, minGap: time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storagetest.Each(t, func(t *testing.T, db *storage.DB) {
				api := newRemote(t, tc.answers...)
				b := start(t, db, config{allow: hostPort(api)})
				tpl := tmpl("status_"+tc.name, httpStep("call", &taskerv1.HttpStepConfig{Url: api.URL}))
				task := b.run(t, tpl, nil)
				require.Equal(t, tc.state, task.GetState())
				calls := api.got()
				require.Len(t, calls, tc.calls)
				s := b.step(t, task, "call")
				if tc.errType != "" {
					require.Equal(t, tc.errType, s.GetLastError().GetType())
					require.Contains(t, s.GetLastError().GetMessage(), tc.errHas)
					require.LessOrEqual(t, len(s.GetLastError().GetMessage()), 600, "the body excerpt is bounded")
				}
				if tc.minGap > 0 {
					// Retry-After is honoured: the retry cannot come sooner
					// (less the HTTP date's rounding to the second).
					require.GreaterOrEqual(t, calls[1].at.Sub(calls[0].at), tc.minGap-50*time.Millisecond)
				}
			})
		})
	}
}

func retryAfter(code int, v string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", v)
		w.WriteHeader(code)
	}
}

// A slow response hits the step's request timeout, which retries until
// the attempts run out; an oversized body fails at once; a redirect to a
// host not on the allow-list, and an internal address not on it, are
// refused without retry.
func TestHTTPStepRefusalsAndTimeouts(t *testing.T) {
	t.Parallel()
	each := func(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
		t.Helper()
		t.Parallel()
		storagetest.Each(t, fn)
	}
	{
		t.Run("timeout", func(t *testing.T) {
			each(t, func(t *testing.T, db *storage.DB) {
				api := newRemote(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
				b := start(t, db, config{allow: hostPort(api)})
				task := b.run(t, tmpl("slow", httpStep("call", &taskerv1.HttpStepConfig{
					Url: api.URL, Timeout: durationpb.New(100 * time.Millisecond),
				})), nil)
				require.Equal(t, failed, task.GetState())
				// On a loaded machine an attempt can time out before its
				// request reaches the service: count attempts, not calls.
				require.LessOrEqual(t, len(api.got()), 3)
				s := b.step(t, task, "call")
				require.Equal(t, "timeout", s.GetLastError().GetType())
				require.Equal(t, int32(3), s.GetAttempts())
			})
		})
		t.Run("oversized", func(t *testing.T) {
			each(t, func(t *testing.T, db *storage.DB) {
				api := newRemote(t, status(200, strings.Repeat("y", 5000)))
				b := start(t, db, config{allow: hostPort(api)})
				task := b.run(t, tmpl("big", httpStep("call", &taskerv1.HttpStepConfig{Url: api.URL, MaxResponseBytes: 1000})), nil)
				require.Equal(t, failed, task.GetState())
				require.Len(t, api.got(), 1)
				require.Equal(t, "response_too_large", b.step(t, task, "call").GetLastError().GetType())
			})
		})
		t.Run("redirect_to_disallowed_host", func(t *testing.T) {
			each(t, func(t *testing.T, db *storage.DB) {
				elsewhere := newRemote(t, jsonBody(`{}`))
				api := newRemote(t, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, elsewhere.URL+"/x", http.StatusFound)
				})
				b := start(t, db, config{allow: hostPort(api)})
				task := b.run(t, tmpl("redirect", httpStep("call", &taskerv1.HttpStepConfig{Url: api.URL})), nil)
				require.Equal(t, failed, task.GetState())
				require.Len(t, api.got(), 1)
				require.Empty(t, elsewhere.got())
				s := b.step(t, task, "call")
				require.Equal(t, "host_not_allowed", s.GetLastError().GetType())
				require.Equal(t, int32(1), s.GetAttempts())
			})
		})
		t.Run("redirect_to_allowed_host", func(t *testing.T) {
			each(t, func(t *testing.T, db *storage.DB) {
				other := newRemote(t, jsonBody(`{"ok":true}`))
				api := newRemote(t, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, other.URL+"/x", http.StatusFound)
				})
				b := start(t, db, config{allow: hostPort(api) + "," + hostPort(other)})
				task := b.run(t, tmpl("redirect_ok", httpStep("call", &taskerv1.HttpStepConfig{Url: api.URL})), nil)
				require.Equal(t, complete, task.GetState())
				require.Len(t, other.got(), 1)
			})
		})
		t.Run("private_address_refused", func(t *testing.T) {
			each(t, func(t *testing.T, db *storage.DB) {
				api := newRemote(t, jsonBody(`{}`))
				// No allow-list: every public host, no internal address. The
				// name "localhost" is checked by the address it resolves to.
				b := start(t, db, config{})
				url := strings.Replace(api.URL, "127.0.0.1", "localhost", 1)
				task := b.run(t, tmpl("private", httpStep("call", &taskerv1.HttpStepConfig{Url: url})), nil)
				require.Equal(t, failed, task.GetState())
				require.Empty(t, api.got())
				s := b.step(t, task, "call")
				require.Equal(t, "host_not_allowed", s.GetLastError().GetType())
				require.Contains(t, s.GetLastError().GetMessage(), "internal address")
			})
		})
		t.Run("env_not_allowed", func(t *testing.T) {
			each(t, func(t *testing.T, db *storage.DB) {
				api := newRemote(t, jsonBody(`{}`))
				b := start(t, db, config{allow: hostPort(api), env: map[string]string{"OK": "1"}})
				task := b.run(t, tmpl("env", httpStep("call", &taskerv1.HttpStepConfig{
					Url: api.URL, Headers: map[string]string{"X-Key": `{{ env "HOME" }}`},
				})), nil)
				require.Equal(t, failed, task.GetState())
				require.Empty(t, api.got())
				s := b.step(t, task, "call")
				require.Equal(t, "template", s.GetLastError().GetType())
				require.Contains(t, s.GetLastError().GetMessage(), "HOME is not allowed")
			})
		})
	}
}

// Cancelling the task aborts the request in flight: the lease renewal is
// refused and the handler's context, the request's, ends.
func TestHTTPStepCancellationAbortsRequest(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		started, aborted := make(chan struct{}), make(chan struct{})
		api := newRemote(t, func(_ http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
			close(aborted)
		})
		b := start(t, db, config{allow: hostPort(api)})
		b.register(t, tmpl("cancel", httpStep("call", &taskerv1.HttpStepConfig{Url: api.URL, Timeout: durationpb.New(time.Minute)})))
		task := b.create(t, "cancel", nil)
		waitChan(t, started, "the request to start")
		_, err := b.tasks.CancelTask(testContext(t), &taskerv1.CancelTaskRequest{Id: task.GetId(), Reason: "test"})
		require.NoError(t, err)
		waitChan(t, aborted, "the request to be aborted")
		task = b.wait(t, task.GetId())
		require.Equal(t, taskerv1.TaskState_TASK_STATE_CANCELLED, task.GetState())
		require.Len(t, api.got(), 1)
	})
}

// A server stopped while an http step is in flight gives the step back;
// the server started in its place runs it again: delivery is at least
// once.
func TestHTTPStepRunsAgainAfterRestart(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		started := make(chan struct{})
		api := newRemote(t,
			func(_ http.ResponseWriter, r *http.Request) { close(started); <-r.Context().Done() },
			jsonBody(`{"done":true}`))
		first := start(t, db, config{allow: hostPort(api)})
		first.register(t, tmpl("restart", httpStep("call", &taskerv1.HttpStepConfig{Url: api.URL, Timeout: durationpb.New(time.Minute)})))
		task := first.create(t, "restart", nil)
		waitChan(t, started, "the first request")
		require.NoError(t, first.srv.Stop())

		second := start(t, db, config{allow: hostPort(api)})
		task = second.wait(t, task.GetId())
		require.Equal(t, complete, task.GetState())
		require.Len(t, api.got(), 2, "the step ran again after the restart")
		s := second.step(t, task, "call")
		require.Equal(t, map[string]any{"done": true}, s.GetResult().AsMap()["body"])
		// Given back unrun at the stop, the first attempt was not counted.
		require.Equal(t, int32(1), s.GetAttempts())
	})
}

// An embedding program's own HandlerFunc serves a worker handler name in
// process, beside the http built-in, and ListHandlers shows both as served
// by the server.
func TestInProcessHandlerAndListHandlers(t *testing.T) {
	t.Parallel()
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		api := newRemote(t, jsonBody(`{"price":3}`))
		b := start(t, db, config{allow: hostPort(api), extra: func(reg *builtin.Registry) {
			reg.MustRegister(ns, "double", func(context.Context, *builtin.Step) (map[string]any, error) {
				return nil, builtin.Permanent("replaced", "the first registration must not run")
			}, builtin.Options{})
			// Registering the key again replaces the function.
			reg.MustRegister(ns, "double", func(_ context.Context, s *builtin.Step) (map[string]any, error) {
				var parent map[string]any
				if err := json.Unmarshal(s.Parents["price"], &parent); err != nil || parent["price"] != float64(3) {
					return nil, builtin.Permanent("parents", "got %s", s.Parents["price"])
				}
				return map[string]any{"doubled": 6}, nil
			}, builtin.Options{Concurrency: 2})
		}})
		task := b.run(t, tmpl("mixed",
			httpStep("price", &taskerv1.HttpStepConfig{Url: api.URL, Result: map[string]string{"price": "body.price"}}),
			&taskerv1.StepTemplate{Name: "double", Handler: "double", DependsOn: []string{"price"}},
		), nil)
		require.Equal(t, complete, task.GetState())
		require.Equal(t, map[string]any{"doubled": float64(6)}, b.step(t, task, "double").GetResult().AsMap())

		resp, err := b.registry.ListHandlers(testContext(t), &taskerv1.ListHandlersRequest{Namespace: ns})
		require.NoError(t, err)
		byName := map[string]*taskerv1.HandlerInfo{}
		for _, h := range resp.GetHandlers() {
			byName[h.GetHandler().GetHandler()] = h
		}
		require.Contains(t, byName, "builtin:http")
		require.True(t, byName["builtin:http"].GetBuiltin())
		require.True(t, byName["builtin:http"].GetUsedByTemplates())
		require.NotEmpty(t, byName["builtin:http"].GetWorkers())
		require.True(t, strings.HasPrefix(byName["builtin:http"].GetWorkers()[0].GetWorkerId(), "tasker-server:"))
		require.False(t, byName["double"].GetBuiltin())
		require.NotEmpty(t, byName["double"].GetWorkers())
	})
}

func waitChan(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(120 * time.Second):
		require.FailNow(t, "timed out waiting for "+what)
	}
}
