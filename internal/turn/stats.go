package turn

import (
	"net"
	"sync/atomic"

	"github.com/pion/turn/v5"
)

// Why requests are refused (Stats.Refused).
const (
	RefusedMalformed  = "malformed"  // username not of Conclave's form, or another realm
	RefusedAbsent     = "absent"     // credential of a participant not in a meeting (left, or never joined)
	RefusedExpired    = "expired"    // an allocation asked for with an expired credential
	RefusedCredential = "credential" // wrong password (message integrity check failed)
	RefusedPeer       = "peer"       // permission toward an address that is not the node's media
	RefusedQuota      = "quota"      // the participant or the node holds the most allocations allowed
	RefusedTCPRelay   = "tcp-relay"  // an RFC 6062 TCP relay asked for
)

// Why relayed datagrams are dropped (Stats.Dropped).
const (
	DroppedPeer = "peer" // to or from a port that is not the node's media
	DroppedRate = "rate" // beyond the allocation's bit rate
)

// Transports TURN clients reach the server over.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
	TransportTLS = "tls"
)

var (
	refusalReasons = []string{RefusedMalformed, RefusedAbsent, RefusedExpired, RefusedCredential, RefusedPeer, RefusedQuota, RefusedTCPRelay}
	dropReasons    = []string{DroppedPeer, DroppedRate}
	transports     = []string{TransportUDP, TransportTCP, TransportTLS}
)

// Stats are the TURN server's figures since it started.
type Stats struct {
	// Allocations are open now, AllocationsTotal were opened, by
	// transport (udp, tcp, tls).
	Allocations      map[string]int64
	AllocationsTotal map[string]uint64
	// BytesToPeer were relayed from clients to the SFU, BytesToClient
	// from the SFU to clients (UDP payloads).
	BytesToPeer, BytesToClient uint64
	// Refused counts refused requests by reason (Refused* constants).
	Refused map[string]uint64
	// Dropped counts dropped datagrams by reason (Dropped* constants).
	Dropped map[string]uint64
}

type counters struct {
	open, opened     map[string]*atomic.Int64
	toPeer, toClient atomic.Uint64
	refused, dropped map[string]*atomic.Uint64
}

func newCounters() *counters {
	c := &counters{open: map[string]*atomic.Int64{}, opened: map[string]*atomic.Int64{},
		refused: map[string]*atomic.Uint64{}, dropped: map[string]*atomic.Uint64{}}
	for _, t := range transports {
		c.open[t], c.opened[t] = new(atomic.Int64), new(atomic.Int64)
	}
	for _, r := range refusalReasons {
		c.refused[r] = new(atomic.Uint64)
	}
	for _, r := range dropReasons {
		c.dropped[r] = new(atomic.Uint64)
	}
	return c
}

// Stats reads the server's figures.
func (s *Server) Stats() Stats {
	st := Stats{Allocations: map[string]int64{}, AllocationsTotal: map[string]uint64{},
		BytesToPeer: s.stats.toPeer.Load(), BytesToClient: s.stats.toClient.Load(),
		Refused: map[string]uint64{}, Dropped: map[string]uint64{}}
	for _, t := range transports {
		st.Allocations[t] = s.stats.open[t].Load()
		st.AllocationsTotal[t] = uint64(s.stats.opened[t].Load())
	}
	for _, r := range refusalReasons {
		st.Refused[r] = s.stats.refused[r].Load()
	}
	for _, r := range dropReasons {
		st.Dropped[r] = s.stats.dropped[r].Load()
	}
	return st
}

// Transports, RefusalReasons and DropReasons list the keys of Stats'
// maps, in a stable order.
func Transports() []string     { return append([]string(nil), transports...) }
func RefusalReasons() []string { return append([]string(nil), refusalReasons...) }
func DropReasons() []string    { return append([]string(nil), dropReasons...) }

// transportOf tells which listener an allocation's 5-tuple arrived on.
func (s *Server) transportOf(local net.Addr) string {
	switch a := local.(type) {
	case *net.UDPAddr:
		return TransportUDP
	case *net.TCPAddr:
		if s.tcp != nil && a.Port == s.tcp.Addr().(*net.TCPAddr).Port {
			return TransportTCP
		}
		return TransportTLS
	}
	return TransportTLS
}

// events counts allocations and failed integrity checks.
func (s *Server) events() turn.EventHandler {
	return turn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _, method string, verdict bool) {
			if !verdict {
				s.stats.refused[RefusedCredential].Add(1)
				s.log.Debug("TURN request refused: wrong password", "reason", RefusedCredential, "client", src, "method", method)
			}
		},
		OnAllocationCreated: func(src, local net.Addr, _, participant, _ string, relay net.Addr, _ int) {
			t := s.transportOf(local)
			s.stats.open[t].Add(1)
			s.stats.opened[t].Add(1)
			s.log.Debug("TURN allocation", "transport", t, "client", src, "participant", participant, "relay", relay)
		},
		OnAllocationDeleted: func(src, local net.Addr, _, participant, _ string) {
			s.stats.open[s.transportOf(local)].Add(-1)
		},
	}
}
