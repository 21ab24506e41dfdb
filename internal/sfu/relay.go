// Relays between conference nodes (conn.RelayEngine). On the node of the
// publishers, a RelaySender is a subscriber without a peer connection:
// each track added to it gets a relay tap on its up track, which hands
// the tap every packet of the layers the other node needs, as received
// (the publisher's SSRC, sequence numbers and header extensions, the
// payload still end-to-end encrypted). The taps count in the track's
// dynacast like down tracks, so a layer that only the other node needs
// keeps coming from the publisher, and one it stops needing is paused
// there if nobody here needs it either. On the other node, a relayed
// track is an up track without a peer connection, fed packet by packet
// by the node-to-node link; its down tracks work as for any up track,
// and its dynacast and key frame requests go back over the link.

package sfu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"conclave/internal/conn"
	"conclave/internal/packetcache"
)

// relayIDs numbers relayed tracks, unique in the process.
var relayIDs atomic.Uint32

// relayTap hands an up track's packets to a relay.
type relayTap struct {
	id   uint32
	up   *UpTrack
	sink conn.RelaySink
	need [maxLayers]atomic.Bool // layers the other node needs
}

// RelaySender is the subscriber whose tracks go to another node.
type RelaySender struct {
	sink conn.RelaySink

	mu     sync.Mutex
	byUp   map[*UpTrack]*relayTap
	byID   map[uint32]*relayTap
	closed bool
}

// NewRelay makes a relay sender whose tracks go to sink.
func (e *Engine) NewRelay(sink conn.RelaySink) conn.RelaySender {
	return &RelaySender{sink: sink, byUp: map[*UpTrack]*relayTap{}, byID: map[uint32]*relayTap{}}
}

// relayTrack describes up for the other node.
func relayTrack(up *UpTrack) conn.RelayTrack {
	return conn.RelayTrack{Participant: up.participant, Source: up.source, Kind: up.Kind(), Mid: up.mid,
		Codec: conn.RelayCodec{MimeType: up.codec.MimeType, ClockRate: up.codec.ClockRate, Channels: up.codec.Channels,
			SDPFmtpLine: up.codec.SDPFmtpLine, PayloadType: uint8(up.codec.PayloadType)},
		Layers: append([]string(nil), up.rids...), AudioLevelExt: up.audio.ext}
}

// AddTrack starts relaying t; every layer crosses until the other node
// says what it needs.
func (s *RelaySender) AddTrack(t conn.UpTrack, _ conn.TrackOptions) error {
	up, ok := ownTrack(t)
	if !ok {
		return fmt.Errorf("relay track %s: not a track of this media engine (%T)", t.ID(), t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.byUp[up] != nil {
		return nil
	}
	tap := &relayTap{id: relayIDs.Add(1), up: up, sink: s.sink}
	for i := range tap.need {
		tap.need[i].Store(true)
	}
	s.byUp[up] = tap
	s.byID[tap.id] = tap
	s.sink.Announce(tap.id, relayTrack(up))
	up.addTap(tap)
	return nil
}

// RemoveTrack stops relaying t.
func (s *RelaySender) RemoveTrack(t conn.UpTrack) {
	up, ok := ownTrack(t)
	if !ok {
		return
	}
	s.mu.Lock()
	tap := s.byUp[up]
	if tap != nil {
		delete(s.byUp, up)
		delete(s.byID, tap.id)
	}
	s.mu.Unlock()
	if tap != nil {
		up.removeTap(tap)
		s.sink.Withdraw(tap.id)
	}
}

// SetLayers applies the other node's needs for track id.
func (s *RelaySender) SetLayers(id uint32, active []bool) {
	s.mu.Lock()
	tap := s.byID[id]
	s.mu.Unlock()
	if tap == nil {
		return
	}
	for i := range tap.need {
		tap.need[i].Store(i < len(active) && active[i])
	}
	tap.up.dyn.update()
}

// RequestKeyFrame asks track id's publisher for a key frame on layer.
func (s *RelaySender) RequestKeyFrame(id uint32, layer int) {
	s.mu.Lock()
	tap := s.byID[id]
	s.mu.Unlock()
	if tap != nil && layer >= 0 && layer < maxLayers {
		tap.up.requestKeyFrame(int8(layer))
	}
}

// errRelayNegotiates: a relay has no peer connection to negotiate.
var errRelayNegotiates = errors.New("a relay between nodes negotiates nothing")

// HandleAnswer implements conn.Subscriber; a relay has no answer.
func (s *RelaySender) HandleAnswer(string) error { return errRelayNegotiates }

// AddCandidate implements conn.Subscriber; a relay has no ICE.
func (s *RelaySender) AddCandidate(conn.ICECandidate) error { return errRelayNegotiates }

// RestartICE implements conn.Subscriber; a relay has no ICE.
func (s *RelaySender) RestartICE() {}

// SetTrackSize implements conn.Subscriber: the other node's subscribers
// report their sizes there.
func (s *RelaySender) SetTrackSize(string, int, int) bool { return false }

// Outstanding implements conn.Subscriber; a relay makes no offers.
func (s *RelaySender) Outstanding() (conn.Offer, bool) { return conn.Offer{}, false }

// Close stops relaying every track.
func (s *RelaySender) Close() error {
	s.mu.Lock()
	s.closed = true
	taps := s.byUp
	s.byUp = map[*UpTrack]*relayTap{}
	s.byID = map[uint32]*relayTap{}
	s.mu.Unlock()
	for up, tap := range taps {
		up.removeTap(tap)
		s.sink.Withdraw(tap.id)
	}
	return nil
}

func (u *UpTrack) addTap(t *relayTap) {
	u.mu.Lock()
	if u.ended.Load() {
		u.mu.Unlock()
		return
	}
	old := *u.taps.Load()
	next := append(append(make([]*relayTap, 0, len(old)+1), old...), t)
	u.taps.Store(&next)
	u.mu.Unlock()
	u.dyn.update()
	u.RequestKeyFrame() // the other node's subscribers start with a key frame
}

func (u *UpTrack) removeTap(t *relayTap) {
	u.mu.Lock()
	old := *u.taps.Load()
	next := make([]*relayTap, 0, len(old))
	for _, x := range old {
		if x != t {
			next = append(next, x)
		}
	}
	u.taps.Store(&next)
	u.mu.Unlock()
	u.dyn.update()
}

// relayed hands prepared packets to the relay taps that need their
// layer. It runs on the forwarding path and allocates nothing.
func (u *UpTrack) relayed(pkts []framePacket) {
	taps := *u.taps.Load()
	if len(taps) == 0 {
		return
	}
	layer := pkts[0].info.layer
	for _, t := range taps {
		if !t.need[layer].Load() {
			continue
		}
		for i := range pkts {
			t.sink.WriteRTP(t.id, int(layer), pkts[i].raw)
		}
	}
}

// tapNeeds adds the relay taps' needs to dynacast's.
func (u *UpTrack) tapNeeds(wanted *[maxLayers]bool) {
	for _, t := range *u.taps.Load() {
		for i := range t.need {
			if t.need[i].Load() {
				wanted[i] = true
			}
		}
	}
}

// relayedTrack is an up track received from another node.
type relayedTrack struct {
	*UpTrack
}

// relayEvents carries a relayed track's dynacast back to its node.
type relayEvents struct{ ctl conn.RelayControl }

func (e relayEvents) TrackAdded(conn.UpTrack)                    {}
func (e relayEvents) TrackRemoved(conn.UpTrack)                  {}
func (e relayEvents) ConnectionState(string)                     {}
func (e relayEvents) LayersNeeded(_ conn.UpTrack, active []bool) { e.ctl.LayersNeeded(active) }

// NewRelayed makes the up track of a track another node relays.
func (e *Engine) NewRelayed(t conn.RelayTrack, ctl conn.RelayControl) conn.RelayedTrack {
	kind := webrtc.RTPCodecTypeAudio
	var feedback []webrtc.RTCPFeedback
	if t.Kind == conn.Video {
		kind = webrtc.RTPCodecTypeVideo
		feedback = videoFeedback
	}
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: t.Codec.MimeType,
		ClockRate: t.Codec.ClockRate, Channels: t.Codec.Channels, SDPFmtpLine: t.Codec.SDPFmtpLine, RTCPFeedback: feedback},
		PayloadType: webrtc.PayloadType(t.Codec.PayloadType)}
	rids := t.Layers
	if len(rids) == 1 {
		rids = nil
	}
	u := newUpTrack(nil, e.clock, codec, kind, t.Participant, t.Source, t.Mid, rids)
	u.id = "relayed-" + u.id
	u.tap = e.tap
	u.audio.ext = t.AudioLevelExt
	u.dyn.events = relayEvents{ctl}
	u.keyFrames = ctl.RequestKeyFrame
	for i := 0; i < u.Layers(); i++ {
		l := &upLayer{track: u, index: int8(i)}
		if i < len(u.rids) {
			l.rid = u.rids[i]
		}
		if kind == webrtc.RTPCodecTypeVideo {
			l.cache = packetcache.New(cacheSize(i, len(u.rids)))
		}
		u.layers[i].Store(l)
	}
	return relayedTrack{u}
}

// WriteRTP forwards one relayed packet.
func (r relayedTrack) WriteRTP(layer int, raw []byte) {
	if layer < 0 || layer >= maxLayers || r.ended.Load() {
		return
	}
	l := r.layers[layer].Load()
	if l == nil || len(raw) > packetcache.MaxPacketSize {
		return
	}
	l.handle(raw, time.Now().UnixNano())
}

// End stops the relayed track.
func (r relayedTrack) End() { r.end() }

var _ conn.RelayEngine = (*Engine)(nil)
