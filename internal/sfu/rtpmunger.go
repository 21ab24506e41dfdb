package sfu

// rtpMunger rewrites the sequence numbers, timestamps and VP8 picture ids
// of one down track so that the subscriber sees a single continuous stream
// while the forwarder switches between layers (different SSRCs in
// simulcast) or drops packets of unwanted layers (VP9 SVC).
//
// Sequence numbers stay continuous across a switch; a gap appears only
// where the source itself lost packets. Timestamps of a new layer continue
// the old timeline: the first packet after a switch gets the last sent
// timestamp plus the wall-clock time elapsed since it was sent.
type rtpMunger struct {
	clockRate uint32

	started   bool
	seqOffset uint16 // out = in + seqOffset
	tsOffset  uint32 // out = in + tsOffset
	highestIn uint16 // highest input sequence number seen on the current stream
	// floor is the first input sequence number to which the current
	// seqOffset applies; later-arriving packets below it are dropped
	// because their output number is unknown.
	floor uint16

	lastOutSeq uint16
	lastOutTS  uint32
	lastOutAt  int64 // unix nanoseconds when lastOutTS was sent

	// VP8 picture id and TL0PICIDX continuity.
	pidOffset  uint16
	tl0Offset  uint8
	lastOutPID uint16
	lastOutTL0 uint8
	havePID    bool
	haveTL0    bool
}

// munged is what the munger decided for one packet.
type munged struct {
	seq uint16
	ts  uint32
	pid uint16
	tl0 uint8
}

// switchTo starts a new input stream (a new layer, or a resume after a
// pause) with the packet (seq, ts, pid, tl0) arriving at now.
func (m *rtpMunger) switchTo(seq uint16, ts uint32, pid uint16, hasPID bool, tl0 uint8, hasTL0 bool, now int64) {
	if !m.started {
		m.started = true
		m.seqOffset = 0
		m.tsOffset = 0
		m.lastOutSeq = seq - 1
		m.lastOutTS = ts
		m.lastOutAt = now
	} else {
		m.seqOffset = m.lastOutSeq + 1 - seq
		elapsed := now - m.lastOutAt
		if elapsed < 0 {
			elapsed = 0
		}
		delta := uint32(uint64(elapsed) * uint64(m.clockRate) / 1e9)
		if delta == 0 {
			delta = 1
		}
		m.tsOffset = m.lastOutTS + delta - ts
	}
	m.highestIn = seq - 1
	m.floor = seq
	if hasPID {
		if m.havePID {
			m.pidOffset = m.lastOutPID + 1 - pid
		} else {
			m.pidOffset = 0
		}
	}
	if hasTL0 {
		if m.haveTL0 {
			m.tl0Offset = m.lastOutTL0 + 1 - tl0
		} else {
			m.tl0Offset = 0
		}
	}
}

// skip accounts for a packet of the current stream that is not forwarded
// (an unwanted VP9 layer): the output numbering closes over it.
func (m *rtpMunger) skip(seq uint16) {
	if !m.started || int16(seq-m.highestIn) <= 0 {
		return
	}
	// Packets lost before the skipped one keep their gap.
	m.seqOffset--
	m.highestIn = seq
	m.floor = seq + 1
}

// pad allocates the output sequence number of a padding-only packet
// inserted between two frames: it goes right after the last sent packet,
// with the last sent timestamp, and every later packet of the current
// stream moves up by one. A packet of the current stream that arrives
// late, below the insertion point, can no longer be placed and is
// dropped. ok is false before the first packet.
func (m *rtpMunger) pad() (seq uint16, ts uint32, ok bool) {
	if !m.started {
		return 0, 0, false
	}
	m.seqOffset++
	m.lastOutSeq++
	m.floor = m.highestIn + 1
	return m.lastOutSeq, m.lastOutTS, true
}

// forward computes the output numbers of a packet of the current stream.
// ok is false for a late packet that cannot be placed.
func (m *rtpMunger) forward(seq uint16, ts uint32, pid uint16, hasPID bool, tl0 uint8, hasTL0 bool, now int64) (out munged, ok bool) {
	if !m.started {
		return out, false
	}
	inOrder := int16(seq-m.highestIn) > 0
	if !inOrder && int16(seq-m.floor) < 0 {
		return out, false
	}
	out.seq = seq + m.seqOffset
	out.ts = ts + m.tsOffset
	out.pid = pid + m.pidOffset
	out.tl0 = tl0 + m.tl0Offset
	if inOrder {
		m.highestIn = seq
		m.lastOutSeq = out.seq
		if out.ts != m.lastOutTS {
			m.lastOutTS = out.ts
			m.lastOutAt = now
		}
		if hasPID {
			m.lastOutPID = out.pid
			m.havePID = true
		}
		if hasTL0 {
			m.lastOutTL0 = out.tl0
			m.haveTL0 = true
		}
	}
	return out, true
}

// historySize is how many forwarded packets a down track remembers for
// answering NACKs: a power of two, over two seconds of 2 Mbit/s video
// (a NACK comes within a round trip).
const historySize = 512

// sentPacket records how one forwarded packet was rewritten.
type sentPacket struct {
	outSeq uint16
	inSeq  uint16
	layer  int8 // index of the up layer (the simulcast encoding)
	valid  bool
	marker bool
	ts     uint32
	pid    uint16
	tl0    uint8
}

// history maps the subscriber's sequence numbers back to the source
// packets, so that a NACK can be answered from the up layer's cache.
type history struct {
	entries [historySize]sentPacket
}

func (h *history) record(p sentPacket) {
	p.valid = true
	h.entries[p.outSeq&(historySize-1)] = p
}

func (h *history) lookup(outSeq uint16) (sentPacket, bool) {
	e := h.entries[outSeq&(historySize-1)]
	if !e.valid || e.outSeq != outSeq {
		return sentPacket{}, false
	}
	return e, true
}
