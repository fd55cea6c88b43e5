package polyglot_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

const (
	namespace = "polyglot"
	template  = "relay"
	// tasks is how many tasks must complete.
	tasks = 50
	// python is the interpreter Debian's python3-grpcio and
	// python3-protobuf are installed for.
	python = "/usr/bin/python3"
)

// A language serves one handler of the template; its steps' names start
// with short.
type language struct {
	name, short, handler string
}

var (
	golang     = language{"go", "g", "go_mix"}
	pythonLang = language{"python", "p", "py_mix"}
	typescript = language{"typescript", "t", "ts_mix"}
)

// stepDef is one step of the template: its handler's language, parents and
// the number its handler adds.
type stepDef struct {
	name    string
	lang    language
	parents []string
	add     int
}

// relay is the template's DAG for langs (Go first): a Go root; a step per
// other language on it; a step per other language on each other
// language's first step; a Go join of the last layer. With Go, Python and
// TypeScript, results cross every boundary in both directions:
//
//	g1 → p1 → t2 → g2
//	g1 → t1 → p2 → g2
func relay(langs []language) []stepDef {
	add := 0
	next := func() int { add++; return add }
	steps := []stepDef{{name: "g1", lang: golang, add: next()}}
	var layer1, last []string
	for _, l := range langs[1:] {
		name := l.short + "1"
		steps = append(steps, stepDef{name: name, lang: l, parents: []string{"g1"}, add: next()})
		layer1 = append(layer1, name)
	}
	for _, l := range langs[1:] {
		var parents []string
		for _, p := range layer1 {
			if p != l.short+"1" {
				parents = append(parents, p)
			}
		}
		if len(parents) == 0 {
			continue
		}
		name := l.short + "2"
		steps = append(steps, stepDef{name: name, lang: l, parents: parents, add: next()})
		last = append(last, name)
	}
	if len(last) == 0 {
		last = layer1
	}
	return append(steps, stepDef{name: "g2", lang: golang, parents: last, add: next()})
}

// expected computes every step's value for a seed, as the handlers do:
// seed + add + the parents' values.
func expected(steps []stepDef, seed int) map[string]int {
	values := map[string]int{}
	for _, s := range steps {
		v := seed + s.add
		for _, p := range s.parents {
			v += values[p]
		}
		values[s.name] = v
	}
	return values
}

// TestPolyglot runs the relay template's steps on a Go worker (the Go
// SDK), a Python worker (tasker_client) and a TypeScript worker
// (@taskerhq/client) against one server: 50 tasks complete with results
// that crossed every language boundary; a CancelTask reaches the Python
// and TypeScript handlers holding a task's steps as cancellation; and a
// subscriber in each language sees that task's events, and one completed
// task's, exactly as ListEvents lists them.
func TestPolyglot(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	langs := available(t, root)
	storagetest.Each(t, func(t *testing.T, db *storage.DB) {
		runPolyglot(t, root, langs, db)
	})
}

// available returns the languages to test: Go, Python, and TypeScript
// once its client is in the tree. A missing runtime or unbuilt client
// skips the test, or fails it when CI is "true".
func available(t *testing.T, root string) []language {
	var missing []string
	if _, err := os.Stat(python); err != nil {
		missing = append(missing, python+" (Debian's python3)")
	} else if out, err := exec.Command(python, "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil { //nolint:noctx // a quick local check
		missing = append(missing, "python3-grpcio and python3-protobuf ("+string(bytes.TrimSpace(out))+")")
	}
	langs := []language{golang, pythonLang}
	if _, err := os.Stat(filepath.Join(root, "clients", "typescript", "package.json")); err == nil {
		langs = append(langs, typescript)
		if _, err := exec.LookPath("node"); err != nil {
			missing = append(missing, "node (Node.js 20 or later)")
		}
		if _, err := os.Stat(filepath.Join(root, "clients", "typescript", "dist", "index.js")); err != nil {
			missing = append(missing, "clients/typescript/dist (make test-polyglot builds it)")
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("polyglot test needs %v (`make test-polyglot` installs the Debian packages and builds clients/typescript; Node.js is a prerequisite)", missing)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: required)")
		}
		t.Skip("SKIPPED: " + msg)
	}
	return langs
}

func runPolyglot(t *testing.T, root string, langs []language, db *storage.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	began := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	srv := servertest.Start(t, db, servertest.Options{})
	registry := taskerv1.NewRegistryServiceClient(srv.Conn)
	tasksClient := taskerv1.NewTaskServiceClient(srv.Conn)
	stepsClient := taskerv1.NewStepServiceClient(srv.Conn)
	events := taskerv1.NewEventServiceClient(srv.Conn)

	steps := relay(langs)
	tpl := &taskerv1.TaskTemplate{
		Namespace: namespace, Name: template, Version: "1.0.0",
		// A failure is final, so a broken handler shows at once.
		RetryPolicy:   &taskerv1.RetryPolicy{MaxAttempts: new(int32(1))},
		LeaseDuration: durationpb.New(30 * time.Second),
	}
	for _, s := range steps {
		cfg, err := structpb.NewStruct(map[string]any{"add": s.add})
		require.NoError(t, err)
		tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{Name: s.name, Handler: s.lang.handler, DependsOn: s.parents, Config: cfg})
	}
	_, err := registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
	require.NoError(t, err)

	// The workers: Go in this process, the others as subprocesses.
	w := worker.New(srv.Conn, "polyglot-go", worker.Options{
		Concurrency: 8, HeartbeatInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(servertest.Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	w.MustRegister(namespace, golang.handler, mix)
	wctx, stopGo := context.WithCancel(context.Background())
	goDone := make(chan error, 1)
	go func() { goDone <- w.Run(wctx) }()
	defer func() {
		stopGo()
		require.NoError(t, <-goDone)
	}()
	workers := map[string]*proc{}
	for _, l := range langs[1:] {
		workers[l.name] = start(t, root, l, "worker", "--addr", srv.Addr, "--id", "polyglot-"+l.name)
	}

	phase("workers started")
	// The held task: its Python and TypeScript steps wait for their
	// cancellation, then report it.
	hold := create(ctx, t, tasksClient, map[string]any{"seed": 0, "hold": true})
	var ids []string
	seeds := map[string]int{}
	for i := range tasks {
		id := create(ctx, t, tasksClient, map[string]any{"seed": i + 1})
		ids = append(ids, id)
		seeds[id] = i + 1
	}

	// A subscriber per language follows the held task and the first task
	// from the beginning until each finishes.
	watched := []string{hold, ids[0]}
	goEvents := make(chan []*taskerv1.Event, 1)
	go func() { goEvents <- subscribeGo(ctx, t, events, watched) }()
	subscribers := map[string]*proc{}
	for _, l := range langs[1:] {
		subscribers[l.name] = start(t, root, l, append([]string{"subscribe", "--addr", srv.Addr}, watched...)...)
	}

	// Cancellation reaches every held handler.
	held := map[string]bool{}
	for _, s := range steps {
		if s.lang != golang && slices.Equal(s.parents, []string{"g1"}) {
			held[s.name] = true
		}
	}
	for _, l := range langs[1:] {
		workers[l.name].await(ctx, t, "holding", func(m line) bool { return m.str("task") == hold })
	}
	phase("held steps running")
	_, err = tasksClient.CancelTask(ctx, &taskerv1.CancelTaskRequest{Id: hold, Reason: "polyglot test"})
	require.NoError(t, err)
	for _, l := range langs[1:] {
		m := workers[l.name].await(ctx, t, "cancelled", func(m line) bool { return m.str("task") == hold })
		assert.Equal(t, "CANCELLED", m.str("reason"), "%s handler of %s: cancellation reason", l.name, m.str("step"))
		assert.True(t, held[m.str("step")], "%s: cancelled step %s", l.name, m.str("step"))
	}

	phase("cancellation reached the handlers")
	// Every task completes, with values that crossed every boundary.
	waitCompleted(ctx, t, events, ids)
	for _, id := range ids {
		checkResults(ctx, t, stepsClient, steps, id, seeds[id])
	}

	phase(fmt.Sprintf("%d tasks completed", tasks))
	// Every subscriber saw what ListEvents lists.
	for _, id := range watched {
		want := listEvents(ctx, t, events, id)
		require.NotEmpty(t, want)
		var got []*taskerv1.Event
		select {
		case all := <-goEvents:
			goEvents <- all
			for _, ev := range all {
				if ev.GetTaskId() == id {
					got = append(got, ev)
				}
			}
		case <-ctx.Done():
			t.Fatalf("go subscriber: %v", ctx.Err())
		}
		assert.Equal(t, summarize(want), summarize(got), "go subscriber, task %s", id)
		for _, l := range langs[1:] {
			sub := subscribers[l.name]
			sub.await(ctx, t, "finished", func(m line) bool { return m.str("task") == id })
			var lines []line
			for _, m := range sub.lines() {
				if m.str("kind") == "event" && m.str("task") == id {
					lines = append(lines, m)
				}
			}
			assert.Equal(t, summarize(want), summarizeLines(lines), "%s subscriber, task %s", l.name, id)
		}
	}
	phase("subscribers agree")
	for _, l := range langs[1:] {
		subscribers[l.name].wait(ctx, t)
		workers[l.name].stop(ctx, t)
	}
	phase("workers stopped")
}

// mix is the Go handler: seed + add + the parents' values.
func mix(ctx context.Context, s *worker.Step) (map[string]any, error) {
	seed, _ := s.Context["seed"].(float64)
	add, _ := s.Config["add"].(float64)
	value := seed + add
	parents := map[string]any{}
	for _, name := range s.ParentNames() {
		p, err := s.Parent(ctx, name)
		if err != nil {
			return nil, err
		}
		v, ok := p["value"].(float64)
		if !ok {
			return nil, worker.NonRetryable(fmt.Errorf("parent %s has no value: %v", name, p))
		}
		value += v
		parents[name] = map[string]any{"lang": p["lang"], "value": v}
	}
	return map[string]any{"lang": "go", "step": s.Name, "value": value, "parents": parents}, nil
}

func create(ctx context.Context, t *testing.T, tasks taskerv1.TaskServiceClient, context map[string]any) string {
	t.Helper()
	c, err := structpb.NewStruct(context)
	require.NoError(t, err)
	resp, err := tasks.CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: namespace, Name: template, Context: c})
	require.NoError(t, err)
	return resp.GetTask().GetId()
}

// waitCompleted follows the namespace's final task events until every task
// of ids completed; a failed one fails the test with its steps' errors.
func waitCompleted(ctx context.Context, t *testing.T, events taskerv1.EventServiceClient, ids []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	stream, err := events.Subscribe(ctx, &taskerv1.SubscribeRequest{
		Filter: &taskerv1.EventFilter{Namespace: namespace, Types: []string{"task.completed", "task.failed", "task.cancelled"}},
		Start:  taskerv1.StartPosition_START_POSITION_BEGINNING,
	})
	require.NoError(t, err)
	done := 0
	for done < len(want) {
		msg, err := stream.Recv()
		require.NoError(t, err, "%d of %d tasks completed", done, len(want))
		ev := msg.GetEvent()
		if ev == nil || !want[ev.GetTaskId()] {
			continue
		}
		require.Equal(t, "task.completed", ev.GetType(), "task %s: %v", ev.GetTaskId(), ev.GetPayload().AsMap())
		done++
	}
}

// checkResults compares every step's result of a task with what the
// handlers must have computed, and checks that each step saw its parents'
// languages and values.
func checkResults(ctx context.Context, t *testing.T, steps taskerv1.StepServiceClient, defs []stepDef, id string, seed int) {
	t.Helper()
	resp, err := steps.ListSteps(ctx, &taskerv1.ListStepsRequest{TaskId: id, View: taskerv1.StepView_STEP_VIEW_FULL})
	require.NoError(t, err)
	got := map[string]map[string]any{}
	for _, s := range resp.GetSteps() {
		got[s.GetName()] = s.GetResult().AsMap()
	}
	values := expected(defs, seed)
	for _, s := range defs {
		r := got[s.name]
		require.NotNil(t, r, "task %s: step %s has no result", id, s.name)
		assert.Equal(t, s.lang.name, r["lang"], "task %s step %s: language", id, s.name)
		assert.InDelta(t, float64(values[s.name]), r["value"], 0, "task %s step %s: value", id, s.name)
		parents := map[string]any{}
		for _, p := range s.parents {
			parents[p] = map[string]any{"lang": lookup(defs, p).lang.name, "value": float64(values[p])}
		}
		assert.Equal(t, parents, r["parents"], "task %s step %s: what it saw of its parents", id, s.name)
	}
}

func lookup(defs []stepDef, name string) stepDef {
	for _, s := range defs {
		if s.name == name {
			return s
		}
	}
	panic("no step " + name)
}

// subscribeGo follows each task's events from the beginning until it
// finishes, one task after the other.
func subscribeGo(ctx context.Context, t *testing.T, events taskerv1.EventServiceClient, ids []string) []*taskerv1.Event {
	var all []*taskerv1.Event
	for _, id := range ids {
		stream, err := events.Subscribe(ctx, &taskerv1.SubscribeRequest{
			Filter: &taskerv1.EventFilter{TaskId: id}, Start: taskerv1.StartPosition_START_POSITION_BEGINNING, UntilTaskFinished: true,
		})
		if err != nil {
			t.Errorf("go subscriber: %v", err)
			return all
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("go subscriber, task %s: %v", id, err)
				return all
			}
			if ev := msg.GetEvent(); ev != nil {
				all = append(all, ev)
			}
		}
	}
	return all
}

func listEvents(ctx context.Context, t *testing.T, events taskerv1.EventServiceClient, id string) []*taskerv1.Event {
	t.Helper()
	var all []*taskerv1.Event
	req := &taskerv1.ListEventsRequest{Filter: &taskerv1.EventFilter{TaskId: id}, PageSize: 500}
	for {
		resp, err := events.ListEvents(ctx, req)
		require.NoError(t, err)
		all = append(all, resp.GetEvents()...)
		if resp.GetNextPageToken() == "" {
			return all
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// eventSummary is what subscribers must agree on: sequence, type, step
// and payload.
type eventSummary struct {
	Sequence int64
	Type     string
	Step     string
	Payload  string
}

func summarize(evs []*taskerv1.Event) []eventSummary {
	out := make([]eventSummary, 0, len(evs))
	for _, ev := range evs {
		out = append(out, eventSummary{ev.GetSequence(), ev.GetType(), ev.GetStepId(), canonical(ev.GetPayload().AsMap())})
	}
	return out
}

func summarizeLines(lines []line) []eventSummary {
	out := make([]eventSummary, 0, len(lines))
	for _, m := range lines {
		seq, _ := m["sequence"].(float64)
		payload, _ := m["payload"].(map[string]any)
		if payload == nil {
			payload = map[string]any{}
		}
		out = append(out, eventSummary{int64(seq), m.str("type"), m.str("step"), canonical(payload)})
	}
	return out
}

// canonical is JSON with sorted keys and every number a float64, as a
// Struct holds it.
func canonical(v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	var back any
	if err := json.Unmarshal(b, &back); err != nil {
		return err.Error()
	}
	b, _ = json.Marshal(back)
	return string(b)
}

// line is one JSON line a subprocess printed.
type line map[string]any

func (m line) str(key string) string {
	s, _ := m[key].(string)
	return s
}

// proc is a Python or TypeScript subprocess whose stdout is JSON lines.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // once exited is closed

	mu      sync.Mutex
	all     []line
	changed chan struct{} // closed and replaced on every new line
	stderr  bytes.Buffer
}

// start runs polyglot.py or polyglot.mjs in mode with args.
func start(t *testing.T, root string, l language, args ...string) *proc {
	t.Helper()
	var cmd *exec.Cmd
	switch l {
	case pythonLang:
		cmd = exec.Command(python, append([]string{"polyglot.py"}, args...)...) //nolint:noctx // stopped with SIGTERM, see stop
		cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "clients", "python")+":"+filepath.Join(root, "gen", "python"),
			"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	case typescript:
		cmd = exec.Command("node", append([]string{"polyglot.mjs"}, args...)...) //nolint:noctx // stopped with SIGTERM, see stop
	default:
		t.Fatalf("no subprocess for %s", l.name)
	}
	p := &proc{name: l.name + " " + args[0], cmd: cmd, exited: make(chan struct{}), changed: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), p.name)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var m line
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = line{"kind": "garbage", "text": sc.Text()}
			}
			p.mu.Lock()
			p.all = append(p.all, m)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s: exit %v; stderr:\n%s", p.name, p.err, p.stderr.String())
			p.mu.Unlock()
		}
	})
	return p
}

func (p *proc) lines() []line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.all)
}

// await returns the first line of kind that match accepts, waiting for it
// until ctx ends or the process exits.
func (p *proc) await(ctx context.Context, t *testing.T, kind string, match func(line) bool) line {
	t.Helper()
	for seen := 0; ; {
		p.mu.Lock()
		lines, changed := p.all[seen:], p.changed
		p.mu.Unlock()
		for _, m := range lines {
			if m.str("kind") == kind && match(m) {
				return m
			}
		}
		seen += len(lines)
		select {
		case <-changed:
		case <-p.exited:
			if n := len(p.lines()); n > seen {
				continue
			}
			t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, kind)
		case <-ctx.Done():
			t.Fatalf("%s: no %q line: %v", p.name, kind, ctx.Err())
		}
	}
}

// wait waits for the process to exit by itself and requires success.
func (p *proc) wait(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		require.NoError(t, p.err, "%s", p.name)
	case <-ctx.Done():
		t.Fatalf("%s did not exit: %v", p.name, ctx.Err())
	}
}

// stop asks a worker to shut down gracefully and requires a clean exit.
func (p *proc) stop(ctx context.Context, t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM), p.name)
	p.wait(ctx, t)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}
