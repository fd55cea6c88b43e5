package builtin_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/builtin"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
)

const ns = "shop"

// bundle is a server running the built-ins on a real database, with
// clients connected to it over loopback TCP.
type bundle struct {
	srv      *servertest.Server
	registry taskerv1.RegistryServiceClient
	tasks    taskerv1.TaskServiceClient
	steps    taskerv1.StepServiceClient
}

// config is what a test varies in the server's built-ins.
type config struct {
	allow string
	env   map[string]string
	// extra registers more in-process handlers.
	extra func(reg *builtin.Registry)
	addr  string
}

func start(t *testing.T, db *storage.DB, c config) *bundle {
	t.Helper()
	allow, err := builtin.ParseAllowList(c.allow)
	require.NoError(t, err)
	reg := builtin.NewRegistry()
	names := make([]string, 0, len(c.env))
	for k := range c.env {
		names = append(names, k)
	}
	h := builtin.NewHTTP(builtin.HTTPOptions{
		Allow: allow, Env: names,
		LookupEnv: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok },
	})
	require.NoError(t, h.Register(reg))
	t.Cleanup(h.CloseIdleConnections)
	if c.extra != nil {
		c.extra(reg)
	}
	log := slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := servertest.Start(t, db, servertest.Options{Addr: c.addr, Logger: log, Config: server.Config{
		Builtins: reg,
		BuiltinOptions: builtin.RunnerOptions{
			PollWait: 50 * time.Millisecond, ShutdownTimeout: 100 * time.Millisecond, MaxHeartbeat: 200 * time.Millisecond,
		},
	}})
	return &bundle{
		srv:      s,
		registry: taskerv1.NewRegistryServiceClient(s.Conn),
		tasks:    taskerv1.NewTaskServiceClient(s.Conn),
		steps:    taskerv1.NewStepServiceClient(s.Conn),
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tmpl is a template with test-speed timing: 10ms backoff (up to 10s, so
// a Retry-After is not capped), 3 attempts, and a 30s lease, renewed every
// 200ms, so that a late renewal on a loaded machine cannot turn a test into
// a lease test.
func tmpl(name string, steps ...*taskerv1.StepTemplate) *taskerv1.TaskTemplate {
	return &taskerv1.TaskTemplate{
		Namespace: ns, Name: name, Version: "1.0.0",
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts: proto.Int32(3), InitialBackoff: durationpb.New(10 * time.Millisecond),
			BackoffMultiplier: proto.Float64(1), MaxBackoff: durationpb.New(10 * time.Second), Jitter: proto.Float64(0),
		},
		LeaseDuration: durationpb.New(30 * time.Second),
		Steps:         steps,
	}
}

func httpStep(name string, c *taskerv1.HttpStepConfig, deps ...string) *taskerv1.StepTemplate {
	return &taskerv1.StepTemplate{Name: name, Builtin: "http", Http: c, DependsOn: deps}
}

func (b *bundle) register(t *testing.T, tpl *taskerv1.TaskTemplate) {
	t.Helper()
	_, err := b.registry.RegisterTaskTemplate(testContext(t), &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
	require.NoError(t, err)
}

func (b *bundle) create(t *testing.T, name string, taskCtx map[string]any) *taskerv1.Task {
	t.Helper()
	doc, err := structpb.NewStruct(taskCtx)
	require.NoError(t, err)
	resp, err := b.tasks.CreateTask(testContext(t), &taskerv1.CreateTaskRequest{Namespace: ns, Name: name, Context: doc})
	require.NoError(t, err)
	return resp.GetTask()
}

// run registers a one-template task and waits for it to finish.
func (b *bundle) run(t *testing.T, tpl *taskerv1.TaskTemplate, taskCtx map[string]any) *taskerv1.Task {
	t.Helper()
	b.register(t, tpl)
	return b.wait(t, b.create(t, tpl.GetName(), taskCtx).GetId())
}

func finished(s taskerv1.TaskState) bool {
	switch s {
	case taskerv1.TaskState_TASK_STATE_COMPLETE, taskerv1.TaskState_TASK_STATE_ERROR,
		taskerv1.TaskState_TASK_STATE_CANCELLED, taskerv1.TaskState_TASK_STATE_RESOLVED_MANUALLY:
		return true
	}
	return false
}

func (b *bundle) wait(t *testing.T, id string) *taskerv1.Task {
	t.Helper()
	return b.waitFor(t, id, func(task *taskerv1.Task) bool { return finished(task.GetState()) })
}

// waitFor polls the task every 20ms until cond holds, for at most 120s.
func (b *bundle) waitFor(t *testing.T, id string, cond func(*taskerv1.Task) bool) *taskerv1.Task {
	t.Helper()
	ctx := testContext(t)
	deadline := time.Now().Add(120 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
		require.NoError(t, err)
		if cond(resp.GetTask()) {
			return resp.GetTask()
		}
		require.True(t, time.Now().Before(deadline), "task %s: condition not met in time; state %s, steps %v",
			id, resp.GetTask().GetState(), resp.GetTask().GetStepCounts())
		<-tick.C
	}
}

// step returns the task's step called name, in full.
func (b *bundle) step(t *testing.T, task *taskerv1.Task, name string) *taskerv1.Step {
	t.Helper()
	for _, s := range task.GetSteps() {
		if s.GetName() == name {
			resp, err := b.steps.GetStep(testContext(t), &taskerv1.GetStepRequest{Id: s.GetId()})
			require.NoError(t, err)
			return resp.GetStep()
		}
	}
	require.FailNow(t, "no such step", "task %s has no step %q", task.GetId(), name)
	return nil
}

// remote is an httptest server that records its requests and answers
// each with the handler of its call number (the last one repeating).
type remote struct {
	*httptest.Server
	mu    sync.Mutex
	calls []call
}

type call struct {
	at     time.Time
	method string
	path   string
	header http.Header
	body   string
}

func newRemote(t *testing.T, answers ...http.HandlerFunc) *remote {
	t.Helper()
	r := &remote{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		buf := make([]byte, 1<<16)
		n, _ := req.Body.Read(buf)
		r.mu.Lock()
		i := len(r.calls)
		r.calls = append(r.calls, call{at: time.Now(), method: req.Method, path: req.URL.RequestURI(), header: req.Header.Clone(), body: string(buf[:n])})
		r.mu.Unlock()
		answers[min(i, len(answers)-1)](w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *remote) got() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func jsonBody(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-1")
		_, _ = w.Write([]byte(body))
	}
}

// hostPort is the allow-list entry of an httptest server.
func hostPort(r *remote) string { return r.Listener.Addr().String() }
