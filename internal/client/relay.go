package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"conclave/internal/signal"
)

// Relay transports a client may restrict TURN to (Options.RelayOver).
const (
	RelayUDP = "udp" // turn:host:port?transport=udp
	RelayTCP = "tcp" // turn:host:port?transport=tcp
	RelayTLS = "tls" // turns:host:port?transport=tcp (the HTTPS port)
)

// turnDialer connects to TURN servers over TCP for Pion's ICE agent (its
// proxy dialer) and completes TLS for turns: servers with the session's
// own TLS configuration: Pion's built-in turns: client trusts only the
// system roots, and Conclave's certificate usually comes from the
// organisation's CA.
type turnDialer struct {
	tls *tls.Config

	mu  sync.Mutex
	tcp map[string]string // host:port of turns: servers -> TLS server name
}

// turnDialTimeout bounds a TCP connection and TLS handshake to TURN.
const turnDialTimeout = 10 * time.Second

// Dial implements golang.org/x/net/proxy.Dialer.
func (d *turnDialer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), turnDialTimeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	name, secure := d.tcp[addr]
	d.mu.Unlock()
	if !secure {
		return c, nil
	}
	cfg := d.tls.Clone()
	cfg.ServerName = name
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TURN over TLS to %s: %w", addr, tlsError(err))
	}
	return tc, nil
}

// iceServers turns the server's list into Pion's, keeping only the TURN
// transport asked for (all when over is empty), and tells the dialer
// which TCP servers speak TLS.
func (d *turnDialer) iceServers(servers []signal.ICEServer, over string) []webrtc.ICEServer {
	secure := map[string]string{}
	var out []webrtc.ICEServer
	for _, v := range servers {
		var urls []string
		for _, u := range v.URLs {
			uri, err := stun.ParseURI(u)
			if err != nil {
				continue // Pion would refuse the whole configuration
			}
			transport := ""
			switch {
			case uri.Scheme == stun.SchemeTypeTURNS && uri.Proto == stun.ProtoTypeTCP:
				transport = RelayTLS
				secure[net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))] = uri.Host
			case uri.Scheme == stun.SchemeTypeTURN && uri.Proto == stun.ProtoTypeTCP:
				transport = RelayTCP
			case uri.Scheme == stun.SchemeTypeTURN:
				transport = RelayUDP
			}
			if over != "" && transport != over {
				continue
			}
			urls = append(urls, u)
		}
		if len(urls) > 0 {
			out = append(out, webrtc.ICEServer{URLs: urls, Username: v.Username, Credential: v.Credential})
		}
	}
	d.mu.Lock()
	d.tcp = secure
	d.mu.Unlock()
	return out
}

// transportPolicy is the ICE transport policy of the session's peer
// connections: relay only when the server or the options ask for it.
func (s *Session) transportPolicy() webrtc.ICETransportPolicy {
	if s.opts.ForceRelay || s.relayOnly {
		return webrtc.ICETransportPolicyRelay
	}
	return webrtc.ICETransportPolicyAll
}

// onICEServers takes fresh TURN credentials: the peer connections use
// them for allocations opened from now on (an ICE restart).
func (s *Session) onICEServers(m *signal.Message) {
	s.iceServers = m.ICEServers
	if s.peers == nil {
		return
	}
	ice := s.dialer.iceServers(m.ICEServers, s.opts.RelayOver)
	for _, pc := range []*webrtc.PeerConnection{s.peers.pub, s.peers.sub} {
		c := pc.GetConfiguration()
		c.ICEServers, c.ICETransportPolicy = ice, s.transportPolicy()
		if err := pc.SetConfiguration(c); err != nil {
			s.log.Warn("cannot update the TURN servers of a peer connection", "err", err)
		}
	}
}

// Path is the candidate pair a peer connection carries its media over,
// as its statistics report it.
type Path struct {
	PC     string // signal.PCPublish or signal.PCSubscribe
	Local  string // local candidate type: host, srflx, prflx or relay
	Remote string // remote candidate type
	// Protocol is the local candidate's transport (udp, or tcp for
	// ICE-TCP); RelayProtocol, for a relay candidate, how it reaches
	// the TURN server (udp, tcp or tls).
	Protocol, RelayProtocol string
}

// Paths returns the selected candidate pairs of the session's peer
// connections (none before ICE connects or after the session ended).
func (s *Session) Paths() []Path {
	type pcs struct{ pub, sub *webrtc.PeerConnection }
	ch := make(chan pcs, 1)
	if !s.post(func() {
		if s.peers == nil {
			ch <- pcs{}
			return
		}
		ch <- pcs{s.peers.pub, s.peers.sub}
	}) {
		return nil
	}
	var got pcs
	select {
	case got = <-ch:
	case <-s.done:
		return nil
	}
	var out []Path
	for name, pc := range map[string]*webrtc.PeerConnection{signal.PCPublish: got.pub, signal.PCSubscribe: got.sub} {
		if pc == nil {
			continue
		}
		report := pc.GetStats()
		for _, st := range report {
			pair, ok := st.(webrtc.ICECandidatePairStats)
			if !ok || !pair.Nominated || pair.State != webrtc.StatsICECandidatePairStateSucceeded {
				continue
			}
			local, _ := report[pair.LocalCandidateID].(webrtc.ICECandidateStats)
			remote, _ := report[pair.RemoteCandidateID].(webrtc.ICECandidateStats)
			out = append(out, Path{PC: name, Local: local.CandidateType.String(), Remote: remote.CandidateType.String(),
				Protocol: local.Protocol, RelayProtocol: local.RelayProtocol})
		}
	}
	return out
}
