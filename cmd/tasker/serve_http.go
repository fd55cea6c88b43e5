package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/taskerhq/tasker/builtin"
)

// httpFlags configure the built-in handlers, http among them.
type httpFlags struct {
	allowHosts         string
	allowEnv           string
	concurrency        int
	builtinConcurrency int
}

func addHTTPFlags(cmd *cobra.Command, f *httpFlags) {
	fl := cmd.Flags()
	fl.StringVar(&f.allowHosts, "http-allow-hosts", env("TASKER_HTTP_ALLOW_HOSTS", ""),
		"hosts http steps may call, comma-separated: host, host:port, *.domain or address/prefix; empty allows every public host. "+
			"Loopback, private and link-local addresses only when an entry names them [TASKER_HTTP_ALLOW_HOSTS]")
	fl.StringVar(&f.allowEnv, "http-allow-env", env("TASKER_HTTP_ALLOW_ENV", ""),
		"environment variables http step templates may read with env, comma-separated [TASKER_HTTP_ALLOW_ENV]")
	fl.IntVar(&f.concurrency, "http-concurrency", 32, "http steps this server runs at once")
	fl.IntVar(&f.builtinConcurrency, "builtin-concurrency", 64, "built-in steps of every kind this server runs at once")
}

// builtins returns the registry of the built-in handlers and the runner's
// settings.
func (f httpFlags) builtins() (*builtin.Registry, builtin.RunnerOptions, error) {
	if f.concurrency < 1 || f.builtinConcurrency < 1 {
		return nil, builtin.RunnerOptions{}, fmt.Errorf("--http-concurrency and --builtin-concurrency must be at least 1")
	}
	allow, err := builtin.ParseAllowList(f.allowHosts)
	if err != nil {
		return nil, builtin.RunnerOptions{}, fmt.Errorf("--http-allow-hosts: %w", err)
	}
	reg := builtin.NewRegistry()
	h := builtin.NewHTTP(builtin.HTTPOptions{
		Allow: allow, Env: strings.Split(f.allowEnv, ","), Concurrency: f.concurrency, UserAgent: "tasker/" + buildVersion().Version,
	})
	if err := h.Register(reg); err != nil {
		return nil, builtin.RunnerOptions{}, err
	}
	return reg, builtin.RunnerOptions{Concurrency: f.builtinConcurrency}, nil
}
