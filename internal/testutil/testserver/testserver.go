// Package testserver starts a complete Conclave node on loopback for tests
// outside the server package: fresh data directory, media on a random UDP
// port, no ICE-TCP, TURN on random UDP and TCP ports and over TLS on the
// HTTPS port, certificates for 127.0.0.1, and the given open rooms.
// A test may choose another local address instead of loopback (Host).
package testserver

import (
	"context"
	"crypto/x509"
	"log/slog"
	"testing"

	"conclave/internal/config"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/store"
)

// Options adjust the node.
type Options struct {
	// Server holds test hooks (tap, timers, clock).
	Server server.Options
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// OrgName names the organisation in E2EE credentials.
	OrgName string
	// Host is the IPv4 address the node listens on for HTTPS and media,
	// and names itself by; empty means 127.0.0.1. A test that puts a
	// browser in a network namespace (internal/testutil/netns) gives the
	// host end of its link, which the namespace reaches.
	Host string
	// Config, when set, adjusts the node's configuration (an allow list,
	// a debug listener, a participant limit) after the defaults above.
	Config func(*config.Config)
}

// Server is a running node and the CA pool that trusts it.
type Server struct {
	*server.Server
	Roots *x509.CertPool
}

// Start runs a node until the test ends, with an open room per alias.
func Start(t testing.TB, opts Options, rooms ...string) *Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	cfg.Listen = host + ":0"
	cfg.MediaUDP = host + ":0"
	cfg.MediaTCP = ""
	cfg.TURNUDP, cfg.TURNTCP = host+":0", host+":0"
	cfg.Hosts = []string{host, "localhost"}
	if host != "127.0.0.1" {
		cfg.Hosts = append(cfg.Hosts, "127.0.0.1")
	}
	cfg.OrgName = opts.OrgName
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := server.Open(cfg, log, opts.Server)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Close() })
	for _, alias := range rooms {
		if _, err := srv.Store().CreateRoom(context.Background(), store.Room{Alias: alias, DisplayName: "Room " + alias}); err != nil {
			t.Fatalf("create room %s: %v", alias, err)
		}
	}
	roots, err := pki.CAPool(srv.TLS())
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Server: srv, Roots: roots}
}
