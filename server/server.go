package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/builtin"
	"github.com/taskerhq/tasker/correlation"
	"github.com/taskerhq/tasker/engine"
	"github.com/taskerhq/tasker/events"
	taskerv1 "github.com/taskerhq/tasker/gen/go/tasker/v1"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/storage"
)

// Config holds the optional settings of a Server.
type Config struct {
	// ShutdownTimeout bounds how long in-flight calls may drain after
	// shutdown starts; then the server stops hard. Default 15s.
	ShutdownTimeout time.Duration
	// MaxRecvMsgSize bounds a request; default 8 MiB, which leaves room for a
	// full template or a batch of results.
	MaxRecvMsgSize int
	// Retention trims the event log in the background; the zero value keeps
	// every event.
	Retention events.Retention
	// Subscribers, when set, runs its in-process event subscribers while
	// the server serves.
	Subscribers *events.Registry
	// ReadinessInterval is how often the database is probed for the gRPC
	// health service and /readyz while it is reachable; a fifth of it (at
	// most 1s) while it is not, and at once when a call finds it
	// unavailable. Default 5s.
	ReadinessInterval time.Duration
	// MaxStreams bounds the Subscribe streams open at once; one more is
	// refused with ResourceExhausted. Default 10,000.
	MaxStreams int
	// MaxStreamsPerConnection bounds the concurrent calls and streams of
	// one client connection (HTTP/2 MAX_CONCURRENT_STREAMS); more wait for
	// one to end. Default 1,000.
	MaxStreamsPerConnection uint32
	// Listener tunes the process's PostgreSQL listener (keepalive, poll
	// while disconnected, reconnection backoff); the zero value is the
	// default.
	Listener storage.ListenerOptions
	// Authenticator, when set, requires a bearer token on every call but
	// health and reflection, and checks its scopes and namespaces; nil
	// serves everyone (loopback only, or behind --insecure).
	Authenticator *auth.Authenticator
	// RateLimit limits the calls of each token (with an Authenticator);
	// the zero value is no limit.
	RateLimit RateLimit
	// TLS, when set, serves both the gRPC and the admin listener over TLS
	// with it; with ClientAuth set, clients must present a certificate.
	TLS *tls.Config
	// TracerProvider receives the spans of every RPC; nil uses the
	// global provider (otel.GetTracerProvider), a no-op unless the
	// embedding program set one.
	TracerProvider trace.TracerProvider
	// StatsInterval bounds how often the gauges read from the database
	// (queue depths, registry statistics, the sequencer's backlog) are
	// read again: scrapes within it see the last values. Default 5s.
	StatsInterval time.Duration
	// PreStopDelay is how long, once shutdown starts, the server keeps
	// serving while /readyz answers 503 and gRPC health NOT_SERVING, before
	// it stops taking calls: time for load balancers to see it draining
	// and send new calls elsewhere. Default 0.
	PreStopDelay time.Duration
	// Builtins, when set, are the handlers this server runs in process
	// (the http built-in, an embedding program's own): a builtin.Runner
	// claims their steps through the engine, like a worker, from Serve
	// until shutdown begins, and Serve waits for it to stop.
	Builtins *builtin.Registry
	// BuiltinOptions are the runner's settings.
	BuiltinOptions builtin.RunnerOptions
}

// DefaultMaxStreams is Config.MaxStreams when it is 0.
const DefaultMaxStreams = 10_000

// DefaultMaxStreamsPerConnection is Config.MaxStreamsPerConnection's
// default.
const DefaultMaxStreamsPerConnection = 1_000

// Server serves the tasker.v1 services over gRPC and the admin endpoints
// over HTTP.
type Server struct {
	log       *slog.Logger
	db        *storage.DB
	cfg       Config
	engine    *engine.Engine
	eventLog  *events.Log
	sequencer *events.Sequencer
	// listener is the process's one PostgreSQL LISTEN connection, shared
	// by the event log, the sequencer and the engine's claimers.
	listener  *storage.Listener
	metrics   *metrics
	grpc      *grpc.Server
	health    *health.Server
	readiness *readiness
	admin     *http.Server
	draining  atomic.Bool
	// stopping is closed when shutdown starts, so long-polls and streams end
	// at once instead of holding GracefulStop back.
	stopping chan struct{}
}

// Components builds the parts a Server runs on db, wired to each other:
// the template store and the engine report their commits to the event log.
// serve, the test server and the in-process bench all assemble them here.
//
// Their log lines written with a call's context carry its correlation_id
// and, when a span is active, trace_id and span_id (correlation.Handler).
func Components(log *slog.Logger, db *storage.DB) (*registry.Store, *events.Log, *engine.Engine) {
	return ComponentsWith(log, db, ComponentOptions{})
}

// ComponentOptions are the optional settings of ComponentsWith.
type ComponentOptions struct {
	// MetricReaders receive the same instruments /metrics serves, such as
	// an OTLP exporter's periodic reader; the server's shutdown does not
	// stop them: their owner does, after Serve returned.
	MetricReaders []sdkmetric.Reader
}

// ComponentsWith is Components with options.
func ComponentsWith(log *slog.Logger, db *storage.DB, opts ComponentOptions) (*registry.Store, *events.Log, *engine.Engine) {
	log = correlation.Logger(log)
	eventLog := events.NewLog(db, log)
	templates := registry.NewStore(db)
	templates.OnAppend(eventLog.Appended)
	m, err := newMetrics(eventLog, db, opts.MetricReaders...)
	if err != nil {
		// Only a fresh registry is used, so no name can clash.
		panic(err)
	}
	eng := engine.New(db, templates, log, engine.Options{OnAppend: eventLog.Appended, Metrics: m})
	m.stats.setEngine(eng)
	return templates, eventLog, eng
}

// New wires the services. It registers nothing with the outside world until
// Serve. eventLog must be the log eng reports its commits to.
//
// Its log lines written with a call's context carry the call's
// correlation_id, trace_id and span_id (correlation.Handler).
func New(log *slog.Logger, db *storage.DB, templates *registry.Store, eng *engine.Engine, eventLog *events.Log, cfg Config) *Server {
	log = correlation.Logger(log)
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = 8 << 20
	}
	if cfg.ReadinessInterval <= 0 {
		cfg.ReadinessInterval = 5 * time.Second
	}
	if cfg.MaxStreamsPerConnection == 0 {
		cfg.MaxStreamsPerConnection = DefaultMaxStreamsPerConnection
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	s := &Server{
		log: log, db: db, cfg: cfg, engine: eng, eventLog: eventLog,
		sequencer: events.NewSequencer(db, log, events.SequencerOptions{Stamped: eventLog.Notify}),
		listener:  storage.NewListener(db, log, cfg.Listener),
		health:    health.NewServer(), stopping: make(chan struct{}),
	}
	// Registering fails only on a listener that already runs, which this
	// new one does not.
	eventLog.UseSequencer(s.sequencer)
	err := errors.Join(eventLog.Listen(s.listener), s.sequencer.Listen(s.listener), eng.Listen(s.listener))
	if err != nil {
		panic(err)
	}
	s.readiness = newReadiness(log, db.Ready, s.health, cfg.ReadinessInterval)
	errs := &errorMapper{log: log, interpret: db.InterpretError, unavailable: s.readiness.unavailable}
	var authz *authorizer
	if cfg.Authenticator != nil {
		authz = &authorizer{log: log, authn: cfg.Authenticator, namespaces: auth.NewNamespaces(db, 0), limits: newRateLimits(cfg.RateLimit)}
	}
	codec := newRequestCodec()
	unary, stream := interceptors(log, errs, codec, authz)
	// The engine counts into the metrics Components gave it; an engine
	// assembled elsewhere gets instruments of its own here, so /metrics
	// still serves the RPCs.
	if m, ok := eng.Metrics().(*metrics); ok {
		s.metrics = m
	} else if s.metrics, err = newMetrics(eventLog, db); err != nil {
		panic(err)
	} else {
		s.metrics.stats.setEngine(eng)
	}
	s.metrics.stats.configure(cfg.StatsInterval, cfg.Subscribers)
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(s.otelOptions()...)),
		grpc.ForceServerCodecV2(codec),
		unary, stream,
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxStreamsPerConnection),
		// Clients may ping to keep idle connections (long-polls, quiet
		// streams) alive, but not more often than every 10s: a client
		// pinging faster is sent GOAWAY. The server pings a connection
		// quiet for 2 minutes and drops it if no answer comes in 20s, so
		// half-open connections do not hold streams for ever.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	taskerv1.RegisterRegistryServiceServer(s.grpc, &registryService{templates: templates, engine: eng, appended: eventLog.Appended})
	taskerv1.RegisterTaskServiceServer(s.grpc, &taskService{engine: eng, errs: errs})
	taskerv1.RegisterStepServiceServer(s.grpc, &stepService{engine: eng, log: log, errs: errs, stopping: s.stopping,
		tracer: s.tracerProvider().Tracer("github.com/taskerhq/tasker/server")})
	taskerv1.RegisterEventServiceServer(s.grpc, &eventService{log: eventLog, stopping: s.stopping, maxStreams: int64(cfg.MaxStreams)})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	// Every admin endpoint is in adminRoutes (openapi.go), which the
	// OpenAPI document served at /openapi.json describes.
	mux := http.NewServeMux()
	for _, r := range s.adminRoutes() {
		mux.HandleFunc("GET "+r.path, r.handler)
	}
	s.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// otelOptions points otelgrpc at the server's meter provider and its
// tracer provider. Incoming W3C trace context continues the caller's
// trace (and is what a task stores) whatever the process's global
// propagator.
func (s *Server) otelOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithMeterProvider(s.metrics.provider),
		otelgrpc.WithTracerProvider(s.tracerProvider()),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
	}
}

// tracerProvider is Config.TracerProvider, or the global one.
func (s *Server) tracerProvider() trace.TracerProvider {
	if s.cfg.TracerProvider != nil {
		return s.cfg.TracerProvider
	}
	return otel.GetTracerProvider()
}

// readyz answers 200 when the last readiness probe found the database
// reachable and migrated and the server is not shutting down, 503
// otherwise, with the reason in the body: the same state the gRPC health
// service reports.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := s.readiness.ready(); err != nil {
		http.Error(w, "database not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Listening reports whether the process's listener hears other replicas'
// commits right now (always on SQLite, where there are none).
func (s *Server) Listening() bool { return s.listener.Connected() }

// Serve serves gRPC on grpcLis and the admin endpoints on adminLis (nil to
// skip) until ctx is done, then shuts down gracefully. It returns nil after a
// clean shutdown.
func (s *Server) Serve(ctx context.Context, grpcLis, adminLis net.Listener) error {
	// The first probe before serving, so health answers from the start.
	s.readiness.check(ctx)

	// The per-process background work: the listener (the one LISTEN
	// connection on PostgreSQL, which wakes the event log, the sequencer
	// and the claimers for what other replicas committed), the event log's
	// one reader that feeds every subscription, the sequencer (one leader
	// per database), the reaper, the event log's retention, the readiness
	// probe and the in-process event subscribers.
	// They outlive ctx until the drain is over, so in-flight calls finish
	// against a working engine.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	defer func() { stopBackground(); background.Wait() }()
	background.Go(func() { s.logStopped(bgCtx, "listener", s.listener.Run(bgCtx)) })
	background.Go(func() { s.logStopped(bgCtx, "event log reader", s.eventLog.Run(bgCtx)) })
	background.Go(func() { s.logStopped(bgCtx, "event sequencer", s.sequencer.Run(bgCtx)) })
	background.Go(func() { s.logStopped(bgCtx, "reaper", s.engine.RunReaper(bgCtx)) })
	background.Go(func() {
		s.logStopped(bgCtx, "event retention", events.NewRetainer(s.db, s.log, s.cfg.Retention).Run(bgCtx))
	})
	background.Go(func() { s.readiness.run(bgCtx) })
	if s.cfg.Builtins != nil {
		// Stops claiming as soon as the shutdown begins, alongside the
		// drain of gRPC calls; running steps get the runner's own timeout.
		runCtx, stopRunner := context.WithCancel(bgCtx)
		go func() {
			select {
			case <-s.stopping:
			case <-runCtx.Done():
			}
			stopRunner()
		}()
		runner := builtin.NewRunner(s.engine, s.cfg.Builtins, s.log, s.cfg.BuiltinOptions)
		background.Go(func() { s.logStopped(bgCtx, "built-in handlers", runner.Run(runCtx)) })
	}
	if s.cfg.Subscribers != nil {
		background.Go(func() { s.logStopped(bgCtx, "event subscribers", s.cfg.Subscribers.Run(bgCtx, s.eventLog)) })
	}

	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(grpcLis) }()
	if adminLis != nil {
		if s.cfg.TLS != nil {
			adminLis = tls.NewListener(adminLis, s.cfg.TLS)
		}
		go func() {
			if err := s.admin.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	s.log.InfoContext(ctx, "serving", slog.String("grpc_addr", grpcLis.Addr().String()), slog.Any("admin_addr", addrOf(adminLis)))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown()
	return serveErr
}

// shutdown reports not ready, keeps serving for PreStopDelay, then stops
// new work, ends long-polls and streams, lets in-flight calls drain for
// ShutdownTimeout, and stops hard.
func (s *Server) shutdown() {
	s.draining.Store(true)
	s.health.Shutdown()
	if d := s.cfg.PreStopDelay; d > 0 {
		s.log.Info("draining: not ready, still serving until the pre-stop delay passes", slog.Duration("pre_stop_delay", d))
		time.Sleep(d)
	}
	close(s.stopping)

	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("drain timeout passed; stopping in-flight calls", slog.Duration("timeout", s.cfg.ShutdownTimeout))
		s.grpc.Stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.admin.Shutdown(ctx)
	s.log.Info("stopped")
}

func addrOf(l net.Listener) any {
	if l == nil {
		return nil
	}
	return l.Addr().String()
}

// logStopped reports a background loop that ended with an error.
func (s *Server) logStopped(ctx context.Context, what string, err error) {
	if err != nil {
		s.log.ErrorContext(ctx, what+" stopped", slog.Any("error", err))
	}
}
