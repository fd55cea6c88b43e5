package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

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
	logLevel          string
	logFormat         string
	shutdownTimeout   time.Duration
	retentionAge      string
	retentionCount    string
	maxStreams        int
}

func serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Tasker service",
		Long: "Run the Tasker service: gRPC (health, reflection) and an HTTP admin port with /healthz and /readyz.\n" +
			"With no flags it stores everything in ./tasker.db (SQLite).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return serve(cmd.Context(), f) },
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
	fl.IntVar(&f.maxStreams, "max-streams", server.DefaultMaxStreams, "most Subscribe streams open at once; more are refused with RESOURCE_EXHAUSTED")
	return cmd
}

func serve(ctx context.Context, f serveFlags) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	retention, err := retentionOf(f)
	if err != nil {
		return err
	}
	if f.maxStreams < 1 {
		return fmt.Errorf("--max-streams must be at least 1, got %d", f.maxStreams)
	}
	db, err := openAndMigrate(ctx, f.database, f.sqliteSynchronous)
	if err != nil {
		return err
	}
	defer db.Close()
	log.InfoContext(ctx, "database ready", slog.String("dialect", db.Dialect), slog.String("location", db.Location))

	templates, eventLog, eng := server.Components(log, db)
	if f.templates != "" {
		if err := registerDir(ctx, log, templates, f.templates); err != nil {
			return err
		}
	}

	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	var adminLis net.Listener
	if f.adminAddr != "" {
		if adminLis, err = lc.Listen(ctx, "tcp", f.adminAddr); err != nil {
			return fmt.Errorf("--admin-addr: %w", err)
		}
	}
	srv := server.New(log, db, templates, eng, eventLog, server.Config{ShutdownTimeout: f.shutdownTimeout, Retention: retention, MaxStreams: f.maxStreams})
	return srv.Serve(ctx, grpcLis, adminLis)
}

func openAndMigrate(ctx context.Context, url, synchronous string) (*storage.DB, error) {
	db, err := storage.Open(ctx, url, storage.Options{Synchronous: synchronous})
	if err != nil {
		return nil, fmt.Errorf("--database: %w", err)
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return db, nil
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
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the database schema, then exit (serve also does this at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := openAndMigrate(cmd.Context(), database, synchronous)
			if err != nil {
				return err
			}
			defer db.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "migrated %s database at %s\n", db.Dialect, db.Location)
			return nil
		},
	}
	cmd.Flags().StringVar(&database, "database", env("TASKER_DATABASE_URL", "./tasker.db"), "database URL [TASKER_DATABASE_URL]")
	cmd.Flags().StringVar(&synchronous, "sqlite-synchronous", env("TASKER_SQLITE_SYNCHRONOUS", "normal"), "SQLite durability: normal or full")
	return cmd
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
