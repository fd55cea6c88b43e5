package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskerhq/tasker/engine"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/server/servertest"
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
	engine    *engine.Engine
	listening func() bool
	// stop shuts the server down and waits for Serve to return.
	stop func() error
}

func setup(t *testing.T, db *storage.DB) *bundle {
	t.Helper()
	return serve(t, db, servertest.Options{Admin: true})
}

// serve starts a server on db with opts. Several may run on one database,
// one after the other (a restart) or at once (replicas on PostgreSQL).
func serve(t *testing.T, db *storage.DB, opts servertest.Options) *bundle {
	t.Helper()
	s := servertest.Start(t, db, opts)
	return &bundle{
		db:        db,
		conn:      s.Conn,
		engine:    s.Engine,
		listening: s.Listening,
		registry:  taskerv1.NewRegistryServiceClient(s.Conn),
		tasks:     taskerv1.NewTaskServiceClient(s.Conn),
		steps:     taskerv1.NewStepServiceClient(s.Conn),
		events:    taskerv1.NewEventServiceClient(s.Conn),
		adminAddr: s.AdminAddr,
		stop:      s.Stop,
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
