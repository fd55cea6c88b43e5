package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/taskerhq/tasker/bench"
	"github.com/taskerhq/tasker/events"
)

func main() {
	if err := run(); err != nil {
		printError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return rootCommand().ExecuteContext(ctx)
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tasker",
		Short:         "Tasker runs DAG workflows: templates, tasks, workers and a resumable event stream",
		Long:          "Tasker runs DAG workflows: templates, tasks, workers and a resumable event stream.\n\n" + exitCodesHelp,
		Version:       buildVersion().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// One registry of event exporters for the process: formats a build
	// registers in it serve --export-format and events export alike.
	exporters := events.NewRegistry(slog.New(slog.DiscardHandler))
	root.AddCommand(serveCommand(exporters), migrateCommand(), templateCommand(), tokenCommand())
	root.AddCommand(eventsCommand(exporters))
	root.AddCommand(taskCommand(), stepCommand(), handlerCommand(), statsCommand(), versionCommand())
	root.AddCommand(bench.Command())
	root.SetVersionTemplate("tasker {{.Version}}\n")
	markUsage(root)
	return root
}

// env returns the environment variable key, or def when it is unset, so
// every flag can also be set from the environment.
func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// newLogger builds the JSON (or text) slog logger all of Tasker logs with.
func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: want json or text, got %q", format)
	}
}
