package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// externalWorker is a --worker-cmd: a worker program of another language
// the diamond scenario also runs, as --workers processes of command.
type externalWorker struct {
	name, command string
}

// parseWorkerCmds reads --worker-cmd NAME=COMMAND values.
func parseWorkerCmds(values []string) ([]externalWorker, error) {
	var out []externalWorker
	seen := map[string]bool{}
	for _, v := range values {
		name, command, ok := strings.Cut(v, "=")
		name, command = strings.TrimSpace(name), strings.TrimSpace(command)
		if !ok || name == "" || command == "" {
			return nil, fmt.Errorf("--worker-cmd: want NAME=COMMAND, got %q", v)
		}
		if seen[name] {
			return nil, fmt.Errorf("--worker-cmd: %s given twice", name)
		}
		seen[name] = true
		out = append(out, externalWorker{name: name, command: command})
	}
	return out, nil
}

// externalDiamond runs n diamond tasks served by --workers processes of
// w's command instead of the Go SDK workers. Each process is started with
// `sh -c COMMAND` and finds what to serve in its environment:
// TASKER_ADDR, TASKER_TOKEN (when the server wants one),
// TASKER_BENCH_NAMESPACE and TASKER_BENCH_HANDLER (the handler to serve,
// returning at once), TASKER_BENCH_CONCURRENCY (--concurrency) and
// TASKER_BENCH_WORKER_ID. A task's slot frees when its task.completed
// event arrives on a Subscribe stream, since the bench does not see the
// other process's handler run.
func externalDiamond(ctx context.Context, b *benchRun, w externalWorker, n int, stderr io.Writer) (*benchResult, error) {
	tpl, err := b.register(ctx, "diamond_"+sanitize(w.name), defaultLease, diamondSteps, diamondDeps)
	if err != nil {
		return nil, err
	}
	after, err := b.head(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := b.events.Subscribe(sctx, &taskerv1.SubscribeRequest{
		Filter: &taskerv1.EventFilter{Namespace: b.ns, TemplateName: tpl, Types: []string{"task.completed"}},
		Start:  taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: after,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to completions: %w", err)
	}
	load := newBoundedLoad(b.inflight())
	var finals atomic.Int64
	followed := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				followed <- err
				return
			}
			if msg.GetEvent() != nil {
				finals.Add(1)
				b.progress.add(4)
				load.release()
			}
		}
	}()
	stop, err := startExternal(ctx, b, w, stderr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stop() }()
	// Start-up (node's or Python's, and their imports) is not measured.
	b.progress.begin(fmt.Sprintf("waiting for %d %s workers", b.f.workers, w.name), 0)
	if err := waitWorkers(ctx, b, "bench-"+sanitize(w.name)+"-"); err != nil {
		return nil, err
	}
	b.progress.begin(fmt.Sprintf("steps on %s workers, %d tasks in flight", w.name, b.inflight()), 4*n)
	cpu := b.startCPU()
	if err := load.run(ctx, b, tpl, n); err != nil {
		return nil, err
	}
	if _, err := b.waitCompleted(ctx, after, n, &finals); err != nil {
		select {
		case ferr := <-followed:
			err = fmt.Errorf("%w (completion stream: %w)", err, ferr)
		default:
		}
		return nil, err
	}
	cpu.stop()
	if err := stop(); err != nil {
		return nil, err
	}
	b.progress.begin("reading events", 0)
	tasks, err := b.timeline(ctx, after)
	if err != nil {
		return nil, err
	}
	r := diamondResult("diamond", tasks, n, b.inflight())
	r.Variant = w.name + " workers"
	r.Params["worker_cmd"] = w.command
	cpu.stamp(r)
	return r, nil
}

// startExternal starts --workers processes of w's command; stop sends
// them SIGTERM and waits, for at most 30 seconds, for a clean exit.
func startExternal(ctx context.Context, b *benchRun, w externalWorker, stderr io.Writer) (stop func() error, err error) {
	var cmds []*exec.Cmd
	var out lockedLines
	out.w, out.prefix = stderr, w.name+" worker: "
	for i := range b.f.workers {
		// exec, so the signal reaches the worker rather than the shell.
		cmd := exec.Command("sh", "-c", "exec "+w.command) //nolint:noctx // stopped with SIGTERM below
		cmd.WaitDelay = 5 * time.Second
		cmd.Env = append(os.Environ(),
			"TASKER_ADDR="+b.srv.addr,
			"TASKER_BENCH_NAMESPACE="+b.ns,
			"TASKER_BENCH_HANDLER="+benchHandler,
			"TASKER_BENCH_CONCURRENCY="+strconv.Itoa(b.f.concurrency),
			fmt.Sprintf("TASKER_BENCH_WORKER_ID=bench-%s-%d", sanitize(w.name), i))
		if b.srv.workerToken != "" {
			cmd.Env = append(cmd.Env, "TASKER_TOKEN="+b.srv.workerToken)
		}
		cmd.Stdout, cmd.Stderr = io.Discard, &out
		if err := cmd.Start(); err != nil {
			for _, c := range cmds {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
			return nil, fmt.Errorf("--worker-cmd %s: %w", w.name, err)
		}
		cmds = append(cmds, cmd)
	}
	var once sync.Once
	var stopErr error
	return func() error {
		once.Do(func() {
			var errs []error
			for _, c := range cmds {
				_ = c.Process.Signal(syscall.SIGTERM)
			}
			for _, c := range cmds {
				var werr error
				done := make(chan struct{})
				go func() { werr = c.Wait(); close(done) }()
				select {
				case <-done:
					if werr != nil && ctx.Err() == nil {
						errs = append(errs, fmt.Errorf("%s worker: %w", w.name, werr))
					}
				case <-time.After(30 * time.Second):
					_ = c.Process.Kill()
					errs = append(errs, fmt.Errorf("%s worker did not stop within 30s of SIGTERM", w.name))
					<-done
				}
			}
			stopErr = errors.Join(errs...)
		})
		return stopErr
	}, nil
}

// waitWorkers waits until --workers workers whose ids start with prefix
// serve the bench handler, as ListHandlers tells.
func waitWorkers(ctx context.Context, b *benchRun, prefix string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := b.registry.ListHandlers(ctx, &taskerv1.ListHandlersRequest{Namespace: b.ns})
		if err != nil {
			return fmt.Errorf("list handlers: %w", err)
		}
		ready := 0
		for _, h := range resp.GetHandlers() {
			if h.GetHandler().GetHandler() != benchHandler {
				continue
			}
			for _, wi := range h.GetWorkers() {
				if strings.HasPrefix(wi.GetWorkerId(), prefix) {
					ready++
				}
			}
		}
		if ready >= b.f.workers {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d workers %s* serve %s: %w", ready, b.f.workers, prefix, benchHandler, ctx.Err())
		case <-tick.C:
		}
	}
}

// sanitize makes name usable in a template name and a worker id.
func sanitize(name string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

// lockedLines copies what worker processes write to w, prefixed, one
// write at a time.
type lockedLines struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (l *lockedLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := io.WriteString(l.w, l.prefix+string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
