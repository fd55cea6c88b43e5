package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/server/servertest"
)

// TestServeRefusesAuthNoneOffLoopback: --auth none on a non-loopback
// address needs --insecure, and then warns.
func TestServeRefusesAuthNoneOffLoopback(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tasker.db")
	out, err := runTasker(t, "serve", "--database", path, "--grpc-addr", "0.0.0.0:0", "--admin-addr", "", "--auth", "none")
	require.ErrorContains(t, err, "is not a loopback address", out)
	require.ErrorContains(t, err, "--insecure")
	_, statErr := os.Stat(path)
	require.ErrorIs(t, statErr, os.ErrNotExist, "refused before the database is opened")

	_, err = runTasker(t, "serve", "--database", path, "--auth", "maybe")
	require.ErrorContains(t, err, `--auth: want auto, token or none, got "maybe"`)
	_, err = runTasker(t, "serve", "--database", path, "--tls-cert", "x.pem")
	require.ErrorContains(t, err, "give both")
	_, err = runTasker(t, "serve", "--database", path, "--tls-client-ca", "ca.pem")
	require.ErrorContains(t, err, "--tls-client-ca needs --tls-cert")

	srv := startServe(t, "--database", path, "--grpc-addr", "0.0.0.0:0", "--admin-addr", "", "--auth", "none", "--insecure")
	require.Contains(t, srv.warnings, "serving without authentication on a non-loopback address (--auth none --insecure): any client that reaches it may do anything")
}

// TestTokensEndToEnd: a token made with `tasker token create` on the
// database opens a server that listens off loopback (auth auto) over
// mutual TLS to `tasker template apply`, until it is revoked.
func TestTokensEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tasker.db")

	out, err := runTasker(t, "token", "create", "--database", path, "--name", "ops", "--scopes", "templates:write", "--namespaces", "demo", "--expires", "24h")
	require.NoError(t, err, out)
	secret := strings.SplitN(out, "\n", 2)[0]
	require.True(t, strings.HasPrefix(secret, "tasker_"), out)
	_, err = runTasker(t, "token", "create", "--database", path, "--name", "ops", "--scopes", "admin", "--namespaces", "*")
	require.ErrorContains(t, err, "already exists")
	_, err = runTasker(t, "token", "create", "--database", path, "--name", "x", "--scopes", "root", "--namespaces", "*")
	require.ErrorContains(t, err, `--scopes: unknown scope "root"`)

	list, err := runTasker(t, "token", "list", "--database", path)
	require.NoError(t, err)
	require.Contains(t, list, "ops")
	require.Contains(t, list, "templates:write")
	require.Contains(t, list, "active")
	require.NotContains(t, list, secret)

	ca := servertest.NewCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	serverCert, serverKey := ca.Issue(t, "server").WriteFiles(t, dir, "server")
	clientCert, clientKey := ca.Issue(t, "client").WriteFiles(t, dir, "client")
	srv := startServe(t, "--database", path, "--grpc-addr", "0.0.0.0:0", "--admin-addr", "",
		"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", caFile)
	_, port, err := net.SplitHostPort(srv.grpcAddr)
	require.NoError(t, err)
	addr := "127.0.0.1:" + port
	tpl := filepath.Join("..", "..", "examples", "templates", "diamond.yaml")
	tlsFlags := []string{"--tls-ca", caFile, "--tls-cert", clientCert, "--tls-key", clientKey}

	apply := func(extra ...string) (string, error) {
		return runTasker(t, append(append([]string{"template", "apply", tpl, "--addr", addr}, tlsFlags...), extra...)...)
	}
	out, err = apply("--token", secret)
	require.NoError(t, err, out)
	require.Contains(t, out, "REGISTRATION_OUTCOME_CREATED")
	_, err = apply()
	require.ErrorContains(t, err, "Unauthenticated")
	_, err = runTasker(t, "template", "apply", tpl, "--addr", addr, "--tls-ca", caFile, "--token", secret)
	require.Error(t, err, "mutual TLS refuses a client without a certificate")

	out, err = runTasker(t, "token", "revoke", "ops", "--database", path)
	require.NoError(t, err, out)
	require.Contains(t, out, `revoked token "ops"`)
	require.Eventually(t, func() bool {
		_, err := apply("--token", secret)
		return err != nil && strings.Contains(err.Error(), "revoked")
	}, 20*time.Second, 100*time.Millisecond)
	_, err = runTasker(t, "token", "revoke", "nobody", "--database", path)
	require.ErrorContains(t, err, `no token named "nobody"`)
}

// served is a `tasker serve` process started by startServe.
type served struct {
	grpcAddr string
	// warnings are the messages the server logged at warn level or above
	// before it served.
	warnings []string
}

// startServe runs `tasker serve` with args as a process until the test
// ends, and waits until it serves.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{"serve"}, args...)...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	s := &served{}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) != nil {
			continue
		}
		if rec["level"] == "WARN" || rec["level"] == "ERROR" {
			s.warnings = append(s.warnings, rec["msg"].(string))
		}
		if rec["msg"] == "serving" {
			s.grpcAddr, _ = rec["grpc_addr"].(string)
			go func() {
				for lines.Scan() {
				}
			}()
			return s
		}
	}
	t.Fatalf("serve exited before serving; warnings: %v", s.warnings)
	return nil
}

// TestDatabasePasswordNotEchoed: a PostgreSQL server that cannot be
// reached fails start-up without the password in the message.
func TestDatabasePasswordNotEchoed(t *testing.T) {
	t.Parallel()
	const password = "n0t-the-Password-4711"
	// Port 1: nothing listens there, so the connection is refused.
	url := "postgres://postgres:" + password + "@127.0.0.1:1/tasker?sslmode=disable&connect_timeout=5"
	out, err := runTasker(t, "token", "list", "--database", url)
	require.Error(t, err)
	require.ErrorContains(t, err, "postgres://postgres@127.0.0.1:1/tasker")
	require.NotContains(t, err.Error(), password)
	require.NotContains(t, out, password)
	out, err = runTasker(t, "serve", "--database", url, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "")
	require.Error(t, err)
	require.NotContains(t, err.Error(), password)
	require.NotContains(t, out, password)
}
