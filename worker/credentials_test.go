package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerhq/tasker/server/servertest"
	"github.com/taskerhq/tasker/worker"
)

func TestTokenCredentialsRefuseCleartextOffLoopback(t *testing.T) {
	t.Parallel()
	creds := worker.TokenCredentials("tasker_secret")
	ctx := context.Background() // no TLS: the call's RequestInfo has no security level
	for _, uri := range []string{"https://127.0.0.1:50051/tasker.v1.StepService", "https://localhost:50051/tasker.v1.StepService", "https://[::1]:50051/x"} {
		md, err := creds.GetRequestMetadata(ctx, uri)
		require.NoError(t, err, uri)
		require.Equal(t, "Bearer tasker_secret", md["authorization"])
	}
	for _, uri := range []string{"https://tasker.example.com:443/tasker.v1.StepService", "https://10.0.0.5:50051/x"} {
		_, err := creds.GetRequestMetadata(ctx, uri)
		require.ErrorContains(t, err, "without TLS", uri)
	}
}

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := servertest.NewCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	certFile, keyFile := ca.Issue(t, "client").WriteFiles(t, dir, "client")

	cfg, err := worker.TLSConfig(caFile, certFile, keyFile)
	require.NoError(t, err)
	require.NotNil(t, cfg.RootCAs)
	require.Len(t, cfg.Certificates, 1)

	_, err = worker.TLSConfig(caFile, certFile, "")
	require.ErrorContains(t, err, "both")
	_, err = worker.TLSConfig(certFile+".missing", "", "")
	require.Error(t, err)
	_, err = worker.TLSConfig(keyFile, "", "")
	require.ErrorContains(t, err, "no PEM certificate")
}
