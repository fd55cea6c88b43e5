package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
)

// The values of --auth.
const (
	authAuto  = "auto"
	authToken = "token"
	authNone  = "none"
)

func parseAuthMode(v string) (string, error) {
	switch m := strings.ToLower(v); m {
	case authAuto, authToken, authNone:
		return m, nil
	}
	return "", fmt.Errorf("--auth: want auto, token or none, got %q", v)
}

// resolveAuth settles --auth against the addresses actually bound: auto is
// none while every listener is on loopback (so a bare `tasker serve` needs
// no token) and token otherwise; none off loopback needs --insecure, and
// then warns at every start.
func resolveAuth(ctx context.Context, log *slog.Logger, mode string, insecure bool, listeners ...net.Listener) (string, error) {
	var exposed []string
	for _, l := range listeners {
		if l != nil && !loopbackAddr(l.Addr()) {
			exposed = append(exposed, l.Addr().String())
		}
	}
	if mode == authAuto {
		mode = authNone
		if len(exposed) > 0 {
			mode = authToken
		}
	}
	switch {
	case mode == authNone && len(exposed) > 0 && !insecure:
		return "", fmt.Errorf("--auth none: %s is not a loopback address, so anyone who reaches it could do anything; "+
			"use --auth token, bind to 127.0.0.1, or add --insecure if a network boundary already protects it", strings.Join(exposed, ", "))
	case mode == authNone && len(exposed) > 0:
		log.WarnContext(ctx, "serving without authentication on a non-loopback address (--auth none --insecure): any client that reaches it may do anything",
			slog.Any("addresses", exposed))
	default:
		log.InfoContext(ctx, "authentication", slog.String("mode", mode))
	}
	return mode, nil
}

func loopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// serverTLS loads the server's certificate and, for mutual TLS, the CA
// client certificates must be signed by; nil when TLS is off.
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		if clientCA != "" {
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")
		}
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key: give both, or neither")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", clientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
