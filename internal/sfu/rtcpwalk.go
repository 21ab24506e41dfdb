package sfu

import "encoding/binary"

// Allocation-free reading of the RTCP that subscribers send: the compound
// packets are walked in place and only the parts the forwarding path acts
// on are read (transport-cc feedback, NACK, PLI, FIR, receiver reports).
// Pion's rtcp.Unmarshal makes a value, and slices, for every packet of
// every compound: with feedback every 50-100 ms from each of hundreds of
// subscribers, that was most of the server's garbage (docs/benchmarks.md).
// Everything here is untrusted input: lengths are checked against the
// buffer before any read (FuzzRTCPWalk).

// RTCP packet types and feedback formats read here.
const (
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpRTPFB = 205
	rtcpPSFB  = 206

	fmtNACK = 1  // RTPFB
	fmtTWCC = 15 // RTPFB
	fmtPLI  = 1  // PSFB
	fmtFIR  = 4  // PSFB
)

// rtcpPacket is one packet of a compound, as it lies in the buffer.
type rtcpPacket struct {
	typ    uint8
	count  uint8  // the header's 5-bit count (FMT for feedback)
	sender uint32 // packet sender SSRC, 0 when the packet is too short
	body   []byte // after the header's first 8 bytes (sender SSRC included)
}

// mediaSSRC is a feedback packet's media source (RFC 4585), 0 if none.
func (p *rtcpPacket) mediaSSRC() uint32 {
	if len(p.body) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(p.body)
}

// rtcpWalker walks a compound RTCP packet.
type rtcpWalker struct {
	b []byte
}

// next returns the next packet; ok is false at the end or at the first
// malformed packet (what follows it cannot be found).
func (w *rtcpWalker) next() (p rtcpPacket, ok bool) {
	if len(w.b) < 4 {
		return p, false
	}
	if w.b[0]>>6 != 2 {
		return p, false
	}
	size := (int(binary.BigEndian.Uint16(w.b[2:])) + 1) * 4
	if size > len(w.b) {
		return p, false
	}
	pkt := w.b[:size]
	w.b = w.b[size:]
	p.typ = pkt[1]
	p.count = pkt[0] & 0x1f
	if pkt[0]&0x20 != 0 {
		// Padding: the last byte says how much.
		pad := int(pkt[size-1])
		if pad == 0 || pad > size-4 {
			return p, false
		}
		pkt = pkt[:size-pad]
	}
	if len(pkt) >= 8 {
		p.sender = binary.BigEndian.Uint32(pkt[4:])
		p.body = pkt[8:]
	}
	return p, true
}

// nackEach calls fn for every sequence number a generic NACK asks for.
func nackEach(p *rtcpPacket, fn func(seq uint16)) {
	if len(p.body) < 4 {
		return
	}
	for b := p.body[4:]; len(b) >= 4; b = b[4:] {
		pid := binary.BigEndian.Uint16(b)
		blp := binary.BigEndian.Uint16(b[2:])
		fn(pid)
		for i := uint16(0); i < 16; i++ {
			if blp&(1<<i) != 0 {
				fn(pid + i + 1)
			}
		}
	}
}

// firSSRCs calls fn with the media SSRC of each FIR entry (RFC 5104: the
// media source field is unused, the entries name the streams).
func firSSRCs(p *rtcpPacket, fn func(ssrc uint32)) {
	if len(p.body) < 4 {
		return
	}
	for b := p.body[4:]; len(b) >= 8; b = b[8:] {
		fn(binary.BigEndian.Uint32(b))
	}
}

// reportBlock is one receiver report block.
type reportBlock struct {
	ssrc         uint32
	fractionLost uint8
	lastSR       uint32 // middle 32 bits of the NTP time of the last SR
	delaySinceSR uint32 // 1/65536 s
}

// reportBlocks calls fn for each report block of a receiver report (or
// of a sender report, after its sender info).
func reportBlocks(p *rtcpPacket, fn func(reportBlock)) {
	b := p.body
	if p.typ == rtcpSR {
		if len(b) < 20 {
			return
		}
		b = b[20:]
	}
	for i := 0; i < int(p.count) && len(b) >= 24; i++ {
		fn(reportBlock{
			ssrc:         binary.BigEndian.Uint32(b),
			fractionLost: b[4],
			lastSR:       binary.BigEndian.Uint32(b[16:]),
			delaySinceSR: binary.BigEndian.Uint32(b[20:]),
		})
		b = b[24:]
	}
}

// twccReader reads one transport-cc feedback packet
// (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1): the
// status of each packet from the base sequence number on, and for each
// one received its arrival time. It reads the buffer in place.
type twccReader struct {
	base   uint16
	count  int   // packet status count
	ref    int64 // reference time, 64 ms units (24 bits, not unwrapped)
	chunks []byte
	deltas []byte

	// iteration state
	i       int // statuses read
	chunk   uint16
	inChunk int // statuses left in the current chunk
	pos     int // next chunk's offset in chunks
	arrival int64
}

// TWCC status symbols.
const (
	twccNotReceived = 0
	twccSmallDelta  = 1
	twccLargeDelta  = 2
)

// init prepares r for a feedback packet's body (from the media SSRC on);
// false if it is malformed.
func (r *twccReader) init(body []byte) bool {
	// media SSRC 4, base seq 2, count 2, reference time 3, fb count 1.
	if len(body) < 12 {
		return false
	}
	*r = twccReader{
		base:  binary.BigEndian.Uint16(body[4:]),
		count: int(binary.BigEndian.Uint16(body[6:])),
		ref:   int64(body[8])<<16 | int64(body[9])<<8 | int64(body[10]),
	}
	rest := body[12:]
	// Find where the chunks end: they cover count statuses.
	covered, n := 0, 0
	for covered < r.count {
		if len(rest) < n+2 {
			return false
		}
		c := binary.BigEndian.Uint16(rest[n:])
		covered += chunkLen(c)
		n += 2
	}
	r.chunks = rest[:n]
	r.deltas = rest[n:]
	return true
}

// chunkLen is how many statuses a packet chunk holds.
func chunkLen(c uint16) int {
	switch {
	case c&0x8000 == 0:
		return int(c & 0x1fff) // run length
	case c&0x4000 == 0:
		return 14 // one-bit symbols
	default:
		return 7 // two-bit symbols
	}
}

// next reads the next packet's status: its transport sequence number,
// whether it arrived, and then its arrival time in microseconds since the
// reference time. ok is false at the end, or when the deltas run out
// (a malformed packet).
func (r *twccReader) next() (seq uint16, received bool, arrivalUS int64, ok bool) {
	if r.i >= r.count {
		return 0, false, 0, false
	}
	for r.inChunk == 0 {
		if r.pos+2 > len(r.chunks) {
			return 0, false, 0, false
		}
		r.chunk = binary.BigEndian.Uint16(r.chunks[r.pos:])
		r.pos += 2
		r.inChunk = chunkLen(r.chunk)
	}
	var sym uint16
	switch {
	case r.chunk&0x8000 == 0:
		sym = r.chunk >> 13 & 3
	case r.chunk&0x4000 == 0:
		sym = r.chunk >> (r.inChunk - 1) & 1
	default:
		sym = r.chunk >> ((r.inChunk - 1) * 2) & 3
	}
	r.inChunk--
	seq = r.base + uint16(r.i)
	r.i++
	switch sym {
	case twccSmallDelta:
		if len(r.deltas) < 1 {
			return 0, false, 0, false
		}
		r.arrival += int64(r.deltas[0]) * 250
		r.deltas = r.deltas[1:]
		return seq, true, r.arrival, true
	case twccLargeDelta:
		if len(r.deltas) < 2 {
			return 0, false, 0, false
		}
		r.arrival += int64(int16(binary.BigEndian.Uint16(r.deltas))) * 250
		r.deltas = r.deltas[2:]
		return seq, true, r.arrival, true
	}
	return seq, false, 0, true
}
