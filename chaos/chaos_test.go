package chaos_test

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/storage/storagetest"
	"github.com/taskerhq/tasker/tcpproxy"
)

func scenarioContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestKillSQLiteServer kills the only server with SIGKILL at random points
// of the run and starts it again on the same file and address.
func TestKillSQLiteServer(t *testing.T) {
	t.Parallel()
	sz, rng := sizes(), seed(t)
	ctx := scenarioContext(t)
	url := filepath.Join(t.TempDir(), "tasker.db")
	addr := freeAddr(t)
	srv := startServer(t, url, addr)
	r := start(t, ctx, sz.tasks, dial(t, addr))
	db := openDB(t, url)
	for _, point := range killPoints(rng, sz.tasks, sz.kills) {
		waitCompleted(t, db, point)
		srv.kill()
		t.Logf("killed the server at %d complete tasks", completed(t, db))
		srv = startServer(t, url, addr)
	}
	r.verify(db)
}

// TestKillPostgresReplica runs two replicas on one PostgreSQL database and
// kills one of them with SIGKILL at random points, restarting it each time
// but the last: the survivor's reaper and sequencer carry on.
func TestKillPostgresReplica(t *testing.T) {
	t.Parallel()
	sz, rng := sizes(), seed(t)
	ctx := scenarioContext(t)
	url := storagetest.PostgresURL(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	startServer(t, url, addrA)
	b := startServer(t, url, addrB)
	r := start(t, ctx, sz.tasks, dial(t, addrA), dial(t, addrB))
	db := openDB(t, url)
	points := killPoints(rng, sz.tasks, sz.kills)
	for i, point := range points {
		waitCompleted(t, db, point)
		b.kill()
		t.Logf("killed replica B at %d complete tasks", completed(t, db))
		if i < len(points)-1 {
			b = startServer(t, url, addrB)
		}
	}
	r.verify(db)
}

// TestWorkerKilledHoldingLeases lets a worker claim steps and vanish at
// random points without a word: its leases expire, the reaper puts the
// steps back, and other workers run them.
func TestWorkerKilledHoldingLeases(t *testing.T) {
	t.Parallel()
	sz, rng := sizes(), seed(t)
	ctx := scenarioContext(t)
	url := filepath.Join(t.TempDir(), "tasker.db")
	addr := freeAddr(t)
	startServer(t, url, addr)
	r := start(t, ctx, sz.tasks, dial(t, addr))
	db := openDB(t, url)
	var abandoned []string
	for _, point := range killPoints(rng, sz.tasks, sz.kills) {
		waitCompleted(t, db, point)
		abandoned = append(abandoned, claimAndVanish(t, ctx, addr)...)
	}
	require.NotEmpty(t, abandoned, "the doomed worker claimed steps")
	r.verify(db)
	for _, id := range abandoned {
		var attempts int
		var state string
		q := "SELECT attempts, state FROM steps WHERE id = ?"
		require.NoError(t, db.ReadDB.QueryRowContext(ctx, q, id).Scan(&attempts, &state))
		require.Equal(t, "complete", state)
		require.GreaterOrEqual(t, attempts, 2, "step %s ran again after its worker vanished", id)
	}
}

// claimAndVanish claims what it can for a worker of its own, on its own
// connection, and closes the connection without reporting anything: what a
// worker killed with SIGKILL leaves behind.
func claimAndVanish(t *testing.T, ctx context.Context, addr string) []string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	resp, err := retry(ctx, func(ctx context.Context, _ int) (*taskerv1.ClaimStepsResponse, error) {
		return taskerv1.NewStepServiceClient(conn).ClaimSteps(ctx, &taskerv1.ClaimStepsRequest{
			WorkerId: "doomed", MaxSteps: 10,
			Handlers: []*taskerv1.HandlerRef{{Namespace: "chaos", Handler: "work"}},
		})
	})
	require.NoError(t, err)
	var ids []string
	for _, s := range resp.GetSteps() {
		ids = append(ids, s.GetStepId())
	}
	t.Logf("a worker vanished holding %d leases", len(ids))
	return ids
}

// TestPostgresOutage runs the server against PostgreSQL through a TCP proxy
// and cuts every connection for a few seconds at random points: calls fail
// Unavailable and health says NOT_SERVING meanwhile, and once the
// connections are back everything resumes where it stopped.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	sz, rng := sizes(), seed(t)
	ctx := scenarioContext(t)
	direct := storagetest.PostgresURL(t)
	u, err := url.Parse(direct)
	require.NoError(t, err)
	proxy := tcpproxy.Start(t, u.Host)
	u.Host = proxy.Addr()
	addr := freeAddr(t)
	startServer(t, u.String(), addr)
	conn := dial(t, addr)
	r := start(t, ctx, sz.tasks, conn)
	db := openDB(t, direct)
	health := healthpb.NewHealthClient(conn)
	serving := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err == nil && resp.GetStatus() == want
		}
	}
	for _, point := range killPoints(rng, sz.tasks, sz.kills) {
		waitCompleted(t, db, point)
		proxy.Cut()
		cut := time.Now()
		require.Eventually(t, serving(healthpb.HealthCheckResponse_NOT_SERVING), time.Minute, 20*time.Millisecond,
			"health says NOT_SERVING while the database is out of reach")
		// The outage lasts a few seconds, longer than a lease, so reports
		// and heartbeats fail for longer than the steps' leases.
		select {
		case <-time.After(3*time.Second - time.Since(cut)):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		proxy.Restore()
		require.Eventually(t, serving(healthpb.HealthCheckResponse_SERVING), time.Minute, 20*time.Millisecond,
			"health says SERVING once the database is back")
		t.Logf("cut PostgreSQL for %v at %d complete tasks", time.Since(cut).Round(100*time.Millisecond), point)
	}
	r.verify(db)
}
