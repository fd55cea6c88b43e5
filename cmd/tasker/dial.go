package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/taskerhq/tasker/worker"
)

// connFlags are how a client command reaches a server besides its
// address: the token and the TLS settings, each also from the environment.
type connFlags struct {
	token   string
	tlsCA   string
	tlsCert string
	tlsKey  string
	tls     bool
	// envErr is a malformed TASKER_TLS, reported when the command dials.
	envErr error
}

func (c *connFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&c.token, "token", env("TASKER_TOKEN", ""), "API token, sent as \"authorization: Bearer\"; prefer TASKER_TOKEN, which ps does not show [TASKER_TOKEN]")
	if v, ok := os.LookupEnv("TASKER_TLS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			c.envErr = fmt.Errorf("TASKER_TLS: want true or false, got %q", v)
		}
		c.tls = b
	}
	fl.BoolVar(&c.tls, "tls", c.tls, "connect with TLS, verifying the server against the system roots (implied by --tls-ca) [TASKER_TLS]")
	fl.StringVar(&c.tlsCA, "tls-ca", env("TASKER_TLS_CA", ""), "PEM file of the CA that signed the server's certificate; turns TLS on [TASKER_TLS_CA]")
	fl.StringVar(&c.tlsCert, "tls-cert", env("TASKER_TLS_CERT", ""), "client certificate (PEM) for a server that requires mutual TLS [TASKER_TLS_CERT]")
	fl.StringVar(&c.tlsKey, "tls-key", env("TASKER_TLS_KEY", ""), "key (PEM) of --tls-cert [TASKER_TLS_KEY]")
}

// dial connects to the Tasker server at addr: with TLS when c asks for it
// (a CA, a client certificate, or --tls), and with c's token on every call.
// The token is never sent in the clear except to a loopback address.
func dial(addr string, c connFlags) (*grpc.ClientConn, error) {
	if c.envErr != nil {
		return nil, c.envErr
	}
	creds := insecure.NewCredentials()
	if c.tls || c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != "" {
		cfg, err := worker.TLSConfig(c.tlsCA, c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if c.token != "" {
		opts = append(opts, worker.WithToken(c.token))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", addr, err)
	}
	return conn, nil
}
