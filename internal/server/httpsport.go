package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"conclave/internal/clock"
	"conclave/internal/config"
	"conclave/internal/meeting"
	"conclave/internal/sfu"
	"conclave/internal/turn"
)

// httpsPort is the HTTPS port of a node that serves participants, which
// it shares with TURN over TLS, and the node's embedded TURN server.
// `conclave serve` and `conclave node run` (conference and edge nodes)
// open it alike, from the same settings (--turn-*, docs/admin.md, "Media
// through firewalls"): each node relays for the participants that joined
// it, toward its own SFU only.
type httpsPort struct {
	demux *turn.Demux
	relay *turn.Server // nil when TURN is off
	tls   bool         // TURN over TLS on this port
}

// newHTTPSPort shares ln, the HTTPS listener (limited per client
// address), between HTTP and TURN over TLS (--turn-tls): the demux tells
// one from the other after the TLS handshake.
func newHTTPSPort(ln net.Listener, cfg config.Config, log *slog.Logger) *httpsPort {
	return &httpsPort{demux: turn.NewDemux(ln, cfg.TURNTLS, log), tls: cfg.TURNTLS}
}

// openTURN starts the embedded TURN server when cfg enables it: over UDP
// and TCP on their own ports, over TLS through the HTTPS port, with
// relays bound for the SFU's media port only. Its URLs name the host of
// publicURL, and TLS its port, as clients reach the web client. listen
// opens relay sockets (nil is net.ListenUDP).
func (p *httpsPort) openTURN(cfg config.Config, publicURL string, engine *sfu.Engine, clk clock.Clock,
	listen func(string, *net.UDPAddr) (*net.UDPConn, error), log *slog.Logger) error {
	if !cfg.TURNEnabled() {
		return nil
	}
	media, ok := engine.UDPAddr().(*net.UDPAddr)
	if !ok {
		return errors.New("TURN: the media socket is not UDP")
	}
	peers, err := turn.MediaPeers(media, cfg.PublicIPs)
	if err != nil {
		return fmt.Errorf("TURN: %w", err)
	}
	relayIP := turn.RelayIP(media)
	if cfg.TURNRelayIP != "" {
		if relayIP, err = turn.ParseRelayIP(cfg.TURNRelayIP); err != nil {
			return fmt.Errorf("TURN: --turn-relay-ip: %w", err)
		}
	}
	u, err := url.Parse(publicURL)
	if err != nil {
		return fmt.Errorf("TURN: public URL %q: %w", publicURL, err)
	}
	tc := turn.Config{UDPAddr: cfg.TURNUDP, TCPAddr: cfg.TURNTCP, Host: u.Hostname(), RelayIP: relayIP,
		Peers: peers, TTL: cfg.TURNTTL, MaxBitrate: cfg.TURNMaxBitrate, Now: clk.Now, ListenUDP: listen, Logger: log}
	if cfg.TURNTLS {
		tc.TLS, tc.TLSPort = p.demux.TURN(), 443
		if port := u.Port(); port != "" {
			tc.TLSPort, _ = strconv.Atoi(port)
		}
	}
	if p.relay, err = turn.New(tc); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("TURN: %w: another program, or another Conclave node on this machine, holds it; "+
				"give this one other addresses with --turn-udp and --turn-tcp, or turn them off with --turn-udp \"\" --turn-tcp \"\"", err)
		}
		return fmt.Errorf("TURN: %w", err)
	}
	return nil
}

// meetingRelay is the TURN server as the meetings see it (the welcome's
// ICE servers), nil when TURN is off.
func (p *httpsPort) meetingRelay() meeting.Relay {
	if p.relay == nil {
		return nil
	}
	return p.relay
}

// stats reads the TURN server's figures for the metrics, nil when TURN
// is off.
func (p *httpsPort) stats() func() turn.Stats {
	if p.relay == nil {
		return nil
	}
	return p.relay.Stats
}

// tlsConfig is base offering TURN's ALPN name (RFC 7443) after HTTP/2
// and HTTP/1.1 when TURN over TLS is on.
func (p *httpsPort) tlsConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	if p.tls {
		c.NextProtos = append(c.NextProtos, turn.ALPN)
	}
	return c
}

// server is the HTTP server of the port: handler behind TLS configured
// by tlsCfg (made from tlsConfig), which TURN over TLS uses too
// (certificate, versions, suites, groups, client certificates).
func (p *httpsPort) server(handler http.Handler, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           turn.WithTLSState(handler),
		ConnContext:       turn.ConnContext,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	p.demux.SetTLSConfig(srv.TLSConfig)
	return srv
}

// serve serves srv (made by server) on the port until it shuts down: the
// demux completes the TLS handshakes and hands HTTPS connections over,
// TURN ones to the TURN server.
func (p *httpsPort) serve(srv *http.Server) error { return srv.Serve(p.demux.HTTP()) }

// Close stops the TURN server and closes the port.
func (p *httpsPort) Close() error {
	var err error
	if p.relay != nil {
		err = p.relay.Close()
	}
	return errors.Join(err, p.demux.Close())
}
