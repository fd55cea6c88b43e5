package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/worker"
)

// bundle is a running server (with its reaper) on a real database and
// clients connected to it over loopback TCP, the way workers reach Tasker.
type bundle struct {
	conn     *grpc.ClientConn
	registry taskerv1.RegistryServiceClient
	tasks    taskerv1.TaskServiceClient
	steps    taskerv1.StepServiceClient
	log      *slog.Logger
}

func setup(t *testing.T, db *storage.DB) *bundle {
	t.Helper()
	return connect(t, servertest.Start(t, db, servertest.Options{}))
}

// connect returns a bundle of clients on a running server's connection.
func connect(t *testing.T, s *servertest.Server) *bundle {
	t.Helper()
	return &bundle{
		conn:     s.Conn,
		registry: taskerv1.NewRegistryServiceClient(s.Conn),
		tasks:    taskerv1.NewTaskServiceClient(s.Conn),
		steps:    taskerv1.NewStepServiceClient(s.Conn),
		log:      slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tmpl is a template with test-speed timing: a 1s lease (the registry's
// minimum), 10ms backoff and 3 attempts unless a step overrides them.
func tmpl(namespace, name string, steps ...*taskerv1.StepTemplate) *taskerv1.TaskTemplate {
	return &taskerv1.TaskTemplate{
		Namespace: namespace,
		Name:      name,
		Version:   "1.0.0",
		RetryPolicy: &taskerv1.RetryPolicy{
			MaxAttempts:       proto.Int32(3),
			InitialBackoff:    durationpb.New(10 * time.Millisecond),
			BackoffMultiplier: proto.Float64(1),
			MaxBackoff:        durationpb.New(time.Second),
			Jitter:            proto.Float64(0),
		},
		LeaseDuration: durationpb.New(time.Second),
		Steps:         steps,
	}
}

// node is a step template; config carries the step's own name so handlers
// can check they received their config.
func node(name, handler string, dependsOn ...string) *taskerv1.StepTemplate {
	config, _ := structpb.NewStruct(map[string]any{"step": name})
	return &taskerv1.StepTemplate{Name: name, Handler: handler, DependsOn: dependsOn, Config: config}
}

func (b *bundle) register(t *testing.T, tpl *taskerv1.TaskTemplate) {
	t.Helper()
	_, err := b.registry.RegisterTaskTemplate(testContext(t), &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
	require.NoError(t, err)
}

// create starts a task of namespace/name with the correlation id corr
// (generated when empty) and returns it.
func (b *bundle) create(t *testing.T, namespace, name, corr string, taskCtx map[string]any) *taskerv1.Task {
	t.Helper()
	ctx := testContext(t)
	if corr != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-correlation-id", corr)
	}
	doc, err := structpb.NewStruct(taskCtx)
	require.NoError(t, err)
	resp, err := b.tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: namespace, Name: name, Context: doc})
	require.NoError(t, err)
	return resp.GetTask()
}

func finished(s taskerv1.TaskState) bool {
	switch s {
	case taskerv1.TaskState_TASK_STATE_COMPLETE, taskerv1.TaskState_TASK_STATE_ERROR,
		taskerv1.TaskState_TASK_STATE_CANCELLED, taskerv1.TaskState_TASK_STATE_RESOLVED_MANUALLY:
		return true
	}
	return false
}

// wait polls the task until it is finished and returns it with its steps.
func (b *bundle) wait(t *testing.T, id string) *taskerv1.Task {
	t.Helper()
	return b.waitFor(t, id, func(task *taskerv1.Task) bool { return finished(task.GetState()) })
}

// waitFor polls the task every 20ms until cond holds, for at most 20s.
func (b *bundle) waitFor(t *testing.T, id string, cond func(*taskerv1.Task) bool) *taskerv1.Task {
	t.Helper()
	ctx := testContext(t)
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := b.tasks.GetTask(ctx, &taskerv1.GetTaskRequest{Id: id})
		require.NoError(t, err)
		if cond(resp.GetTask()) {
			return resp.GetTask()
		}
		require.True(t, time.Now().Before(deadline), "task %s: condition not met in time; last seen: state %s, steps %v",
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

// stepState reads one step's state.
func (b *bundle) stepState(t *testing.T, id string) *taskerv1.Step {
	t.Helper()
	resp, err := b.steps.GetStep(testContext(t), &taskerv1.GetStepRequest{Id: id})
	require.NoError(t, err)
	return resp.GetStep()
}

// running is a worker started by start.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// stop cancels the worker's Run and returns what it returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // stop may be called again by the cleanup
		return err
	case <-time.After(30 * time.Second):
		require.FailNow(t, "worker did not stop")
		return nil
	}
}

// start runs w until the test ends (or stop).
func start(t *testing.T, w *worker.Worker) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() { require.NoError(t, r.stop(t)) })
	return r
}

// newWorker returns a worker on the bundle's connection that logs to the
// test.
func (b *bundle) newWorker(id string, opts worker.Options) *worker.Worker {
	if opts.Logger == nil {
		opts.Logger = b.log
	}
	if opts.ClaimWait == 0 {
		opts.ClaimWait = 2 * time.Second
	}
	if opts.ShutdownTimeout == 0 {
		// A failing test stops its workers quickly.
		opts.ShutdownTimeout = 2 * time.Second
	}
	return worker.New(b.conn, id, opts)
}

// calls counts handler invocations per step id and records the attempts
// seen.
type calls struct {
	mu       sync.Mutex
	byStep   map[string]int
	attempts map[string][]int
}

func newCalls() *calls {
	return &calls{byStep: map[string]int{}, attempts: map[string][]int{}}
}

func (c *calls) record(s *worker.Step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byStep[s.ID]++
	c.attempts[s.ID] = append(c.attempts[s.ID], s.Attempt)
}

// requireOnce asserts that exactly the given steps ran, each once.
func (c *calls) requireOnce(t *testing.T, stepIDs []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.byStep, len(stepIDs))
	for _, id := range stepIDs {
		require.Equal(t, 1, c.byStep[id], "step %s ran %d times", id, c.byStep[id])
	}
}

func (c *calls) attemptsOf(id string) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.attempts[id]...)
}

// errCheck is returned by handlers that received something unexpected;
// they cannot call require off the test's goroutine.
var errCheck = errors.New("check failed")
