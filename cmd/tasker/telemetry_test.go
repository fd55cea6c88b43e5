package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
)

// receiver is an in-process OTLP/gRPC trace and metrics receiver.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu sync.Mutex
	// spans are the names of the spans received, by service.name.
	spans map[string][]string
	// all are the spans received, with their service.name.
	all []receivedSpan
	// metrics are the names of the metrics received.
	metrics map[string]bool
	m       metricsReceiver
}

type metricsReceiver struct {
	collectormetrics.UnimplementedMetricsServiceServer
	r *receiver
}

func (m *metricsReceiver) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, x := range sm.GetMetrics() {
				m.r.metrics[x.GetName()] = true
			}
		}
	}
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

func (r *receiver) metricNames() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for k := range r.metrics {
		out[k] = true
	}
	return out
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans[service] = append(r.spans[service], s.GetName())
				r.all = append(r.all, receivedSpan{service: service, Span: s})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// receivedSpan is a span as the receiver got it, with the service.name of
// its resource.
type receivedSpan struct {
	service string
	*tracev1.Span
}

// receivedSpans returns every span received so far.
func (r *receiver) receivedSpans() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.all...)
}

func (r *receiver) received() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for k, v := range r.spans {
		out[k] = append([]string(nil), v...)
	}
	return out
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &receiver{spans: map[string][]string{}, metrics: map[string]bool{}}
	r.m.r = r
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	collectormetrics.RegisterMetricsServiceServer(srv, &r.m)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r, lis.Addr().String()
}

// serveProcess is `tasker serve` running as a child process.
type serveProcess struct {
	cmd  *exec.Cmd
	addr string
	// done is closed when the process's stderr has ended.
	done chan struct{}
	wait func() error
	mu   sync.Mutex
	msgs []string
}

// startServeProcess runs `tasker serve` with args, in the test's
// environment less its OTEL_* and TASKER_* variables, plus env, and waits
// until it serves. A process the test did not stop is killed when it ends.
func startServeProcess(t *testing.T, env []string, args ...string) *serveProcess {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, append([]string{"serve"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "TASKER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &serveProcess{cmd: cmd, done: make(chan struct{})}
	// Wait only once the pipe is read to its end.
	p.wait = sync.OnceValue(func() error {
		<-p.done
		return cmd.Wait()
	})
	t.Cleanup(func() {
		cancel()
		_ = p.wait()
	})
	serving := make(chan string, 1)
	go func() {
		defer close(p.done)
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			var rec map[string]any
			if json.Unmarshal(lines.Bytes(), &rec) != nil {
				continue
			}
			msg, _ := rec["msg"].(string)
			p.mu.Lock()
			p.msgs = append(p.msgs, msg)
			p.mu.Unlock()
			if msg == "serving" {
				addr, _ := rec["grpc_addr"].(string)
				serving <- addr
			}
		}
	}()
	select {
	case p.addr = <-serving:
	case <-p.done:
		t.Fatalf("serve exited before serving: %v", p.logged())
	}
	require.NotEmpty(t, p.addr)
	return p
}

// logged returns the messages the process logged so far.
func (p *serveProcess) logged() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.msgs...)
}

// stop stops the process with SIGTERM, requires a clean exit and returns
// the messages it logged.
func (p *serveProcess) stop(t *testing.T) []string {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	err := p.wait()
	require.NoError(t, err, "logged: %v", p.logged())
	return p.logged()
}

// serveOnce runs `tasker serve` with the OTEL_* variables otel (and no
// others from the test's environment), makes one RPC, stops it with
// SIGTERM and returns the messages it logged.
func serveOnce(t *testing.T, otel ...string) []string {
	t.Helper()
	p := startServeProcess(t, otel, "--database", filepath.Join(t.TempDir(), "tasker.db"),
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	_, err = taskerv1.NewRegistryServiceClient(conn).ListNamespaces(t.Context(), &taskerv1.ListNamespacesRequest{})
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	return p.stop(t)
}

// TestServeExportsTraces: with OTEL_TRACES_EXPORTER=otlp, serve sends the
// spans of its RPCs to the OTLP endpoint, and a clean shutdown flushes
// those still buffered (the batcher would otherwise wait 5s, past the
// process's exit).
func TestServeExportsTraces(t *testing.T) {
	t.Parallel()
	r, addr := startReceiver(t)
	serveOnce(t, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+addr, "OTEL_BSP_SCHEDULE_DELAY=60000")
	require.Contains(t, r.received()["tasker"], "tasker.v1.RegistryService/ListNamespaces")
}

// TestServeExportsMetrics: with OTEL_METRICS_EXPORTER=otlp, serve sends
// the instruments /metrics serves to the OTLP endpoint too, and a clean
// shutdown exports them once more whatever the interval.
func TestServeExportsMetrics(t *testing.T) {
	t.Parallel()
	r, addr := startReceiver(t)
	serveOnce(t, "OTEL_METRICS_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+addr, "OTEL_METRIC_EXPORT_INTERVAL=600000")
	got := r.metricNames()
	for _, name := range []string{"tasker_event_log_head_sequence", "tasker_db_connections", "tasker_subscription_max_lag", "rpc.server.call.duration"} {
		require.True(t, got[name], "%s not among %v", name, got)
	}
	require.Empty(t, r.received(), "no traces without OTEL_TRACES_EXPORTER")
}

// TestServeSendsNoTracesByDefault: without OTEL_TRACES_EXPORTER nothing is
// sent, even to a configured endpoint, and serve says so.
func TestServeSendsNoTracesByDefault(t *testing.T) {
	t.Parallel()
	r, addr := startReceiver(t)
	msgs := serveOnce(t, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+addr)
	require.Empty(t, r.received())
	require.Contains(t, msgs, "an OTLP endpoint is set but OTEL_TRACES_EXPORTER is not: no traces are sent; set OTEL_TRACES_EXPORTER=otlp")
}

// TestServeRefusesUnknownTraceExporter: a misspelt exporter stops start-up,
// before the database is touched, with the variable and value named.
func TestServeRefusesUnknownTraceExporter(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--database", filepath.Join(t.TempDir(), "tasker.db"),
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=otlpp")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "OTEL_TRACES_EXPORTER")
	require.Contains(t, string(out), `"otlpp"`)
	_, err = os.Stat(filepath.Join(filepath.Dir(cmd.Args[3]), "tasker.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "start-up stopped before creating the database")
}
