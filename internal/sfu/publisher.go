package sfu

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/conn"
)

// gatherTimeout bounds how long the server waits for its own ICE candidates
// before sending a description. With a shared UDP port gathering is
// immediate; the bound only protects against a misconfigured host.
const gatherTimeout = 3 * time.Second

// Publisher is the peer connection on which a participant sends its media
// (a conn.Publisher). The client makes every offer.
type Publisher struct {
	pc          *webrtc.PeerConnection
	clock       clock.Clock
	participant string
	events      conn.PublisherEvents
	tap         Tap
	sock        mediaSocket // the engine's

	mu      sync.Mutex
	sources map[string]conn.Source // mid -> source, from the latest offer
	rids    map[string][]string    // mid -> simulcast RIDs, from the latest offer
	tracks  map[string]*UpTrack    // mid -> live track
	closed  bool
}

// NewPublisher creates the receiving peer connection of a participant.
func (e *Engine) NewPublisher(participant string, events conn.PublisherEvents) (conn.Publisher, error) {
	return e.newPublisher(participant, events)
}

func (e *Engine) newPublisher(participant string, events conn.PublisherEvents) (*Publisher, error) {
	pc, err := e.newPeerConnection()
	if err != nil {
		return nil, fmt.Errorf("new publisher connection: %w", err)
	}
	p := &Publisher{pc: pc, clock: e.clock, participant: participant, events: events, tap: e.tap, sock: e.sock,
		sources: map[string]conn.Source{}, rids: map[string][]string{}, tracks: map[string]*UpTrack{}}
	pc.OnTrack(p.onTrack)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) { events.ConnectionState(s.String()) })
	return p, nil
}

// HandleOffer applies the client's offer and returns the server's answer.
// sources maps the mid of each sending transceiver to what it carries;
// tracks whose mid is absent or no longer sending are stopped.
func (p *Publisher) HandleOffer(offer string, sources map[string]conn.Source) (string, error) {
	parsed := &sdp.SessionDescription{}
	if err := parsed.UnmarshalString(offer); err != nil {
		return "", fmt.Errorf("parse offer: %w", err)
	}
	if err := checkSources(parsed, sources); err != nil {
		return "", err
	}
	sending := sendingMids(parsed)
	rids := simulcastRIDs(parsed)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", fmt.Errorf("publisher is closed")
	}
	p.sources = make(map[string]conn.Source, len(sources))
	p.rids = rids
	for mid, src := range sources {
		if sending[mid] {
			p.sources[mid] = src
		}
	}
	var stopped []*UpTrack
	for mid, t := range p.tracks {
		if p.sources[mid] != t.source || !equalRIDs(rids[mid], t.rids) {
			stopped = append(stopped, t)
			delete(p.tracks, mid)
		}
	}
	p.mu.Unlock()
	for _, t := range stopped {
		t.end()
		p.events.TrackRemoved(t)
	}

	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("apply offer: %w", err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("apply answer: %w", err)
	}
	waitGathering(gathered)
	return p.pc.LocalDescription().SDP, nil
}

// AddCandidate adds a trickled remote ICE candidate.
func (p *Publisher) AddCandidate(c conn.ICECandidate) error {
	return p.pc.AddICECandidate(iceCandidate(c))
}

// iceCandidate is c in Pion's terms.
func iceCandidate(c conn.ICECandidate) webrtc.ICECandidateInit {
	return webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}

// Tracks returns the live up tracks.
func (p *Publisher) Tracks() []conn.UpTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]conn.UpTrack, 0, len(p.tracks))
	for _, t := range p.tracks {
		out = append(out, t)
	}
	return out
}

// Close ends every track and the peer connection.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	tracks := p.tracks
	p.tracks = map[string]*UpTrack{}
	p.mu.Unlock()
	for _, t := range tracks {
		t.end()
		p.events.TrackRemoved(t)
	}
	return p.pc.Close()
}

func (p *Publisher) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	var mid string
	for _, t := range p.pc.GetTransceivers() {
		if t.Receiver() == receiver {
			mid = t.Mid()
			break
		}
	}
	p.mu.Lock()
	source, declared := p.sources[mid]
	up := p.tracks[mid]
	isNew := false
	if !p.closed && declared && up == nil {
		up = newUpTrack(p.pc, p.clock, remote.Codec(), remote.Kind(), p.participant, source, mid, p.rids[mid])
		up.tap = p.tap
		up.sock = p.sock
		up.audio.ext = audioLevelID(receiver)
		up.dyn.events = p.events
		p.tracks[mid] = up
		isNew = true
	}
	var layer *upLayer
	if up != nil && !p.closed && declared {
		layer = up.attach(remote)
	}
	p.mu.Unlock()
	if layer == nil {
		// Undeclared media, or a layer the offer did not announce, is
		// not forwarded; drain it so that the receiver's buffers do not
		// fill.
		go drain(remote)
		return
	}

	go func() {
		if !layer.read() {
			return
		}
		up.end()
		p.mu.Lock()
		removed := p.tracks[mid] == up
		if removed {
			delete(p.tracks, mid)
		}
		p.mu.Unlock()
		if removed {
			p.events.TrackRemoved(up)
		}
	}()
	if isNew {
		p.events.TrackAdded(up)
	}
}

// audioLevelURI is the RTP header extension carrying the sender's audio
// level (RFC 6464). It is not encrypted by SFrame: the server sees how loud
// each participant is, packet by packet; that is metadata it needs for
// active speaker detection.
const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

func audioLevelID(r *webrtc.RTPReceiver) uint8 {
	for _, e := range r.GetParameters().HeaderExtensions {
		if e.URI == audioLevelURI {
			return uint8(e.ID)
		}
	}
	return 0
}

func drain(remote *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := remote.Read(buf); err != nil {
			return
		}
	}
}

// sendingMids returns the mids of the media sections in which the offerer
// sends: direction sendonly or sendrecv (the default), in use (port not
// zero, or bundle-only in a BUNDLE group: liveSection).
func sendingMids(s *sdp.SessionDescription) map[string]bool {
	out := map[string]bool{}
	bundled := bundledMids(s)
	for _, m := range s.MediaDescriptions {
		if !liveSection(m, bundled) {
			continue
		}
		mid, ok := m.Attribute("mid")
		if !ok {
			continue
		}
		send := true
		for _, a := range m.Attributes {
			switch a.Key {
			case "recvonly", "inactive":
				send = false
			}
		}
		if send {
			out[mid] = true
		}
	}
	return out
}

// simulcastRIDs returns, per mid, the RIDs of the offerer's send
// simulcast description ("a=simulcast:send q;h;f"), in the order given,
// which Conclave's clients use lowest layer first. Alternatives after a
// comma and the paused marker "~" are ignored.
func simulcastRIDs(s *sdp.SessionDescription) map[string][]string {
	out := map[string][]string{}
	for _, m := range s.MediaDescriptions {
		mid, ok := m.Attribute("mid")
		if !ok {
			continue
		}
		sim, ok := m.Attribute("simulcast")
		if !ok {
			continue
		}
		fields := strings.Fields(sim)
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i] != "send" {
				continue
			}
			var rids []string
			for _, alt := range strings.Split(fields[i+1], ";") {
				rid := strings.TrimPrefix(strings.Split(alt, ",")[0], "~")
				if rid != "" {
					rids = append(rids, rid)
				}
			}
			if len(rids) > 1 {
				out[mid] = rids
			}
		}
	}
	return out
}

func equalRIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func waitGathering(done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(gatherTimeout):
	}
}
