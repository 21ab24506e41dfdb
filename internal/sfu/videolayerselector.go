package sfu

import (
	"conclave/internal/codecs"
	"conclave/internal/sfu/mediasock"
)

// packetInfo is what the up track learned about one packet before handing
// it to its down tracks. It is filled once per packet, in place, by the
// up layer's reader, and read by every down track on the same goroutine.
type packetInfo struct {
	layer    int8 // index of the up layer (simulcast encoding) it came on
	spatial  int8 // VP9 spatial layer id (0 otherwise)
	temporal int8 // VP9 or VP8 temporal layer id (0 when absent)
	// keyFrame is set on the first packet of a frame from which a
	// decoder can start: a VP8 or VP9 key frame; every audio packet.
	keyFrame     bool
	pictureStart bool // first packet of a picture (VP9: of its base layer)
	layerEnd     bool // VP9 E bit: last packet of a spatial layer frame
	marker       bool
	padding      bool  // no payload (padding only): never forwarded
	pad          uint8 // RTP padding to add when forwarding (evenOut)
	isVP8        bool
	vp8          codecs.VP8
	now          int64 // arrival, unix nanoseconds
	sent         int64 // when its fan-out began, unix nanoseconds (0: not known)
	// batch, when set, is where the own send path puts the packet
	// (encrypted) for the forwarding loop to send with the rest of the
	// subscriber's share.
	batch *mediasock.Batch
}

// decision is a selector's verdict on one packet.
type decision uint8

const (
	// ignore: the packet belongs to another stream than the one the down
	// track follows (another simulcast encoding); sequence numbers are
	// unaffected.
	ignore decision = iota
	// skip: the packet belongs to the followed stream but is not
	// forwarded (an unwanted SVC layer, padding); outgoing sequence
	// numbers close over it.
	skip
	// forward the packet.
	forward
)

// layerSelector is the per-codec-family strategy that decides, packet by
// packet, what a down track forwards given the spatial layer it aims at.
// Implementations: simulcastSelector (one SSRC per layer, switches on key
// frames) and svcSelector (VP9 SVC, one SSRC, layers from the payload
// descriptor). Calls are serialised by the down track.
type layerSelector interface {
	// decide classifies a packet. switched reports that the packet
	// starts a new stream for the munger (first packet, a simulcast
	// switch, a resume after a pause); marker is the RTP marker bit to
	// send.
	decide(p *packetInfo) (d decision, switched, marker bool)
	// setTarget sets the spatial layer to reach; -1 pauses.
	setTarget(spatial int8)
	target() int8
	// current is the spatial layer being forwarded, -1 for none.
	current() int8
}

// simulcastSelector follows one simulcast encoding at a time and moves to
// the target encoding at its next key frame. A single-encoding track and
// audio are simulcast with one layer.
type simulcastSelector struct {
	cur, tgt int8
}

func newSimulcastSelector(target int8) *simulcastSelector {
	return &simulcastSelector{cur: -1, tgt: target}
}

func (s *simulcastSelector) decide(p *packetInfo) (decision, bool, bool) {
	if s.tgt < 0 {
		s.cur = -1
		return ignore, false, false
	}
	if p.layer == s.tgt && s.cur != s.tgt {
		if p.keyFrame && !p.padding {
			s.cur = s.tgt
			return forward, true, p.marker
		}
		if p.layer != s.cur {
			return ignore, false, false
		}
	}
	if p.layer != s.cur {
		return ignore, false, false
	}
	if p.padding {
		return skip, false, false
	}
	return forward, false, p.marker
}

func (s *simulcastSelector) setTarget(l int8) { s.tgt = l }
func (s *simulcastSelector) target() int8     { return s.tgt }
func (s *simulcastSelector) current() int8    { return s.cur }

// svcSelector forwards the VP9 spatial layers up to the current one (and
// temporal layers up to maxTemporal). It moves up at a key picture, down
// at the start of any picture, and sets the marker bit on the last packet
// of the highest forwarded spatial layer so that the decoder sees the end
// of each picture.
type svcSelector struct {
	cur, tgt    int8
	maxTemporal int8
}

func newSVCSelector(target int8) *svcSelector {
	return &svcSelector{cur: -1, tgt: target, maxTemporal: 7}
}

func (s *svcSelector) decide(p *packetInfo) (decision, bool, bool) {
	if s.tgt < 0 {
		s.cur = -1
		return ignore, false, false
	}
	switched := false
	if s.cur < 0 {
		if !p.keyFrame || p.padding {
			return ignore, false, false
		}
		s.cur = s.tgt
		switched = true
	} else if p.pictureStart {
		if s.tgt < s.cur || p.keyFrame {
			s.cur = s.tgt
		}
	}
	if p.padding || p.spatial > s.cur || p.temporal > s.maxTemporal {
		if switched {
			s.cur = -1
			return ignore, false, false
		}
		return skip, false, false
	}
	return forward, switched, p.marker || p.layerEnd && p.spatial == s.cur
}

func (s *svcSelector) setTarget(l int8) { s.tgt = l }
func (s *svcSelector) target() int8     { return s.tgt }
func (s *svcSelector) current() int8    { return s.cur }
