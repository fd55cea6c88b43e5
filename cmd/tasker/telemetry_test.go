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
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
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

// serveOnce runs `tasker serve` with the OTEL_* variables otel (and no
// others from the test's environment), makes one RPC, stops it with
// SIGTERM and returns the messages it logged.
func serveOnce(t *testing.T, otel ...string) []string {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--database", filepath.Join(t.TempDir(), "tasker.db"),
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "TASKER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, otel...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var msgs []string
	addr := ""
	lines := bufio.NewScanner(stderr)
	for addr == "" && lines.Scan() {
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) != nil {
			continue
		}
		msg, _ := rec["msg"].(string)
		msgs = append(msgs, msg)
		if msg == "serving" {
			addr, _ = rec["grpc_addr"].(string)
		}
	}
	require.NotEmpty(t, addr, "serve exited before serving: %v", msgs)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	_, err = taskerv1.NewRegistryServiceClient(conn).ListNamespaces(ctx, &taskerv1.ListNamespacesRequest{})
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	for lines.Scan() {
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) == nil {
			msg, _ := rec["msg"].(string)
			msgs = append(msgs, msg)
		}
	}
	require.NoError(t, cmd.Wait(), "logged: %v", msgs)
	return msgs
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
