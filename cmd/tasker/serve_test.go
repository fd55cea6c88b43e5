package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// buildBinary builds the tasker binary once for the tests that run it as a
// process.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tasker-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tasker")
	out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// TestServePortTakenLeavesNoDatabase: serve listens before it opens the
// database, so a port another process holds stops it with a message naming
// the flag, and no database file is left behind.
func TestServePortTakenLeavesNoDatabase(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	require.NoError(t, err)
	var lc net.ListenConfig
	taken, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// Closed after the parallel subtests, which run once this function
	// has returned.
	t.Cleanup(func() { _ = taken.Close() })

	for flag, args := range map[string][]string{
		"--grpc-addr":  {"--grpc-addr", taken.Addr().String(), "--admin-addr", ""},
		"--admin-addr": {"--grpc-addr", "127.0.0.1:0", "--admin-addr", taken.Addr().String()},
	} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "tasker.db")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"serve", "--database", path}, args...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "serve must fail, output: %s", out)
			require.NotZero(t, exit.ExitCode())
			require.Contains(t, string(out), "tasker: "+flag+": listen tcp "+taken.Addr().String())
			require.Contains(t, string(out), "address already in use")
			_, err = os.Stat(path)
			require.ErrorIs(t, err, os.ErrNotExist, "the database file was created")
		})
	}
}
