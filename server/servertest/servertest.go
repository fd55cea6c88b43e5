// Package servertest runs a real Tasker server for tests: the process's
// components wired as `tasker serve` wires them, serving gRPC on loopback
// TCP, with a client connection to it. Tests call Tasker the way users do.
package servertest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/storage"
)

// Options vary a test server; the zero value is a server on any loopback
// port that logs warnings to the test's output.
type Options struct {
	// Addr to listen on; default "127.0.0.1:0". A restart test passes the
	// address of the server it replaces.
	Addr string
	// Config of the server; ShutdownTimeout defaults to 2s.
	Config server.Config
	// Logger defaults to the test's output at warn level.
	Logger *slog.Logger
	// DialOptions are added to the client connection's.
	DialOptions []grpc.DialOption
	// Admin also serves the admin HTTP endpoints, on any loopback port.
	Admin bool
}

// Server is a running server and a client connection to it.
type Server struct {
	Addr string
	// AdminAddr is the admin HTTP address when Options.Admin is set.
	AdminAddr string
	Conn      *grpc.ClientConn
	Engine    *engine.Engine
	// Listening reports whether the server hears other replicas' commits.
	Listening func() bool
	stop      func() error
}

// Start serves db until the test ends or Stop.
func Start(t testing.TB, db *storage.DB, opts Options) *Server {
	t.Helper()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(Writer{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Config.ShutdownTimeout == 0 {
		opts.Config.ShutdownTimeout = 2 * time.Second
	}
	templates, eventLog, eng := server.Components(log, db)
	srv := server.New(log, db, templates, eng, eventLog, opts.Config)

	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", opts.Addr)
	require.NoError(t, err)
	var adminLis net.Listener
	if opts.Admin {
		adminLis, err = lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, adminLis) }()
	conn, err := grpc.NewClient(lis.Addr().String(),
		append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts.DialOptions...)...)
	require.NoError(t, err)

	var once sync.Once
	var serveErr error
	s := &Server{Addr: lis.Addr().String(), Conn: conn, Engine: eng, Listening: srv.Listening}
	if adminLis != nil {
		s.AdminAddr = adminLis.Addr().String()
	}
	s.stop = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
			_ = conn.Close()
		})
		return serveErr
	}
	t.Cleanup(func() { require.NoError(t, s.Stop()) })
	return s
}

// Stop shuts the server down gracefully, closes the client connection and
// returns what Serve returned. It may be called more than once.
func (s *Server) Stop() error { return s.stop() }

// Writer sends log output to a test's log, shown when the test fails.
type Writer struct{ T testing.TB }

func (w Writer) Write(p []byte) (int, error) {
	w.T.Log(string(p))
	return len(p), nil
}
