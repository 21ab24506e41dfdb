package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"conclave/internal/pki"
)

var lookupEnv = os.LookupEnv

// firstHost is the address printed in links when no public URL is set: a
// non-loopback IPv4 address of this machine, else 127.0.0.1.
func firstHost() string {
	for _, h := range pki.DefaultHosts() {
		if ip := net.ParseIP(h); ip != nil && !ip.IsLoopback() && ip.To4() != nil {
			return h
		}
	}
	return "127.0.0.1"
}

// trustedRoots returns the CAs a client command (join, loadtest) trusts:
// the PEM file ca, else <data>/tls/ca.crt when it exists, else nil (the
// system roots).
func trustedRoots(ca, data string) (*x509.CertPool, error) {
	path := ca
	if path == "" && data != "" {
		p := filepath.Join(data, "tls", pki.CACertFile)
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	}
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// logLevel reads a --log-level value; a bad one is explained on stderr
// for the command cmd, and ok is false.
func logLevel(cmd, flagName, value string, stderr io.Writer) (level slog.Level, ok bool) {
	if err := level.UnmarshalText([]byte(value)); err != nil {
		fmt.Fprintf(stderr, "conclave %s: %s %q: use debug, info, warn or error\n", cmd, flagName, value)
		return level, false
	}
	return level, true
}
