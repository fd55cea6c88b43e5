package server_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/storage"
)

// bundle is a running server on a real database and clients connected to
// it over loopback TCP, the way users call Tasker.
type bundle struct {
	db        *storage.DB
	conn      *grpc.ClientConn
	registry  taskerv1.RegistryServiceClient
	tasks     taskerv1.TaskServiceClient
	steps     taskerv1.StepServiceClient
	events    taskerv1.EventServiceClient
	adminAddr string
	// stop shuts the server down and waits for Serve to return.
	stop func() error
}

func setup(t *testing.T, db *storage.DB) *bundle {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	templates := registry.NewStore(db)
	eventLog := events.NewLog(db, log)
	eng := engine.New(db, templates, log, engine.Options{OnAppend: eventLog.Appended})
	srv := server.New(log, db, templates, eng, eventLog, server.Config{ShutdownTimeout: 2 * time.Second})

	var lc net.ListenConfig
	grpcLis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adminLis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLis, adminLis) }()

	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() {
		require.NoError(t, conn.Close())
		require.NoError(t, stop())
	})
	return &bundle{
		db:        db,
		conn:      conn,
		registry:  taskerv1.NewRegistryServiceClient(conn),
		tasks:     taskerv1.NewTaskServiceClient(conn),
		steps:     taskerv1.NewStepServiceClient(conn),
		events:    taskerv1.NewEventServiceClient(conn),
		adminAddr: adminLis.Addr().String(),
		stop:      stop,
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requireCode asserts a status code and returns the status for detail checks.
func requireCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, st.Code(), "message: %s", st.Message())
	return st
}

// badFields returns the fields named by a status's BadRequest detail.
func badFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

// errorInfo returns a status's ErrorInfo detail, or nil.
func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// testWriter sends the server's log to the test's output, shown when a test
// fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
