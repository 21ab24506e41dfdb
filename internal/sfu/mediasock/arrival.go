package mediasock

import (
	"encoding/binary"
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
// sequence number (both in the clear in SRTP); the forwarding path tells
// the socket when it has forwarded the packet (Socket.Forwarded).

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
