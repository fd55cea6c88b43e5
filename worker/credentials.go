package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// WithToken returns the dial option that sends token as
// "authorization: Bearer <token>" on every call of the connection:
//
//	conn, err := grpc.NewClient(addr, tlsOption, worker.WithToken(os.Getenv("TASKER_TOKEN")))
//
// The token is refused on a connection without TLS, unless the server is
// on a loopback address, so a misconfigured client never sends it in the
// clear over a network.
func WithToken(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(TokenCredentials(token))
}

// TokenCredentials returns the per-RPC credentials WithToken uses, for
// callers that assemble their own dial options.
func TokenCredentials(token string) credentials.PerRPCCredentials {
	return tokenCredentials{header: map[string]string{"authorization": "Bearer " + token}}
}

type tokenCredentials struct {
	header map[string]string
}

// GetRequestMetadata adds the header, after checking that the connection
// is private or local. uri is the call's audience, https://<authority>/<service>.
func (c tokenCredentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity) != nil && !loopbackAudience(uri) {
		return nil, errors.New("tasker token: refusing to send a token without TLS to a server that is not on loopback; configure TLS")
	}
	return c.header, nil
}

// RequireTransportSecurity is false so that a loopback server without TLS
// can be used; GetRequestMetadata enforces TLS for every other address.
func (tokenCredentials) RequireTransportSecurity() bool { return false }

// loopbackAudience reports whether every audience names a loopback host.
func loopbackAudience(uris []string) bool {
	if len(uris) == 0 {
		return false
	}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil {
			return false
		}
		if !LoopbackHost(u.Hostname()) {
			return false
		}
	}
	return true
}

// LoopbackHost reports whether host (a name or an IP, without port) is
// this machine: "localhost" or a loopback address.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TLSConfig returns the client TLS settings for a Tasker server: caFile
// is the PEM bundle that signed the server's certificate (empty for the
// system roots); certFile and keyFile, both or neither, are the client
// certificate for a server that requires mutual TLS.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("TLS client certificate: give both the certificate and the key, or neither")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
