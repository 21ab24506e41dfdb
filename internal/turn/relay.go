package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/turn/v5"
)

// relayGenerator opens the relay sockets of allocations: UDP sockets on
// the relay address, wrapped so that they talk to the node's media
// addresses only and within the allocation's bit rate.
type relayGenerator struct{ s *Server }

var errTCPRelay = errors.New("turn: TCP relays (RFC 6062) are not offered")

// Validate implements turn.RelayAddressGenerator.
func (g *relayGenerator) Validate() error { return nil }

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.s
	ip := s.cfg.RelayIP
	if (conf.Network == "udp6") != (ip.Is6() && !ip.Is4In6()) {
		return nil, nil, fmt.Errorf("turn: the relay address %s is not of the family asked for (%s)", ip, conf.Network)
	}
	conn, err := s.cfg.ListenUDP(conf.Network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(conf.RequestedPort))))
	if err != nil {
		return nil, nil, fmt.Errorf("turn: open relay socket: %w", err)
	}
	rate := float64(s.cfg.MaxBitrate) / 8
	now := s.cfg.Now()
	c := &relayConn{UDPConn: conn, s: s, participant: conf.UserID,
		up: newBucket(rate, now), down: newBucket(rate, now)}
	s.mu.Lock()
	if s.total >= s.cfg.MaxAllocations || len(s.relays[conf.UserID]) >= s.cfg.PerParticipant || !s.live[conf.UserID] {
		// A race with another allocation of the same participant, or
		// with its leaving, lost after the quota check.
		s.mu.Unlock()
		conn.Close()
		return nil, nil, errors.New("turn: allocation quota reached")
	}
	m := s.relays[conf.UserID]
	if m == nil {
		m = map[*relayConn]struct{}{}
		s.relays[conf.UserID] = m
	}
	m[c] = struct{}{}
	s.total++
	s.mu.Unlock()
	return c, conn.LocalAddr(), nil
}

// AllocateListener implements turn.RelayAddressGenerator: TCP relays are
// refused.
func (g *relayGenerator) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	g.s.stats.refused[RefusedTCPRelay].Add(1)
	return nil, nil, errTCPRelay
}

// AllocateConn implements turn.RelayAddressGenerator: TCP relays are
// refused.
func (g *relayGenerator) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	g.s.stats.refused[RefusedTCPRelay].Add(1)
	return nil, errTCPRelay
}

// relayConn is an allocation's relay socket. Datagrams to or from
// anything but the node's media addresses are dropped (the permission
// handler already keeps other addresses out; this also holds the port),
// and so are datagrams beyond the allocation's bit rate each way.
type relayConn struct {
	*net.UDPConn
	s           *Server
	participant string
	up, down    bucket // client to peer (WriteTo), peer to client (ReadFrom)
	closeOnce   sync.Once
}

// ReadFrom returns the next datagram from a media address within the
// rate.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, ap, err := c.UDPConn.ReadFromUDPAddrPort(p)
		if err != nil {
			return n, nil, err
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if !c.s.peers[ap] {
			c.s.stats.dropped[DroppedPeer].Add(1)
			continue
		}
		if !c.down.take(n, c.s.cfg.Now()) {
			c.s.stats.dropped[DroppedRate].Add(1)
			continue
		}
		c.s.stats.toClient.Add(uint64(n))
		return n, net.UDPAddrFromAddrPort(ap), nil
	}
}

// WriteTo sends p to addr if it is a media address and the rate allows;
// otherwise p is dropped (a TURN client learns nothing of the fate of
// what it relays).
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("turn: relay to a %T", addr)
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !c.s.peers[ap] {
		c.s.stats.dropped[DroppedPeer].Add(1)
		return len(p), nil
	}
	if !c.up.take(len(p), c.s.cfg.Now()) {
		c.s.stats.dropped[DroppedRate].Add(1)
		return len(p), nil
	}
	n, err := c.UDPConn.WriteToUDPAddrPort(p, ap)
	c.s.stats.toPeer.Add(uint64(n))
	return n, err
}

// Close closes the socket and forgets the relay.
func (c *relayConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.UDPConn.Close()
		s := c.s
		s.mu.Lock()
		if m := s.relays[c.participant]; m != nil {
			if _, ok := m[c]; ok {
				delete(m, c)
				if len(m) == 0 {
					delete(s.relays, c.participant)
				}
			}
		}
		s.total--
		s.mu.Unlock()
	})
	return err
}

// bucket is a token bucket of bytes: rate bytes a second, up to half a
// second's worth at once (a key frame comes as a burst).
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, now time.Time) bucket {
	return bucket{rate: rate, tokens: rate / 2, last: now}
}

// take spends n bytes if the bucket holds them.
func (b *bucket) take(n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.tokens+d.Seconds()*b.rate, b.rate/2)
		b.last = now
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// netipAddr converts a peer IP of the TURN library.
func netipAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

// MediaPeers lists the addresses a node's relays may reach: the SFU's
// UDP port on the address it listens on, or on every address of this
// machine when it listens on all of them, and on each public address it
// announces (1:1 NAT).
func MediaPeers(media *net.UDPAddr, public []string) ([]netip.AddrPort, error) {
	port := uint16(media.Port)
	var ips []netip.Addr
	if media.IP == nil || media.IP.IsUnspecified() {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("turn: list this machine's addresses: %w", err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netipAddr(n.IP); ok && !ip.IsLinkLocalUnicast() {
					ips = append(ips, ip)
				}
			}
		}
	} else {
		ip, _ := netipAddr(media.IP)
		ips = append(ips, ip)
	}
	for _, p := range public {
		ip, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("turn: public address %q: %w", p, err)
		}
		ips = append(ips, ip.Unmap())
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	return out, nil
}

// RelayIP picks the relay sockets' address for an SFU listening on
// media: loopback when it listens on all addresses or on loopback (the
// relayed media then never leaves the machine), its own address
// otherwise.
func RelayIP(media *net.UDPAddr) netip.Addr {
	if media.IP == nil || media.IP.IsUnspecified() {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	ip, _ := netipAddr(media.IP)
	return ip
}

// ParseRelayIP reads a --turn-relay-ip value.
func ParseRelayIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("turn: relay address %q is not an IP address", s)
	}
	return ip.Unmap(), nil
}
