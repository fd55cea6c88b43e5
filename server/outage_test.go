package server_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/storage"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/tcpproxy"
)

// requireRetryable asserts an Unavailable status that tells the client
// when to try again.
func requireRetryable(t *testing.T, err error) {
	t.Helper()
	st := requireCode(t, err, codes.Unavailable)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			require.Positive(t, ri.GetRetryDelay().AsDuration())
			return
		}
	}
	t.Fatalf("no RetryInfo in %v", st.Details())
}

// healthOf returns what the gRPC health service says of service and what
// /readyz answers.
func healthOf(ctx context.Context, t *testing.T, b *bundle, service string) (healthpb.HealthCheckResponse_ServingStatus, int) {
	t.Helper()
	h, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.adminAddr+"/readyz", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	return h.GetStatus(), res.StatusCode
}

// adminStatus is the status of GET path on the admin port.
func adminStatus(ctx context.Context, t *testing.T, addr, path string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	return res.StatusCode
}

// TestPostgresOutage cuts the server's connections to PostgreSQL: calls
// answer Unavailable with RetryInfo, not Internal, and health and /readyz
// both say not serving; once the connections are restored both say
// serving again and calls work. The periodic probe is an hour apart, so
// the failing calls are what trigger the probe that notices the outage.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	u, err := url.Parse(storagetest.MigratedPostgresURL(t))
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	db, err := storage.Open(ctx, u.String(), storage.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	b := serve(t, db, servertest.Options{Admin: true, Config: server.Config{ReadinessInterval: time.Hour}})

	registerChain(ctx, t, b, "outage")
	_, err = createChain(ctx, b, "outage", 1)
	require.NoError(t, err)
	for _, service := range []string{"", "tasker.v1.TaskService"} {
		h, ready := healthOf(ctx, t, b, service)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, h)
		require.Equal(t, http.StatusOK, ready)
	}

	proxy.Cut()
	_, err = createChain(ctx, b, "outage", 2)
	requireRetryable(t, err)
	_, err = b.tasks.ListTasks(ctx, &taskerv1.ListTasksRequest{Namespace: "outage"})
	requireRetryable(t, err)
	require.Eventually(t, func() bool {
		h, ready := healthOf(ctx, t, b, "")
		return h == healthpb.HealthCheckResponse_NOT_SERVING && ready == http.StatusServiceUnavailable
	}, 10*time.Second, 20*time.Millisecond)
	h, ready := healthOf(ctx, t, b, "tasker.v1.TaskService")
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, h)
	require.Equal(t, http.StatusServiceUnavailable, ready)
	require.Equal(t, http.StatusOK, adminStatus(ctx, t, b.adminAddr, "/livez"), "the process is alive: no restart would help")

	proxy.Restore()
	require.Eventually(t, func() bool {
		h, ready := healthOf(ctx, t, b, "")
		return h == healthpb.HealthCheckResponse_SERVING && ready == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	h, _ = healthOf(ctx, t, b, "tasker.v1.TaskService")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h)
	// A pooled connection cut while idle may still fail once, as
	// Unavailable; a client that retries, as told, gets through.
	require.Eventually(t, func() bool {
		_, err := createChain(ctx, b, "outage", 3)
		if err != nil {
			requireRetryable(t, err)
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// TestSQLiteLockedByAnotherProcess: a write that waits out busy_timeout
// behind another process's lock on the file answers Unavailable with
// RetryInfo, and works once the lock is gone.
func TestSQLiteLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "tasker.db")
	db, err := storage.Open(ctx, path, storage.Options{BusyTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Migrate(ctx))
	b := serve(t, db, servertest.Options{})
	registerChain(ctx, t, b, "locked")

	other, err := storage.Open(ctx, path, storage.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, other.Close()) }()
	lock, err := other.Writer.Conn(ctx)
	require.NoError(t, err)
	_, err = lock.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(t, err)

	_, err = createChain(ctx, b, "locked", 1)
	requireRetryable(t, err)

	_, err = lock.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, lock.Close())
	_, err = createChain(ctx, b, "locked", 1)
	require.NoError(t, err)
}
