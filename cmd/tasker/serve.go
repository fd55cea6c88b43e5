package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerhq/tasker/auth"
	"github.com/taskerhq/tasker/events"
	"github.com/taskerhq/tasker/registry"
	"github.com/taskerhq/tasker/server"
	"github.com/taskerhq/tasker/storage"
)

type serveFlags struct {
	database          string
	grpcAddr          string
	adminAddr         string
	templates         string
	sqliteSynchronous string
	exportFile        string
	exportFormat      string
	logLevel          string
	logFormat         string
	shutdownTimeout   time.Duration
	retentionAge      string
	retentionCount    string
	migrate           bool
	maxStreams        int
	auth              string
	insecure          bool
	tlsCert           string
	tlsKey            string
	tlsClientCA       string
	rateLimit         string
	rateBurst         string
}

func serveCommand(exporters *events.Registry) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Tasker service",
		Long: "Run the Tasker service: gRPC (health, reflection) and an HTTP admin port with /healthz, /readyz, /metrics and\n" +
			"/openapi.json (its OpenAPI 3 description).\n" +
			"With no flags it stores everything in ./tasker.db (SQLite). Traces go where the standard OTEL_* variables\n" +
			"say (OTEL_TRACES_EXPORTER=otlp with OTEL_EXPORTER_OTLP_ENDPOINT…); none are sent by default.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, b := range []struct {
				flag, env string
				v         *bool
			}{{"migrate", "TASKER_MIGRATE", &f.migrate}, {"insecure", "TASKER_INSECURE", &f.insecure}} {
				if v, ok := os.LookupEnv(b.env); ok && !cmd.Flags().Changed(b.flag) {
					parsed, err := strconv.ParseBool(v)
					if err != nil {
						return fmt.Errorf("%s: want true or false, got %q", b.env, v)
					}
					*b.v = parsed
				}
			}
			return serve(cmd.Context(), f, exporters)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.database, "database", env("TASKER_DATABASE_URL", "./tasker.db"), "database URL: a SQLite file path, or postgres://… [TASKER_DATABASE_URL]")
	fl.StringVar(&f.grpcAddr, "grpc-addr", env("TASKER_GRPC_ADDR", "127.0.0.1:50051"), "gRPC listen address [TASKER_GRPC_ADDR]")
	fl.StringVar(&f.adminAddr, "admin-addr", env("TASKER_ADMIN_ADDR", "127.0.0.1:9090"), "admin HTTP listen address, empty to disable [TASKER_ADMIN_ADDR]")
	fl.StringVar(&f.templates, "templates", env("TASKER_TEMPLATES", ""), "directory of *.yaml task templates to register at start-up [TASKER_TEMPLATES]")
	fl.StringVar(&f.sqliteSynchronous, "sqlite-synchronous", env("TASKER_SQLITE_SYNCHRONOUS", "normal"), "SQLite durability: normal (survives a process crash) or full (survives power loss) [TASKER_SQLITE_SYNCHRONOUS]")
	fl.StringVar(&f.logLevel, "log-level", env("TASKER_LOG_LEVEL", "info"), "debug, info, warn or error [TASKER_LOG_LEVEL]")
	fl.StringVar(&f.logFormat, "log-format", env("TASKER_LOG_FORMAT", "json"), "json or text [TASKER_LOG_FORMAT]")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight calls may drain on SIGTERM")
	fl.StringVar(&f.retentionAge, "event-retention-age", env("TASKER_EVENT_RETENTION_AGE", "0"), "remove events older than this (e.g. 720h); 0 keeps them [TASKER_EVENT_RETENTION_AGE]")
	fl.StringVar(&f.retentionCount, "event-retention-count", env("TASKER_EVENT_RETENTION_COUNT", "0"), "keep at most this many of the newest events; 0 for no limit [TASKER_EVENT_RETENTION_COUNT]")
	fl.BoolVar(&f.migrate, "migrate", true, "apply pending schema migrations at start; when false, refuse to start on a database that lacks some [TASKER_MIGRATE]")
	fl.IntVar(&f.maxStreams, "max-streams", server.DefaultMaxStreams, "most Subscribe streams open at once; more are refused with RESOURCE_EXHAUSTED")
	fl.StringVar(&f.auth, "auth", env("TASKER_AUTH", "auto"), "auto (none while every listener is on loopback, token otherwise), token or none [TASKER_AUTH]")
	fl.BoolVar(&f.insecure, "insecure", false, "allow --auth none on a non-loopback address [TASKER_INSECURE]")
	fl.StringVar(&f.tlsCert, "tls-cert", env("TASKER_TLS_CERT", ""), "serve gRPC and admin over TLS with this certificate (PEM) [TASKER_TLS_CERT]")
	fl.StringVar(&f.tlsKey, "tls-key", env("TASKER_TLS_KEY", ""), "key (PEM) of --tls-cert [TASKER_TLS_KEY]")
	fl.StringVar(&f.rateLimit, "rate-limit", env("TASKER_RATE_LIMIT", "0"), "calls a second each token may make on average; 0 for no limit (with tokens only) [TASKER_RATE_LIMIT]")
	fl.StringVar(&f.rateBurst, "rate-burst", env("TASKER_RATE_BURST", "0"), "calls a token may make at once beyond --rate-limit; 0 for the rate rounded up [TASKER_RATE_BURST]")
	fl.StringVar(&f.exportFile, "export-file", env("TASKER_EXPORT_FILE", ""), "append every event to this file, resuming from its checkpoint (FILE.checkpoint) after a restart [TASKER_EXPORT_FILE]")
	fl.StringVar(&f.exportFormat, "export-format", env("TASKER_EXPORT_FORMAT", events.FormatJSON), "format of --export-file: json (JSON lines) or csv [TASKER_EXPORT_FORMAT]")
	fl.StringVar(&f.tlsClientCA, "tls-client-ca", env("TASKER_TLS_CLIENT_CA", ""), "require client certificates signed by this CA (PEM): mutual TLS [TASKER_TLS_CLIENT_CA] ")
	return cmd
}

func serve(ctx context.Context, f serveFlags, exporters *events.Registry) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	retention, err := retentionOf(f)
	if err != nil {
		return err
	}
	limit, err := rateLimitOf(f.rateLimit, f.rateBurst)
	if err != nil {
		return err
	}
	if f.maxStreams < 1 {
		return fmt.Errorf("--max-streams must be at least 1, got %d", f.maxStreams)
	}
	mode, err := parseAuthMode(f.auth)
	if err != nil {
		return err
	}
	tlsCfg, err := serverTLS(f.tlsCert, f.tlsKey, f.tlsClientCA)
	if err != nil {
		return err
	}
	tracer, stopTracing, err := setupTracing(ctx, log)
	if err != nil {
		return err
	}
	// Flush the spans of the last calls once the server has stopped; ctx
	// is done by then.
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			log.WarnContext(flushCtx, "flushing traces failed", slog.Any("error", err))
		}
	}()
	// Listen first: a port already taken must stop start-up before it
	// creates or migrates a database. Serve closes the listeners; the
	// deferred closes are for the returns before it.
	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	defer grpcLis.Close()
	var adminLis net.Listener
	if f.adminAddr != "" {
		if adminLis, err = lc.Listen(ctx, "tcp", f.adminAddr); err != nil {
			return fmt.Errorf("--admin-addr: %w", err)
		}
		defer adminLis.Close()
	}
	mode, err = resolveAuth(ctx, log, mode, f.insecure, grpcLis, adminLis)
	if err != nil {
		return err
	}

	db, applied, err := openAndMigrate(ctx, f.database, f.sqliteSynchronous, f.migrate)
	if err != nil {
		return err
	}
	defer db.Close()
	if len(applied) > 0 {
		log.InfoContext(ctx, "migrations applied", slog.Any("versions", applied))
	}
	log.InfoContext(ctx, "database ready", slog.String("dialect", db.Dialect), slog.String("location", db.Location))

	templates, eventLog, eng := server.Components(log, db)
	if f.templates != "" {
		if err := registerDir(ctx, log, templates, f.templates); err != nil {
			return err
		}
	}

	cfg := server.Config{ShutdownTimeout: f.shutdownTimeout, Retention: retention, MaxStreams: f.maxStreams, TLS: tlsCfg,
		TracerProvider: tracer, RateLimit: limit}
	if mode == authToken {
		cfg.Authenticator = auth.NewAuthenticator(auth.NewStore(db), log, auth.AuthenticatorOptions{})
	}
	if f.exportFile != "" {
		exporters.SetLogger(log)
		if err := exporters.ExportToFile("file", f.exportFile, f.exportFormat, events.Filter{}); err != nil {
			return fmt.Errorf("--export-file: %w", err)
		}
		cfg.Subscribers = exporters
	}
	srv := server.New(log, db, templates, eng, eventLog, cfg)
	return srv.Serve(ctx, grpcLis, adminLis)
}

// openAndMigrate opens the database and applies the migrations of this
// binary it lacks, returning their versions; with apply false it only
// checks that none is missing. Either way a database migrated by a newer
// binary is refused.
func openAndMigrate(ctx context.Context, url, synchronous string, apply bool) (*storage.DB, []string, error) {
	db, err := storage.Open(ctx, url, storage.Options{Synchronous: synchronous})
	if err != nil {
		return nil, nil, fmt.Errorf("--database: %w", err)
	}
	var applied []string
	if apply {
		applied, err = migrateEmbedded(ctx, db)
	} else {
		err = db.Ready(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return db, applied, nil
}

func migrateEmbedded(ctx context.Context, db *storage.DB) ([]string, error) {
	ms, err := storage.EmbeddedMigrations(db.Dialect)
	if err != nil {
		return nil, err
	}
	return db.MigrateTo(ctx, ms)
}

// registerDir registers every template file of dir; the first bad file
// stops start-up, named with its field.
func registerDir(ctx context.Context, log *slog.Logger, templates *registry.Store, dir string) error {
	loaded, err := registry.LoadDir(dir)
	if err != nil {
		return fmt.Errorf("--templates: %w", err)
	}
	for _, l := range loaded {
		tpl, outcome, err := templates.Register(ctx, l.Template, false)
		if err != nil {
			return fmt.Errorf("--templates: %s: %w", l.Path, err)
		}
		log.InfoContext(ctx, "template loaded", slog.String("file", l.Path),
			slog.String("template", tpl.Name), slog.String("version", tpl.Version), slog.String("outcome", outcome.String()))
	}
	return nil
}

func migrateCommand() *cobra.Command {
	var database, synchronous string
	var status bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the schema migrations the database lacks, then exit (serve also does this at start)",
		Long: "Apply, in order, the versioned schema migrations built into this binary that the database lacks,\n" +
			"each in its own transaction, recorded in tasker_schema_migrations. A database migrated by a newer\n" +
			"Tasker is refused. With --status, list every migration as applied or pending and change nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, err := storage.Open(ctx, database, storage.Options{Synchronous: synchronous})
			if err != nil {
				return fmt.Errorf("--database: %w", err)
			}
			defer db.Close()
			out := cmd.OutOrStdout()
			if status {
				return migrationStatus(ctx, db, out)
			}
			applied, err := migrateEmbedded(ctx, db)
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			for _, v := range applied {
				fmt.Fprintf(out, "applied %s\n", v)
			}
			fmt.Fprintf(out, "%s database at %s is up to date (%d migrations applied now)\n", db.Dialect, db.Location, len(applied))
			return nil
		},
	}
	cmd.Flags().StringVar(&database, "database", env("TASKER_DATABASE_URL", "./tasker.db"), "database URL [TASKER_DATABASE_URL]")
	cmd.Flags().StringVar(&synchronous, "sqlite-synchronous", env("TASKER_SQLITE_SYNCHRONOUS", "normal"), "SQLite durability: normal or full")
	cmd.Flags().BoolVar(&status, "status", false, "list the migrations as applied or pending; change nothing")
	return cmd
}

// migrationStatus prints one line per migration of this binary, then fails
// if the database cannot be served by it.
func migrationStatus(ctx context.Context, db *storage.DB, out io.Writer) error {
	ms, err := storage.EmbeddedMigrations(db.Dialect)
	if err != nil {
		return err
	}
	st, err := db.MigrationStatus(ctx, ms)
	if err != nil {
		return err
	}
	pending := make(map[string]bool, len(st.Pending))
	for _, m := range st.Pending {
		pending[m.Version] = true
	}
	for _, m := range ms {
		state := "applied"
		if pending[m.Version] {
			state = "pending"
		}
		fmt.Fprintf(out, "%s  %-8s %s\n", m.Version, state, m.Name)
	}
	return st.Err
}

// retentionOf parses the event retention flags.
func retentionOf(f serveFlags) (events.Retention, error) {
	var r events.Retention
	age, err := time.ParseDuration(f.retentionAge)
	if err != nil || age < 0 {
		return r, fmt.Errorf("--event-retention-age: want a duration such as 720h, or 0; got %q", f.retentionAge)
	}
	count, err := strconv.ParseInt(f.retentionCount, 10, 64)
	if err != nil || count < 0 {
		return r, fmt.Errorf("--event-retention-count: want a whole number, 0 for no limit; got %q", f.retentionCount)
	}
	r.MaxAge, r.MaxCount = age, count
	return r, r.Validate()
}

// rateLimitOf parses --rate-limit and --rate-burst.
func rateLimitOf(limit, burst string) (server.RateLimit, error) {
	r, err := strconv.ParseFloat(limit, 64)
	if err != nil || r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return server.RateLimit{}, fmt.Errorf("--rate-limit: want calls a second, 0 for no limit; got %q", limit)
	}
	b, err := strconv.Atoi(burst)
	if err != nil || b < 0 {
		return server.RateLimit{}, fmt.Errorf("--rate-burst: want a whole number, 0 for the rate rounded up; got %q", burst)
	}
	if b == 0 {
		b = max(1, int(math.Ceil(r)))
	}
	return server.RateLimit{Rate: r, Burst: b}, nil
}
