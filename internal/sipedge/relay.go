package sipedge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// The relay carries a call's media between the two endpoints without
// reading it: DTLS and SRTP pass through as opaque datagrams. Each side
// (leg) of a call has an RTP and an RTCP socket on the relay address; a
// datagram that arrives on one leg's socket goes out of the other leg's
// socket of the same kind to that endpoint.
//
// An endpoint is expected at the IP address its signalling comes from:
// datagrams from any other address are dropped, so a stranger who guesses
// a relay port can neither inject media nor steal the stream. Within that
// address the relay latches to the port the endpoint actually sends from
// (symmetric RTP), which works behind NATs that keep the address.

// Direction names where a tapped packet was going.
type Direction int

// Directions of relayed packets.
const (
	CallerToCallee Direction = iota
	CalleeToCaller
)

// Tap sees every datagram the relay forwards (tests only). It must not
// keep pkt.
type Tap func(dir Direction, rtcp bool, pkt []byte)

// PortRange is where relay sockets are bound; zero values mean ephemeral
// ports.
type PortRange struct{ Min, Max int }

// relayLeg is one endpoint's side of a relayed call.
type relayLeg struct {
	sock    [2]*net.UDPConn // RTP, RTCP
	allowIP netip.Addr
	peer    [2]atomic.Pointer[netip.AddrPort]
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// relaySession relays one call.
type relaySession struct {
	legs   [2]*relayLeg // caller, callee
	tap    Tap
	closed atomic.Bool
	wg     sync.WaitGroup
}

// newRelaySession opens the sockets of both legs on ip. callerIP and
// calleeIP are the endpoints' signalling addresses.
func newRelaySession(ip netip.Addr, ports PortRange, callerIP, calleeIP netip.Addr, tap Tap) (*relaySession, error) {
	s := &relaySession{tap: tap}
	for i, allow := range []netip.Addr{callerIP, calleeIP} {
		l := &relayLeg{allowIP: allow.Unmap()}
		for k := range 2 {
			c, err := listenRelay(ip, ports)
			if err != nil {
				s.close()
				return nil, err
			}
			l.sock[k] = c
		}
		s.legs[i] = l
	}
	for i := range 2 {
		for k := range 2 {
			s.wg.Add(1)
			go s.run(i, k)
		}
	}
	return s, nil
}

func listenRelay(ip netip.Addr, ports PortRange) (*net.UDPConn, error) {
	if ports.Min == 0 {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	}
	n := ports.Max - ports.Min + 1
	start := rand.IntN(n)
	for i := range n {
		p := ports.Min + (start+i)%n
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
		if err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no free media relay port in %d-%d", ports.Min, ports.Max)
}

// port returns the local port of leg i's socket k (0 RTP, 1 RTCP).
func (s *relaySession) port(i, k int) int {
	return s.legs[i].sock[k].LocalAddr().(*net.UDPAddr).Port
}

// expect sets where leg i's endpoint receives socket k's datagrams until
// it sends one itself.
func (s *relaySession) expect(i, k int, ap netip.AddrPort) {
	if ap.Addr().Unmap() != s.legs[i].allowIP {
		// An endpoint that asks for media elsewhere than where it signals
		// from gets it only once it sends from there.
		return
	}
	s.legs[i].peer[k].CompareAndSwap(nil, &ap)
}

// run reads leg i's socket k and forwards to the other leg.
func (s *relaySession) run(i, k int) {
	defer s.wg.Done()
	in := s.legs[i]
	out := s.legs[1-i]
	buf := make([]byte, 1600)
	for {
		n, from, err := in.sock[k].ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.closed.Load() {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != in.allowIP {
			continue
		}
		if p := in.peer[k].Load(); p == nil || *p != from {
			in.peer[k].Store(&from)
		}
		dst := out.peer[k].Load()
		if dst == nil {
			continue
		}
		if s.tap != nil {
			s.tap(Direction(i), k == 1, buf[:n])
		}
		if _, err := out.sock[k].WriteToUDPAddrPort(buf[:n], *dst); err == nil {
			in.packets.Add(1)
			in.bytes.Add(uint64(n))
		}
	}
}

// counts returns the datagrams and bytes relayed from each leg.
func (s *relaySession) counts() (pkts, bytes [2]uint64) {
	for i, l := range s.legs {
		if l != nil {
			pkts[i], bytes[i] = l.packets.Load(), l.bytes.Load()
		}
	}
	return
}

func (s *relaySession) close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	for _, l := range s.legs {
		if l == nil {
			continue
		}
		for _, c := range l.sock {
			if c != nil {
				c.Close()
			}
		}
	}
	s.wg.Wait()
}
