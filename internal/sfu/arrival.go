package sfu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"conclave/internal/metrics"
)

// The delay the server adds to media: from the kernel's receive timestamp
// of an RTP packet on the media socket (SO_TIMESTAMPNS) to the moment its
// last copy has been handed to the kernel for the last subscriber. It
// includes the time the packet waited in the socket buffer, in Pion's
// receive pipeline (ICE, DTLS/SRTP demultiplexing, decryption, the
// interceptors) and in the fan-out; it leaves out only the kernel's own
// sending. The media socket's reader records the timestamp by SSRC and
// sequence number (both in the clear in SRTP); the up layer's loop looks
// it up when it has forwarded the packet.

// stampConn is the media socket as the ICE UDP mux reads it: it asks the
// kernel for receive timestamps and records those of RTP packets, and it
// batches sends while the forwarding path holds it (sendbatch.go).
type stampConn struct {
	*net.UDPConn
	stamps *arrivals
	oob    []byte // read by the mux's single reader goroutine only
	batch  sendBatcher
	gsoOOB []byte // the UDP_SEGMENT control message; under batch.flushMu
}

// newStampConn turns on receive timestamps on c. If the kernel refuses,
// the returned conn works the same and records nothing.
func newStampConn(c *net.UDPConn, stamps *arrivals) *stampConn {
	s := &stampConn{UDPConn: c, stamps: stamps, oob: make([]byte, 64)}
	if enableTimestamps(c) != nil {
		s.stamps = nil
	}
	s.batch.out = s
	s.batch.gso.Store(gsoSupported(c))
	return s
}

// hold and release bracket writes to be sent together (sendbatch.go).
// They do nothing on a nil conn (media not on a UDP socket).
func (s *stampConn) hold() {
	if s != nil {
		s.batch.hold()
	}
}

func (s *stampConn) release() {
	if s != nil {
		s.batch.release()
	}
}

func (s *stampConn) writeDatagram(b []byte, addr netip.AddrPort) {
	_, _ = s.UDPConn.WriteToUDPAddrPort(b, addr)
}

func (s *stampConn) writeSegments(b []byte, segment int, addr netip.AddrPort) error {
	var err error
	s.gsoOOB, err = writeSegments(s.UDPConn, b, segment, addr, s.gsoOOB)
	return err
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter (the mux's
// allocation-free path, which it only takes by itself for a bare
// *net.UDPConn).
func (s *stampConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if s.stamps == nil {
		return s.UDPConn.ReadFromUDPAddrPort(b)
	}
	n, oobn, _, addr, err := s.UDPConn.ReadMsgUDPAddrPort(b, s.oob)
	if err != nil {
		return n, addr, err
	}
	if t, ok := kernelTimestamp(s.oob[:oobn]); ok {
		if ssrc, seq, ok := rtpIDs(b[:n]); ok {
			s.stamps.put(ssrc, seq, t)
		}
	}
	return n, addr, nil
}

// WriteToAddrPort implements ice.AddrPortReaderWriter. While the socket
// is held the datagram is queued, and sent at the release.
func (s *stampConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if s.batch.queued(b, addr) {
		return len(b), nil
	}
	return s.UDPConn.WriteToUDPAddrPort(b, addr)
}

// ReadFrom implements net.PacketConn through ReadFromAddrPort, so that
// every read records its timestamp.
func (s *stampConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := s.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

// rtpIDs reads the SSRC and sequence number of an (S)RTP packet; RTCP,
// STUN and DTLS report false (RFC 7983 demultiplexing by the first byte,
// RFC 5761 by the payload type).
func rtpIDs(b []byte) (ssrc uint32, seq uint16, ok bool) {
	if len(b) < 12 || b[0] < 128 || b[0] > 191 {
		return 0, 0, false
	}
	if pt := b[1] & 0x7f; pt >= 64 && pt <= 95 {
		return 0, 0, false // RTCP
	}
	return binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint16(b[2:4]), true
}

// arrivalSlots is the size of the table of receive timestamps: at 35 000
// packets a second (10 publishers of three layers), about two seconds'
// worth, more than any packet spends on its way through the server.
const arrivalSlots = 1 << 16

// arrivals holds the receive timestamps of recent RTP packets by SSRC and
// sequence number. One goroutine writes (the mux's reader), any number
// read; a reader that races with an overwrite of the slot gets a miss.
type arrivals struct {
	slots [arrivalSlots]struct {
		key atomic.Uint64 // 1<<63 | ssrc<<16 | seq; 0: empty or being written
		at  atomic.Int64  // Unix nanoseconds
	}
}

func arrivalKey(ssrc uint32, seq uint16) uint64 {
	return 1<<63 | uint64(ssrc)<<16 | uint64(seq)
}

func arrivalSlot(key uint64) int {
	// Fibonacci hashing spreads consecutive sequence numbers of several
	// SSRCs over the table.
	return int((key * 0x9e3779b97f4a7c15) >> (64 - 16))
}

func (a *arrivals) put(ssrc uint32, seq uint16, at int64) {
	key := arrivalKey(ssrc, seq)
	s := &a.slots[arrivalSlot(key)]
	s.key.Store(0)
	s.at.Store(at)
	s.key.Store(key)
}

// get returns the receive timestamp of the packet, if still known.
func (a *arrivals) get(ssrc uint32, seq uint16) (int64, bool) {
	key := arrivalKey(ssrc, seq)
	s := &a.slots[arrivalSlot(key)]
	if s.key.Load() != key {
		return 0, false
	}
	at := s.at.Load()
	if s.key.Load() != key {
		return 0, false
	}
	return at, true
}

// delayHistogram counts delays by metrics.DelayBuckets; it allocates
// nothing.
type delayHistogram struct {
	counts [14]atomic.Uint64 // len(metrics.DelayBuckets)+1, the last for +Inf
	sum    atomic.Int64      // nanoseconds
}

func (h *delayHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0 // clocks: the kernel's and Go's realtime readings
	}
	s := d.Seconds()
	i := 0
	for i < len(metrics.DelayBuckets) && s > metrics.DelayBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *delayHistogram) read() metrics.DelayHistogram {
	out := metrics.DelayHistogram{Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}
