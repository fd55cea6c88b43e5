package chaos_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskerhq/tasker/backoff"
	"github.com/taskerhq/tasker/ent"
	"github.com/taskerhq/tasker/ent/event"
	"github.com/taskerhq/tasker/ent/step"
	"github.com/taskerhq/tasker/ent/steptransition"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/worker"
)

// size is how big a scenario runs: short in `make test`, the full
// sizes under TASKER_CHAOS=full (`make chaos`).
type size struct {
	tasks int // diamond tasks created
	kills int // faults injected
}

func sizes() size {
	if os.Getenv("TASKER_CHAOS") == "full" {
		return size{tasks: 500, kills: 3}
	}
	return size{tasks: 120, kills: 2}
}

// seed makes a run's random fault points reproducible: TASKER_CHAOS_SEED
// replays a run whose seed a failure logged.
func seed(t *testing.T) *rand.Rand {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("TASKER_CHAOS_SEED"); v != "" {
		var err error
		s, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "TASKER_CHAOS_SEED")
	}
	t.Logf("seed %d (TASKER_CHAOS_SEED=%d replays it)", s, s)
	return rand.New(rand.NewPCG(s, s))
}

// buildBinary builds the tasker binary once for the package.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tasker-chaos-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tasker")
	out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "../cmd/tasker").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// freeAddr returns a loopback address nothing listens on now, so a server
// can be restarted on the address its clients dial.
func freeAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// server is one `tasker serve` process.
type server struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
}

// startServer runs `tasker serve` on database url at addr and returns once
// it serves (its "serving" log line).
func startServer(t *testing.T, url, addr string) *server {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	args := []string{"serve", "--database", url, "--grpc-addr", addr, "--admin-addr", "", "--shutdown-timeout", "2s"}
	cmd := exec.CommandContext(context.Background(), bin, args...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &server{cmd: cmd, addr: addr, exited: make(chan struct{})}
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			var line struct {
				Msg string `json:"msg"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				once.Do(func() { close(serving) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop() })
	select {
	case <-serving:
	case <-s.exited:
		t.Fatalf("tasker serve %v exited before serving", args)
	case <-time.After(60 * time.Second):
		t.Fatal("tasker serve did not start serving within 60s")
	}
	return s
}

// kill ends the process with SIGKILL: no drain, no goodbye.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop ends the process with SIGTERM and waits, killing it after 20s.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.kill()
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// diamond is the template every scenario runs: a → (b, c) → d, with a
// short lease so steps of a dead worker or server run again quickly, and
// enough attempts that repeated faults never exhaust them. Task creation
// is idempotent by the caller's key, so a CreateTask whose answer was lost
// can be sent again.
var diamond = &taskerv1.TaskTemplate{
	Namespace: "chaos", Name: "diamond", Version: "1.0.0",
	IdentityStrategy: taskerv1.IdentityStrategy_IDENTITY_STRATEGY_CALLER_KEY,
	RetryPolicy: &taskerv1.RetryPolicy{
		MaxAttempts:    ptr(int32(20)),
		InitialBackoff: durationpb.New(10 * time.Millisecond),
		MaxBackoff:     durationpb.New(200 * time.Millisecond),
	},
	LeaseDuration: durationpb.New(time.Second),
	Steps: []*taskerv1.StepTemplate{
		{Name: "a", Handler: "work"},
		{Name: "b", Handler: "work", DependsOn: []string{"a"}},
		{Name: "c", Handler: "work", DependsOn: []string{"a"}},
		{Name: "d", Handler: "work", DependsOn: []string{"b", "c"}},
	},
}

func ptr[T any](v T) *T { return &v }

// retry runs call until it succeeds, a non-transient error comes back, or
// ctx ends: the way a client rides out a server restart or an outage.
func retry[T any](ctx context.Context, call func(ctx context.Context, attempt int) (T, error)) (T, error) {
	wait := backoff.New(10*time.Millisecond, 500*time.Millisecond)
	for attempt := 0; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := call(callCtx, attempt)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return v, nil
		case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Aborted, codes.ResourceExhausted:
		default:
			return v, err
		}
		if ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait.Next()):
		}
	}
}

// run is one scenario's traffic: the creator, the workers and the follower,
// over the connections given, and what they saw.
type run struct {
	t     *testing.T
	ctx   context.Context
	conns []*grpc.ClientConn
	n     int

	mu       sync.Mutex
	acked    map[string]string // idempotency key → task id, for every acknowledged CreateTask
	runs     map[string]int    // step id → handler runs
	seen     []int64           // sequences the follower received, in order
	problems []string          // what the follower found wrong
	resumes  int               // follower reconnections

	created chan struct{} // closed when every task is acknowledged
	stop    func()        // stops the workers and the follower
	done    sync.WaitGroup
}

// start registers the template and starts the creator, a worker per
// connection and the follower.
func start(t *testing.T, ctx context.Context, n int, conns ...*grpc.ClientConn) *run {
	t.Helper()
	r := &run{
		t: t, ctx: ctx, conns: conns, n: n,
		acked: map[string]string{}, runs: map[string]int{}, created: make(chan struct{}),
	}
	_, err := retry(ctx, func(ctx context.Context, attempt int) (*taskerv1.RegisterTaskTemplateResponse, error) {
		return taskerv1.NewRegistryServiceClient(conns[attempt%len(conns)]).RegisterTaskTemplate(ctx, &taskerv1.RegisterTaskTemplateRequest{Template: diamond})
	})
	require.NoError(t, err)

	trafficCtx, stop := context.WithCancel(ctx)
	r.stop = func() { stop(); r.done.Wait() }
	t.Cleanup(r.stop)
	quiet := slog.New(slog.DiscardHandler)
	for i, conn := range conns {
		w := worker.New(conn, fmt.Sprintf("worker-%d", i), worker.Options{
			Concurrency: 8, ClaimWait: time.Second, ShutdownTimeout: time.Second, Logger: quiet,
		})
		w.MustRegister("chaos", "work", func(_ context.Context, s *worker.Step) (map[string]any, error) {
			r.mu.Lock()
			r.runs[s.ID]++
			r.mu.Unlock()
			return map[string]any{"step": s.Name}, nil
		})
		r.done.Go(func() { _ = w.Run(trafficCtx) })
	}
	r.done.Go(func() { r.follow(trafficCtx) })
	r.done.Go(func() { r.create(trafficCtx) })
	return r
}

// create creates the tasks one after the other, each with an idempotency
// key it keeps sending until the server acknowledges it.
func (r *run) create(ctx context.Context) {
	defer close(r.created)
	for i := range r.n {
		key := fmt.Sprintf("task-%04d", i)
		doc, _ := structpb.NewStruct(map[string]any{"i": i})
		// A replica that does not answer is skipped on the next attempt.
		resp, err := retry(ctx, func(ctx context.Context, attempt int) (*taskerv1.CreateTaskResponse, error) {
			return taskerv1.NewTaskServiceClient(r.conns[(i+attempt)%len(r.conns)]).CreateTask(ctx, &taskerv1.CreateTaskRequest{
				Namespace: "chaos", Name: "diamond", Context: doc, IdempotencyKey: key,
			})
		})
		if err != nil {
			if ctx.Err() == nil {
				r.problem("CreateTask %s: %v", key, err)
			}
			return
		}
		r.mu.Lock()
		r.acked[key] = resp.GetTask().GetId()
		r.mu.Unlock()
	}
}

// follow subscribes from the beginning and, whenever the stream breaks,
// resumes after the last sequence it received. Every event must be the
// next sequence: one missing or repeated is a problem. It follows the last
// connection, the replica scenarios kill, and tries the others while that
// one does not answer.
func (r *run) follow(ctx context.Context) {
	var last int64
	tries := 0
	for ctx.Err() == nil {
		conn := r.conns[(len(r.conns)-1+tries)%len(r.conns)]
		tries++
		req := &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_BEGINNING}
		if last > 0 {
			req = &taskerv1.SubscribeRequest{Start: taskerv1.StartPosition_START_POSITION_AFTER_SEQUENCE, AfterSequence: last}
		}
		stream, err := taskerv1.NewEventServiceClient(conn).Subscribe(ctx, req)
		for err == nil {
			var msg *taskerv1.SubscribeResponse
			msg, err = stream.Recv()
			if ev := msg.GetEvent(); ev != nil {
				if ev.GetSequence() != last+1 {
					r.problem("stream: event %d after %d", ev.GetSequence(), last)
				}
				last = ev.GetSequence()
				tries = 0
				r.mu.Lock()
				r.seen = append(r.seen, last)
				r.mu.Unlock()
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.resumes++
		r.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *run) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

// completed counts the complete tasks in the database.
func completed(t *testing.T, db *storage.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.ReadDB.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM tasks WHERE state = 'complete'").Scan(&n))
	return n
}

// waitCompleted waits until at least k tasks are complete.
func waitCompleted(t *testing.T, db *storage.DB, k int) {
	t.Helper()
	require.Eventually(t, func() bool { return completed(t, db) >= k }, 3*time.Minute, 20*time.Millisecond,
		"waiting for %d complete tasks", k)
}

// killPoints picks k distinct thresholds of complete tasks, in order, at
// which to inject a fault: somewhere in the first 80 % of the run.
func killPoints(rng *rand.Rand, n, k int) []int {
	points := map[int]bool{}
	for len(points) < k {
		points[1+rng.IntN(n*8/10)] = true
	}
	out := make([]int, 0, k)
	for p := range points {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// verify waits for the run to finish and checks every promise against the
// database db: acknowledged tasks stored once each, all complete, each step
// completed once, a dense event log, and a follower that saw it all once.
func (r *run) verify(db *storage.DB) {
	t := r.t
	t.Helper()
	select {
	case <-r.created:
	case <-time.After(3 * time.Minute):
		t.Fatal("the creator did not finish")
	}
	waitCompleted(t, db, r.n)
	ctx := t.Context()

	r.mu.Lock()
	acked := len(r.acked)
	r.mu.Unlock()
	require.Equal(t, r.n, acked, "every CreateTask was acknowledged")
	var stored int
	require.NoError(t, db.ReadDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM tasks").Scan(&stored))
	require.Equal(t, r.n, stored, "each acknowledged task is stored, once")
	for key, id := range r.acked {
		var n int
		q := "SELECT COUNT(*) FROM tasks WHERE id = ? AND idempotency_key = ?"
		if db.Dialect == "postgres" {
			q = "SELECT COUNT(*) FROM tasks WHERE id = $1 AND idempotency_key = $2"
		}
		require.NoError(t, db.ReadDB.QueryRowContext(ctx, q, id, key).Scan(&n))
		require.Equal(t, 1, n, "acknowledged task %s (%s) is stored", id, key)
	}

	// Each step completed exactly once: one transition into complete.
	var rows []struct {
		StepID string `json:"step_id"`
		Count  int    `json:"count"`
	}
	require.NoError(t, db.Reader.StepTransition.Query().Where(steptransition.ToState(string(step.StateComplete))).
		GroupBy(steptransition.FieldStepID).Aggregate(ent.Count()).Scan(ctx, &rows))
	require.Len(t, rows, 4*r.n)
	for _, row := range rows {
		require.Equal(t, 1, row.Count, "step %s completed more than once", row.StepID)
	}

	// The log is dense once every event is numbered.
	require.Eventually(t, func() bool {
		k, err := db.Reader.Event.Query().Where(event.SequenceIsNil()).Count(ctx)
		require.NoError(t, err)
		return k == 0
	}, time.Minute, 20*time.Millisecond, "every event is numbered")
	seqs, err := db.Reader.Event.Query().Order(event.BySequence()).Select(event.FieldSequence).All(ctx)
	require.NoError(t, err)
	for i, ev := range seqs {
		require.Equal(t, int64(i+1), *ev.Sequence, "the log has no gap")
	}
	head := int64(len(seqs))

	// The follower reaches the head and saw 1..head exactly once.
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.seen) > 0 && r.seen[len(r.seen)-1] >= head
	}, time.Minute, 20*time.Millisecond, "the subscriber reaches the head %d", head)
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.problems)
	require.GreaterOrEqual(t, len(r.seen), int(head))
	for i, s := range r.seen[:head] {
		require.Equal(t, int64(i+1), s, "the subscriber saw each event once, in order")
	}
	runs := 0
	for _, k := range r.runs {
		runs += k
	}
	t.Logf("%d tasks, %d steps run %d times (re-runs after faults: %d), %d events, subscriber resumed %d times",
		r.n, 4*r.n, runs, runs-4*r.n, head, r.resumes)
}

// openDB opens the database the servers use, for the checks.
func openDB(t *testing.T, url string) *storage.DB {
	t.Helper()
	db, err := storage.Open(t.Context(), url, storage.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}
