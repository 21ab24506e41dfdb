package sfu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/conn"
)

// Subscriber is the peer connection on which a participant receives the
// others' media (a conn.Subscriber). The server makes every offer, one at a time: changes that
// happen while an offer is outstanding are folded into the next one.
type Subscriber struct {
	pc     *webrtc.PeerConnection
	clock  clock.Clock
	events conn.SubscriberEvents

	mu          sync.Mutex
	senders     map[string]*webrtc.RTPSender // by up track id
	downs       map[string]*DownTrack
	outstanding *conn.Offer // sent, not yet answered
	pending     bool        // changes not yet offered
	restartICE  bool
	closed      bool
	negTimer    func() bool // stops a deferred negotiation (negotiateSoonLocked)
	negDue      time.Time
	negSeq      uint64 // invalidates a deferred negotiation that lost the race to the lock

	alloc *allocator

	// The server's own send path (sendpath.go), once the connection is
	// up over UDP; nil: Pion's.
	eng        *Engine
	meter      *probeMeter // nil without transport-cc
	own        atomic.Pointer[sendPath]
	ownMu      sync.Mutex // serialises starting it
	ownRefused bool       // under ownMu: said once why not
}

// NewSubscriber creates the sending peer connection toward a participant.
func (e *Engine) NewSubscriber(events conn.SubscriberEvents) (conn.Subscriber, error) {
	return e.newSubscriber(events)
}

func (e *Engine) newSubscriber(events conn.SubscriberEvents) (*Subscriber, error) {
	pc, bwe, meter, err := e.newSubscriberConnection()
	if err != nil {
		return nil, fmt.Errorf("new subscriber connection: %w", err)
	}
	s := &Subscriber{pc: pc, clock: e.clock, events: events, senders: map[string]*webrtc.RTPSender{}, downs: map[string]*DownTrack{},
		eng: e, meter: meter}
	s.alloc = newAllocator(e.clock, bwe, meter, s.downTracks)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			s.startOwnPath()
			s.connectedDowns()
		}
		events.ConnectionState(st.String())
	})
	s.alloc.start()
	return s, nil
}

// AddTrack starts forwarding t to this subscriber (after the next
// negotiation); for a track already added it applies opts.Priority. t must
// be an up track of this engine.
func (s *Subscriber) AddTrack(t conn.UpTrack, opts conn.TrackOptions) error {
	up, ok := ownTrack(t)
	if !ok {
		return fmt.Errorf("add track %s: not a track of this media engine (%T)", t.ID(), t)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if d := s.downs[up.id]; d != nil {
		if d.priority.Swap(int32(opts.Priority)) != int32(opts.Priority) {
			s.alloc.kickNow()
		}
		return nil
	}
	d := newDownTrack(up, opts)
	sender, err := s.pc.AddTrack(d)
	if err != nil {
		return fmt.Errorf("add track %s: %w", up.id, err)
	}
	s.senders[up.id] = sender
	s.downs[up.id] = d
	up.addDown(d)
	go d.readRTCP(sender)
	s.negotiateSoonLocked(negotiateAddDelay)
	if p := s.own.Load(); p != nil {
		s.attachOwn(d, p)
	} else {
		go s.startOwnPath()
	}
	if s.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		d.setReady()
	}
	return nil
}

// connectedDowns marks every down track ready: the connection is up.
func (s *Subscriber) connectedDowns() {
	s.mu.Lock()
	downs := make([]*DownTrack, 0, len(s.downs))
	for _, d := range s.downs {
		downs = append(downs, d)
	}
	s.mu.Unlock()
	for _, d := range downs {
		d.setReady()
	}
}

// RemoveTrack stops forwarding t.
func (s *Subscriber) RemoveTrack(t conn.UpTrack) {
	up, ok := ownTrack(t)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sender := s.senders[up.id]
	if sender == nil {
		return
	}
	up.removeDown(s.downs[up.id])
	if p := s.own.Load(); p != nil {
		p.detach(s.downs[up.id])
	}
	s.alloc.forget(s.downs[up.id])
	delete(s.senders, up.id)
	delete(s.downs, up.id)
	if s.closed {
		return
	}
	_ = s.pc.RemoveTrack(sender) // stops sending at once
	s.negotiateSoonLocked(removeDelay())
}

// Negotiate sends an offer now if none is outstanding; used once at the
// start so that the connection exists even before any track.
func (s *Subscriber) Negotiate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negotiateLocked()
}

// RestartICE sends an offer with fresh ICE credentials.
func (s *Subscriber) RestartICE() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restartICE = true
	s.negotiateLocked()
}

// HandleAnswer applies the client's answer to the outstanding offer.
func (s *Subscriber) HandleAnswer(answer string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outstanding == nil {
		return fmt.Errorf("no offer is waiting for an answer")
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("apply answer: %w", err)
	}
	s.outstanding = nil
	if s.pending || s.restartICE {
		s.negotiateLocked()
	}
	return nil
}

// Outstanding returns the offer that still waits for an answer, if any, so
// that it can be sent again after the client reconnects.
func (s *Subscriber) Outstanding() (conn.Offer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outstanding == nil {
		return conn.Offer{}, false
	}
	return *s.outstanding, true
}

// AddCandidate adds a trickled remote ICE candidate.
func (s *Subscriber) AddCandidate(c conn.ICECandidate) error {
	return s.pc.AddICECandidate(iceCandidate(c))
}

// Close stops every down track and the peer connection.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.alloc.stop()
	}
	s.closed = true
	if s.negTimer != nil {
		s.negTimer()
		s.negTimer = nil
	}
	for id, d := range s.downs {
		d.up.removeDown(d)
		delete(s.downs, id)
		delete(s.senders, id)
	}
	s.mu.Unlock()
	s.stopOwnPath()
	return s.pc.Close()
}

// SetTrackSize records the size, in device pixels, at which the client
// renders the track it receives on transceiver mid; 0x0 means hidden
// (nothing is forwarded). The subscriber's allocator then picks the best
// layer that fits that size and the estimated bandwidth. It reports false
// if no track is sent on mid.
func (s *Subscriber) SetTrackSize(mid string, width, height int) bool {
	s.mu.Lock()
	var d *DownTrack
	for _, t := range s.pc.GetTransceivers() {
		if t.Mid() != mid || t.Sender() == nil {
			continue
		}
		if dt, ok := t.Sender().Track().(*DownTrack); ok && dt != nil {
			d = dt
		}
	}
	s.mu.Unlock()
	if d == nil {
		return false
	}
	if d.SetTargetSize(width, height) && d.up.kind == webrtc.RTPCodecTypeVideo {
		// A larger tile: probe for it now rather than at the next
		// interval, if it needs more than the estimate.
		s.alloc.grown()
	}
	s.alloc.kickNow()
	return true
}

// downTracks returns the down tracks now, for the allocator.
func (s *Subscriber) downTracks() []*DownTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*DownTrack, 0, len(s.downs))
	for _, d := range s.downs {
		out = append(out, d)
	}
	return out
}

// Bandwidth is the subscriber's estimated bandwidth in bits per second
// (GCC's estimate, or more where a probe confirmed more), 0 when unknown.
func (s *Subscriber) Bandwidth() int { return s.alloc.estimate() }

// Renegotiation after a track change is deferred so that the changes of
// one event (the two tracks of a participant that arrives or leaves, a
// burst of leaves) make one offer. A removed track stops being sent at
// once; only its m-line waits, so removals wait longer, and each
// subscriber a different time: in a big meeting a leave would otherwise
// make every subscriber renegotiate in the same instant, a burst of CPU
// on the server and on every client that the key rotation the leave
// starts (docs/e2ee.md, done within about 800 ms) should not queue
// behind, nor the media.
const (
	negotiateAddDelay        = 20 * time.Millisecond
	negotiateRemoveDelay     = 2 * time.Second
	negotiateRemoveDelayMore = 2 * time.Second // spread: up to this much more
)

// removeDelay is when this subscriber renegotiates after a removal.
func removeDelay() time.Duration {
	return negotiateRemoveDelay + rand.N(negotiateRemoveDelayMore)
}

// negotiateSoonLocked negotiates after d, or sooner if a negotiation is
// already due sooner.
func (s *Subscriber) negotiateSoonLocked(d time.Duration) {
	if s.closed {
		return
	}
	due := s.clock.Now().Add(d)
	if s.negTimer != nil {
		if !s.negDue.After(due) {
			return
		}
		s.negTimer()
	}
	s.negSeq++
	seq := s.negSeq
	s.negDue = due
	s.negTimer = s.clock.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.negSeq == seq {
			s.negotiateLocked()
		}
	})
}

func (s *Subscriber) negotiateLocked() {
	if s.negTimer != nil {
		// This offer carries every change so far.
		s.negTimer()
		s.negTimer = nil
		s.negSeq++
	}
	if s.closed {
		return
	}
	if s.outstanding != nil {
		s.pending = true
		return
	}
	s.pending = false
	opts := &webrtc.OfferOptions{ICERestart: s.restartICE}
	s.restartICE = false
	offer, err := s.pc.CreateOffer(opts)
	if err != nil {
		s.pending = true
		return
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		s.pending = true
		return
	}
	waitGathering(gathered)
	o := &conn.Offer{SDP: s.pc.LocalDescription().SDP, Tracks: map[string]conn.TrackDesc{}}
	for _, t := range s.pc.GetTransceivers() {
		sender := t.Sender()
		if sender == nil || t.Mid() == "" {
			continue
		}
		d, ok := sender.Track().(*DownTrack)
		if !ok || d == nil {
			continue
		}
		o.Tracks[t.Mid()] = conn.TrackDesc{
			Participant: d.up.participant,
			Source:      d.up.source,
			Kind:        d.up.Kind(),
			Stream:      d.stream,
		}
	}
	s.outstanding = o
	s.events.SendOffer(*o)
}
