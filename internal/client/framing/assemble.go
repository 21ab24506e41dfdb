package framing

import (
	"github.com/pion/rtp"

	"conclave/internal/codecs"
)

// Depacketizer reads one codec's RTP payload header.
type Depacketizer interface {
	// Header returns the length of the payload header, whether the packet
	// starts a frame, and false when the payload is malformed.
	Header(payload []byte) (n int, start, ok bool)
	// FrameEndsAtMarker reports whether frames span packets and end at
	// the RTP marker bit (video); otherwise each packet is a frame.
	FrameEndsAtMarker() bool
}

// VP8 is the Depacketizer of RFC 7741, on the descriptor parser the SFU
// uses (internal/codecs).
type VP8 struct{}

// Header implements Depacketizer. A frame starts at a packet with the S
// bit set and partition index 0.
func (VP8) Header(p []byte) (n int, start, ok bool) {
	var v codecs.VP8
	if v.Unmarshal(p) != nil || v.HeaderSize >= len(p) {
		return 0, false, false // malformed, or no frame data at all
	}
	return v.HeaderSize, v.Start && v.Partition == 0, true
}

// FrameEndsAtMarker implements Depacketizer.
func (VP8) FrameEndsAtMarker() bool { return true }

// Opus is the Depacketizer of RFC 7587: one frame per packet, no header.
type Opus struct{}

// Header implements Depacketizer.
func (Opus) Header(p []byte) (int, bool, bool) { return 0, true, len(p) > 0 }

// FrameEndsAtMarker implements Depacketizer.
func (Opus) FrameEndsAtMarker() bool { return false }

// Frame is one frame rebuilt by an Assembler.
type Frame struct {
	// Data is the frame; it is only valid until the next call to Push.
	Data []byte
	// Timestamp is the RTP timestamp of the frame's packets.
	Timestamp uint32
	// AfterLoss is true when packets were lost since the previous frame
	// (a video decoder then needs a key frame).
	AfterLoss bool
}

type slot struct {
	used   bool
	pad    bool // a padding-only packet (RFC 3550, 5.1): it only takes a sequence number
	start  bool
	marker bool
	seq    uint16
	ts     uint32
	data   []byte // payload after the codec header
}

// Assembler puts packets of one RTP stream back in sequence order and
// rebuilds frames. A missing packet is waited for (a retransmission may
// still come) until the stream is maxLate packets ahead of it, or (with
// SetMaxWait) a newer packet's timestamp is that much later than the
// last frame rebuilt; then the frames it belonged to are dropped and the
// next frame reports AfterLoss. After the first packets it allocates
// nothing.
type Assembler struct {
	dep     Depacketizer
	frames  bool // frames end at the marker bit
	slots   []slot
	mask    uint16
	maxLate uint16

	started bool
	emitted bool   // a frame was emitted: earlier packets are too late
	next    uint16 // sequence number of the first packet not yet consumed
	highest uint16
	lost    bool
	frame   []byte

	// maxWait bounds, in RTP timestamp units, how far the newest packet
	// (newestTS) may run ahead of the packets held behind a missing one;
	// 0: no bound.
	maxWait  uint32
	newestTS uint32
	tsKnown  bool // newestTS is set
}

// SetMaxWait bounds the wait for a missing packet by media time: once a
// packet arrives whose timestamp is more than ticks after that of the
// first packet held behind the missing one (or of the incomplete frame),
// the missing packet is given up. On a low-rate stream maxLate packets
// can take seconds to come; a receiver that waits that long shows a
// frozen picture instead of asking for a key frame.
func (a *Assembler) SetMaxWait(ticks uint32) { a.maxWait = ticks }

// NewAssembler returns an assembler that holds up to window packets (a
// power of two, at most 32768) and waits for a missing one until maxLate
// newer packets arrived.
func NewAssembler(dep Depacketizer, window, maxLate int) *Assembler {
	if window < 2 || window > 1<<15 || window&(window-1) != 0 {
		panic("framing: window must be a power of two between 2 and 32768")
	}
	if maxLate <= 0 || maxLate >= window {
		maxLate = window - 1
	}
	return &Assembler{dep: dep, frames: dep.FrameEndsAtMarker(), slots: make([]slot, window),
		mask: uint16(window - 1), maxLate: uint16(maxLate)}
}

// Push adds a packet and calls emit for every frame it completes, in order.
// It reports false when the packet was unusable (malformed, duplicate or
// too old). A padding-only packet, which a server sends between frames to
// probe the bandwidth, carries no frame data but takes its place in the
// sequence.
func (a *Assembler) Push(p *rtp.Packet, emit func(Frame)) bool {
	pad := p.Padding && len(p.Payload) == 0
	n, start, ok := a.dep.Header(p.Payload)
	if !ok && !pad {
		return false
	}
	if pad {
		n, start = 0, false
	}
	seq := p.SequenceNumber
	if !a.started {
		a.started = true
		a.next, a.highest = seq, seq
	}
	ahead := int16(seq - a.next)
	if ahead < 0 && !a.emitted && int(uint16(a.highest-seq)) < len(a.slots) {
		// Reordered before the first frame: start earlier.
		a.next, ahead = seq, 0
	}
	switch {
	case ahead < 0:
		return false // already consumed or given up
	case int(ahead) >= len(a.slots):
		// A jump beyond the window: everything before is lost.
		a.reset(seq)
	}
	s := &a.slots[seq&a.mask]
	if s.used && s.seq == seq {
		return false // duplicate
	}
	s.used, s.pad, s.seq, s.start, s.marker, s.ts = true, pad, seq, start, p.Marker && !pad, p.Timestamp
	s.data = append(s.data[:0], p.Payload[n:]...)
	if int16(seq-a.highest) > 0 {
		a.highest = seq
	}
	if !pad && (!a.tsKnown || int32(p.Timestamp-a.newestTS) > 0) {
		a.newestTS, a.tsKnown = p.Timestamp, true
	}
	a.drain(emit)
	return true
}

func (a *Assembler) reset(seq uint16) {
	for i := range a.slots {
		a.slots[i].used = false
	}
	a.next, a.highest, a.lost = seq, seq, true
	a.tsKnown = false // a new stream, maybe with other timestamps
}

func (a *Assembler) has(seq uint16) *slot {
	s := &a.slots[seq&a.mask]
	if s.used && s.seq == seq {
		return s
	}
	return nil
}

// late reports whether the packet at seq can no longer be waited for: the
// stream is maxLate packets ahead of it, or (SetMaxWait) its newest
// packet is maxWait ahead of the first packet held from seq on.
func (a *Assembler) late(seq uint16) bool {
	if int16(a.highest-seq) >= int16(a.maxLate) {
		return true
	}
	if a.maxWait == 0 {
		return false
	}
	for s := seq; int16(a.highest-s) >= 0; s++ {
		if h := a.has(s); h != nil && !h.pad {
			return int32(a.newestTS-h.ts) > int32(a.maxWait)
		}
	}
	return false
}

// skip gives up the packets from a.next up to (not including) to.
func (a *Assembler) skip(to uint16) {
	for ; a.next != to; a.next++ {
		a.slots[a.next&a.mask].used = false
	}
	a.lost = true
}

func (a *Assembler) drain(emit func(Frame)) {
	for int16(a.highest-a.next) >= 0 {
		head := a.has(a.next)
		if head == nil {
			if !a.late(a.next) {
				return
			}
			a.skip(a.next + 1)
			continue
		}
		if head.pad {
			head.used = false
			a.next++
			continue
		}
		if !head.start {
			if !a.emitted && !a.late(a.next) {
				return // the start may still come, reordered
			}
			a.skip(a.next + 1) // the start of its frame is gone
			continue
		}
		end, complete := a.next, !a.frames || head.marker
		for !complete {
			s := a.has(end + 1)
			if s == nil {
				break
			}
			if s.start || s.pad || s.ts != head.ts {
				// A new frame began before this one ended: its tail was lost.
				break
			}
			end++
			complete = s.marker
		}
		if !complete {
			next := a.has(end + 1)
			if next == nil && !a.late(end+1) {
				return // wait for the missing packet
			}
			a.skip(end + 1)
			continue
		}
		a.frame = a.frame[:0]
		for seq := a.next; ; seq++ {
			s := &a.slots[seq&a.mask]
			a.frame = append(a.frame, s.data...)
			s.used = false
			if seq == end {
				break
			}
		}
		ts := head.ts
		a.next = end + 1
		lost := a.lost
		a.lost = false
		a.emitted = true
		emit(Frame{Data: a.frame, Timestamp: ts, AfterLoss: lost})
	}
}
