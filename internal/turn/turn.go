// Package turn is the conference node's embedded TURN server (RFC 8656, on
// github.com/pion/turn/v5): it carries media for participants whose
// networks let nothing through but a TCP connection to the HTTPS port.
//
// It listens on UDP and TCP (3478 by default) and, through [Demux], over
// TLS on the HTTPS port itself. It is not a general-purpose relay:
//
//   - Credentials are issued per participant at join, in the TURN REST API
//     scheme (username "<expiry>:<participant>", password an HMAC of the
//     username under a secret that never leaves the process), and live a
//     few minutes. An expired credential cannot open an allocation; an
//     allocation already open keeps being refreshed while its participant
//     is in a meeting, and ends when the participant leaves ([Server.Release]).
//   - Relays reach only the node's own media addresses (the SFU's UDP
//     port on the addresses it announces): permissions toward any other
//     address are refused, and datagrams from or to any other port are
//     dropped.
//   - Each participant holds a bounded number of allocations, and each
//     allocation a bounded bit rate each way.
//   - Only UDP relays are offered (RFC 6062 TCP relays are refused).
//
// Everything it refuses is counted ([Server.Stats]) and served as metrics.
package turn

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/turn/v5"

	"conclave/internal/pionlog"
	"conclave/internal/signal"
)

// Defaults of the quotas and the credentials' lifetime.
const (
	// DefaultTTL is how long a credential can open allocations.
	DefaultTTL = 10 * time.Minute
	// DefaultMaxBitrate is the most an allocation relays each way, in
	// bit/s: above the most a participant of a large meeting receives
	// (several HD layers and a screen share), far below what would let
	// one participant starve the node.
	DefaultMaxBitrate = 20_000_000
	// DefaultPerParticipant bounds one participant's allocations: a
	// browser opens one per TURN URL (three) and per peer connection
	// (two), and an ICE restart opens new ones before the old expire.
	DefaultPerParticipant = 16
	// DefaultMaxAllocations bounds the node's allocations.
	DefaultMaxAllocations = 10000
)

// Realm is the TURN realm of Conclave's credentials.
const Realm = "conclave"

// Config configures the TURN server of a node.
type Config struct {
	// UDPAddr and TCPAddr are where TURN listens over UDP and TCP, e.g.
	// ":3478"; empty disables the transport.
	UDPAddr, TCPAddr string
	// TLS, when set, receives TURN connections that arrived over TLS on
	// the HTTPS port ([Demux.TURN]); TLSPort is that port as clients
	// reach it (the turns: URL).
	TLS     net.Listener
	TLSPort int
	// Host is the name or address clients reach the node by, as in the
	// web client's URL; it goes into the TURN URLs (and must be covered
	// by the HTTPS certificate for TURN over TLS).
	Host string
	// RelayIP is the address relay sockets bind to and announce. Relays
	// only talk to the node's SFU, so loopback is right when the SFU
	// listens on it.
	RelayIP netip.Addr
	// Peers are the only addresses relays may reach: the SFU's media
	// port on each address it announces.
	Peers []netip.AddrPort
	// TTL is how long a credential can open allocations (DefaultTTL if
	// zero).
	TTL time.Duration
	// MaxBitrate is the most one allocation relays each way, in bit/s
	// (DefaultMaxBitrate if zero).
	MaxBitrate int64
	// PerParticipant and MaxAllocations bound the allocations of one
	// participant and of the node (defaults if zero).
	PerParticipant, MaxAllocations int
	// Now reads the clock for expiries and rate limits; nil is time.Now.
	Now func() time.Time
	// ListenUDP opens relay sockets; nil is net.ListenUDP. Tests that run
	// the node inside a network namespace open them there.
	ListenUDP func(network string, laddr *net.UDPAddr) (*net.UDPConn, error)
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Server is a running TURN server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	secret []byte
	peers  map[netip.AddrPort]bool
	peerIP map[netip.Addr]bool
	pion   *turn.Server
	udp    net.PacketConn
	tcp    net.Listener
	udpURL string // "host:port" of each transport, empty when off
	tcpURL string
	tlsURL string
	stats  *counters

	mu     sync.Mutex
	live   map[string]bool                    // participants in a meeting
	relays map[string]map[*relayConn]struct{} // open relays by participant
	total  int                                // open relays
}

// New starts a TURN server. It fails if a listener cannot be opened or
// the configuration is incomplete.
func New(cfg Config) (*Server, error) {
	if cfg.UDPAddr == "" && cfg.TCPAddr == "" && cfg.TLS == nil {
		return nil, errors.New("turn: no transport: set a UDP or TCP address, or TLS")
	}
	if cfg.Host == "" {
		return nil, errors.New("turn: no host name for the TURN URLs")
	}
	if !cfg.RelayIP.IsValid() {
		return nil, errors.New("turn: no relay address")
	}
	if len(cfg.Peers) == 0 {
		return nil, errors.New("turn: no media address to relay to")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxBitrate <= 0 {
		cfg.MaxBitrate = DefaultMaxBitrate
	}
	if cfg.PerParticipant <= 0 {
		cfg.PerParticipant = DefaultPerParticipant
	}
	if cfg.MaxAllocations <= 0 {
		cfg.MaxAllocations = DefaultMaxAllocations
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ListenUDP == nil {
		cfg.ListenUDP = net.ListenUDP
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log.With("part", "turn"), secret: make([]byte, 32),
		peers: map[netip.AddrPort]bool{}, peerIP: map[netip.Addr]bool{},
		live: map[string]bool{}, relays: map[string]map[*relayConn]struct{}{}, stats: newCounters()}
	if _, err := rand.Read(s.secret); err != nil {
		return nil, fmt.Errorf("turn: secret: %w", err)
	}
	for _, p := range cfg.Peers {
		p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
		s.peers[p] = true
		s.peerIP[p.Addr()] = true
	}
	ok := false
	defer func() {
		if !ok {
			s.closeListeners()
		}
	}()
	gen := &relayGenerator{s: s}
	perm := s.permitted
	sc := turn.ServerConfig{
		Realm:         Realm,
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.quota,
		LoggerFactory: pionlog.Factory(log, slog.LevelDebug),
		EventHandler:  s.events(),
	}
	if cfg.UDPAddr != "" {
		c, err := net.ListenPacket("udp", cfg.UDPAddr)
		if err != nil {
			return nil, fmt.Errorf("open TURN UDP port %s: %w", cfg.UDPAddr, err)
		}
		s.udp = c
		s.udpURL = hostPort(cfg.Host, c.LocalAddr().(*net.UDPAddr).Port)
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{PacketConn: c,
			RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	if cfg.TCPAddr != "" {
		l, err := net.Listen("tcp", cfg.TCPAddr)
		if err != nil {
			return nil, fmt.Errorf("open TURN TCP port %s: %w", cfg.TCPAddr, err)
		}
		s.tcp = l
		s.tcpURL = hostPort(cfg.Host, l.Addr().(*net.TCPAddr).Port)
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{Listener: l,
			RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	if cfg.TLS != nil {
		if cfg.TLSPort <= 0 {
			return nil, errors.New("turn: TLS without the HTTPS port")
		}
		s.tlsURL = hostPort(cfg.Host, cfg.TLSPort)
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{Listener: cfg.TLS,
			RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	srv, err := turn.NewServer(sc)
	if err != nil {
		return nil, fmt.Errorf("start TURN server: %w", err)
	}
	s.pion = srv
	ok = true
	s.log.Info("TURN server started", "udp", s.UDPAddr(), "tcp", s.TCPAddr(), "tls_port", cfg.TLSPort,
		"relay", cfg.RelayIP, "peers", cfg.Peers)
	return s, nil
}

// hostPort joins host and port for a TURN URL, bracketing IPv6 literals.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// UDPAddr is the UDP listener's address, nil when TURN over UDP is off.
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// TCPAddr is the TCP listener's address, nil when TURN over TCP is off.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// ICEServers returns the node's TURN servers with a fresh credential for
// participant, and marks the participant present until Release: an
// allocation opened with its credentials may then be refreshed after the
// credential expires.
func (s *Server) ICEServers(participant string) []signal.ICEServer {
	user, pass := s.credential(participant, s.cfg.Now().Add(s.cfg.TTL))
	s.mu.Lock()
	s.live[participant] = true
	s.mu.Unlock()
	var urls []string
	if s.udpURL != "" {
		urls = append(urls, "turn:"+s.udpURL+"?transport=udp")
	}
	if s.tcpURL != "" {
		urls = append(urls, "turn:"+s.tcpURL+"?transport=tcp")
	}
	if s.tlsURL != "" {
		urls = append(urls, "turns:"+s.tlsURL+"?transport=tcp")
	}
	return []signal.ICEServer{{URLs: urls, Username: user, Credential: pass}}
}

// TTL is how long the credentials ICEServers returns can open
// allocations.
func (s *Server) TTL() time.Duration { return s.cfg.TTL }

// Release ends participant's relays and refuses its credentials from now
// on: it left its meeting.
func (s *Server) Release(participant string) {
	s.mu.Lock()
	delete(s.live, participant)
	conns := s.relays[participant]
	delete(s.relays, participant)
	s.mu.Unlock()
	for c := range conns {
		c.Close() // the allocation's read loop ends and pion deletes it
	}
	if len(conns) > 0 {
		s.log.Debug("relays of a departed participant closed", "participant", participant, "relays", len(conns))
	}
}

// Present reports whether participant holds credentials that can open
// allocations: it was given some (ICEServers) and has not left (Release).
func (s *Server) Present(participant string) bool { return s.present(participant) }

func (s *Server) present(participant string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[participant]
}

// Close stops the server and ends every allocation. The TLS listener
// given in Config is closed too.
func (s *Server) Close() error {
	err := s.pion.Close()
	s.mu.Lock()
	var conns []*relayConn
	for _, m := range s.relays {
		for c := range m {
			conns = append(conns, c)
		}
	}
	s.relays = map[string]map[*relayConn]struct{}{}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return err
}

func (s *Server) closeListeners() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}
