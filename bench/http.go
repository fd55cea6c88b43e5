package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/taskerhq/tasker/builtin"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// benchHTTPAllow is the --http-allow-hosts of the servers the bench
// starts: its no-op HTTP service listens on loopback.
const benchHTTPAllow = "127.0.0.1/32"

// benchBuiltins is the http built-in of an in-process bench server.
func benchBuiltins() *builtin.Registry {
	allow, err := builtin.ParseAllowList(benchHTTPAllow)
	if err != nil {
		panic(err)
	}
	reg := builtin.NewRegistry()
	if err := builtin.NewHTTP(builtin.HTTPOptions{Allow: allow}).Register(reg); err != nil {
		panic(err)
	}
	return reg
}

// noopService answers every request with {} and counts the calls of the
// final step (path /d), which tell the bench a task is about to complete.
type noopService struct {
	url    string
	finals atomic.Int64
	onD    func()
	srv    *http.Server
}

func startNoop(onD func()) (*noopService, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n := &noopService{url: "http://" + lis.Addr().String(), onD: onD}
	n.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
		if strings.HasPrefix(r.URL.Path, "/d") {
			n.finals.Add(1)
			n.onD()
		}
	})}
	go func() { _ = n.srv.Serve(lis) }()
	return n, nil
}

func (n *noopService) stop() { _ = n.srv.Close() }

// runHTTPDiamond runs diamond tasks whose steps are all http steps calling
// a no-op service in this process: the server's in-process worker claims,
// calls and reports each step; no worker connects.
func runHTTPDiamond(ctx context.Context, b *benchRun) ([]*benchResult, error) {
	if b.srv.mode == serverTarget {
		// The no-op service listens on this machine's loopback, which
		// only a server the bench starts (allowed to call it) can reach.
		return []*benchResult{{Scenario: "http_diamond", Skipped: "needs a server the bench starts (not --target)"}}, nil
	}
	n := size(b.f.tasks, defaultDiamondTasks)
	load := newBoundedLoad(b.inflight())
	noop, err := startNoop(func() { b.progress.add(1); load.release() })
	if err != nil {
		return nil, err
	}
	defer noop.stop()
	tpl := &taskerv1.TaskTemplate{
		Namespace: b.ns, Name: "http_diamond", Version: "1.0.0", Description: "tasker bench",
		LeaseDuration: durationpb.New(defaultLease),
	}
	for _, name := range diamondSteps {
		tpl.Steps = append(tpl.Steps, &taskerv1.StepTemplate{
			Name: name, Builtin: "http", DependsOn: diamondDeps[name],
			Http: &taskerv1.HttpStepConfig{Url: noop.url + "/" + name + "?task={{ .step.task_id }}", Result: map[string]string{"ok": "body.ok"}},
		})
	}
	if _, err := b.registry.RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl}); err != nil {
		return nil, fmt.Errorf("register template http_diamond: %w", err)
	}
	after, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	b.progress.begin(fmt.Sprintf("tasks, %d in flight", b.inflight()), n)
	cpu := b.startCPU()
	if err := load.run(ctx, b, "http_diamond", n); err != nil {
		return nil, err
	}
	if _, err := b.waitCompleted(ctx, after, n, &noop.finals); err != nil {
		return nil, err
	}
	cpu.stop()
	b.progress.begin("reading events", 0)
	tasks, err := b.timeline(ctx, after)
	if err != nil {
		return nil, err
	}
	r := diamondResult("http_diamond", tasks, n, b.inflight())
	cpu.stamp(r)
	return []*benchResult{r}, nil
}
