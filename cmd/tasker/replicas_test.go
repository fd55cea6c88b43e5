package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	"github.com/taskerhq/tasker/ent/task"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/worker"
)

// buildBinary builds the tasker binary once for the process tests.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tasker-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tasker")
	out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

type replica struct {
	cmd  *exec.Cmd
	addr string
	// exited is closed once the process has exited.
	exited chan struct{}
}

// startReplica runs `tasker serve` on database url and returns once it
// serves, with the address it listens on (read from its "serving" log line).
func startReplica(t *testing.T, bin, url string) *replica {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), bin, "serve", "--database", url, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	r := &replica{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg      string `json:"msg"`
				GRPCAddr string `json:"grpc_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				addr <- line.GRPCAddr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-r.exited
		}
	})
	select {
	case r.addr = <-addr:
	case <-r.exited:
		t.Fatal("replica exited before serving")
	case <-time.After(60 * time.Second):
		t.Fatal("replica did not start serving")
	}
	return r
}

func dialReplica(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestReplicasSurviveSIGKILL runs two server processes on one PostgreSQL
// database with a worker on each, kills one with SIGKILL mid-run, and checks
// that every task still completes through the other, that no step was
// completed twice, and that the event log has no gap.
func TestReplicasSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	require.NoError(t, err)
	url := storagetest.PostgresURL(t)
	a, b := startReplica(t, bin, url), startReplica(t, bin, url)
	connA, connB := dialReplica(t, a.addr), dialReplica(t, b.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	tpl := &taskerv1.TaskTemplate{
		Namespace: "e2e", Name: "diamond", Version: "1.0.0",
		RetryPolicy:   &taskerv1.RetryPolicy{InitialBackoff: durationpb.New(10 * time.Millisecond)},
		LeaseDuration: durationpb.New(time.Second),
		Steps: []*taskerv1.StepTemplate{
			{Name: "a", Handler: "work"},
			{Name: "b", Handler: "work", DependsOn: []string{"a"}},
			{Name: "c", Handler: "work", DependsOn: []string{"a"}},
			{Name: "d", Handler: "work", DependsOn: []string{"b", "c"}},
		},
	}
	_, err = taskerv1.NewRegistryServiceClient(connA).RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: tpl})
	require.NoError(t, err)

	var mu sync.Mutex
	runs := 0
	handler := func(_ context.Context, s *worker.Step) (map[string]any, error) {
		mu.Lock()
		runs++
		mu.Unlock()
		return map[string]any{"step": s.Name}, nil
	}
	quiet := slog.New(slog.DiscardHandler)
	workerCtx, stopWorkers := context.WithCancel(ctx)
	var workers sync.WaitGroup
	for i, conn := range []*grpc.ClientConn{connA, connB} {
		w := worker.New(conn, fmt.Sprintf("worker-%d", i), worker.Options{
			Concurrency: 8, ClaimWait: 2 * time.Second, ShutdownTimeout: time.Second, Logger: quiet,
		})
		w.MustRegister("e2e", "work", handler)
		workers.Go(func() { _ = w.Run(workerCtx) })
	}
	defer func() { stopWorkers(); workers.Wait() }()

	const n = 500
	clients := []taskerv1.TaskServiceClient{taskerv1.NewTaskServiceClient(connA), taskerv1.NewTaskServiceClient(connB)}
	for i := range n {
		c, err := structpb.NewStruct(map[string]any{"i": i})
		require.NoError(t, err)
		_, err = clients[i%2].CreateTask(ctx, &taskerv1.CreateTaskRequest{Namespace: "e2e", Name: "diamond", Context: c})
		require.NoError(t, err)
	}

	db, err := storage.Open(ctx, url, storage.Options{})
	require.NoError(t, err)
	defer db.Close()
	completed := func() int {
		k, err := db.Reader.Task.Query().Where(task.StateEQ(task.StateComplete)).Count(ctx)
		require.NoError(t, err)
		return k
	}
	require.Eventually(t, func() bool { return completed() >= n/4 }, 2*time.Minute, 20*time.Millisecond)
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGKILL))
	<-b.exited
	require.Eventually(t, func() bool { return completed() == n }, 2*time.Minute, 50*time.Millisecond,
		"every task completes through the surviving replica")

	// No step completed twice: one transition into complete per step.
	var rows []struct {
		StepID string `json:"step_id"`
		Count  int    `json:"count"`
	}
	require.NoError(t, db.Reader.StepTransition.Query().Where(steptransition.ToState(string(step.StateComplete))).
		GroupBy(steptransition.FieldStepID).Aggregate(ent.Count()).Scan(ctx, &rows))
	require.Len(t, rows, 4*n)
	for _, r := range rows {
		require.Equal(t, 1, r.Count, "step %s completed more than once", r.StepID)
	}

	// The event log numbers every event, densely, once the sequencer (on
	// the survivor) has caught up.
	require.Eventually(t, func() bool {
		k, err := db.Reader.Event.Query().Where(event.SequenceIsNil()).Count(ctx)
		require.NoError(t, err)
		return k == 0
	}, time.Minute, 20*time.Millisecond)
	total, err := db.Reader.Event.Query().Count(ctx)
	require.NoError(t, err)
	last, err := db.Reader.Event.Query().Order(event.BySequence()).Select(event.FieldSequence).All(ctx)
	require.NoError(t, err)
	for i, ev := range last {
		require.Equal(t, int64(i+1), *ev.Sequence, "the log has no gap")
	}
	require.Len(t, last, total)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, runs, 4*n, "every step ran; steps held by the killed replica's worker ran again")
}
