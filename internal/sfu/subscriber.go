package sfu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
)

// TrackDesc tells a subscriber what a transceiver of its offer carries.
type TrackDesc struct {
	Participant string
	Source      string
	Kind        string
	Stream      string
}

// Offer is a server offer for a subscriber connection.
type Offer struct {
	SDP    string
	Tracks map[string]TrackDesc // by mid
}

// SubscriberEvents receives a subscriber connection's signaling needs.
type SubscriberEvents interface {
	// SendOffer must deliver the offer to the client without blocking.
	SendOffer(Offer)
	// ConnectionState reports the peer connection's state.
	ConnectionState(webrtc.PeerConnectionState)
}

// Subscriber is the peer connection on which a participant receives the
// others' media. The server makes every offer, one at a time: changes that
// happen while an offer is outstanding are folded into the next one.
type Subscriber struct {
	pc     *webrtc.PeerConnection
	clock  clock.Clock
	events SubscriberEvents

	mu          sync.Mutex
	senders     map[string]*webrtc.RTPSender // by up track id
	downs       map[string]*DownTrack
	outstanding *Offer // sent, not yet answered
	pending     bool   // changes not yet offered
	restartICE  bool
	closed      bool
	negTimer    func() bool // stops a deferred negotiation (negotiateSoonLocked)
	negDue      time.Time
	negSeq      uint64 // invalidates a deferred negotiation that lost the race to the lock

	bwe        cc.BandwidthEstimator // nil without transport-cc
	probe      *prober               // nil without transport-cc
	quit       chan struct{}
	kick       chan struct{}
	allocMu    sync.Mutex // guards the allocator's state below
	allocState map[*DownTrack]*allocState
	bw         bandwidth
	budget     atomic.Int64 // the latest round's estimate, bits per second
	soon       atomic.Bool  // a round is scheduled within pendingInterval
}

// NewSubscriber creates the sending peer connection toward a participant.
func (e *Engine) NewSubscriber(events SubscriberEvents) (*Subscriber, error) {
	pc, bwe, meter, err := e.newSubscriberConnection()
	if err != nil {
		return nil, fmt.Errorf("new subscriber connection: %w", err)
	}
	s := &Subscriber{pc: pc, clock: e.clock, events: events, senders: map[string]*webrtc.RTPSender{}, downs: map[string]*DownTrack{},
		bwe: bwe, quit: make(chan struct{}), kick: make(chan struct{}, 1),
		allocState: map[*DownTrack]*allocState{}}
	if meter != nil {
		s.probe = newProber(meter, s.kickAllocator)
	}
	pc.OnConnectionStateChange(events.ConnectionState)
	go s.runAllocator()
	return s, nil
}

// AddTrack starts forwarding up to this subscriber (after the next
// negotiation).
func (s *Subscriber) AddTrack(up *UpTrack) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.senders[up.id] != nil {
		return nil
	}
	d := newDownTrack(up)
	sender, err := s.pc.AddTrack(d)
	if err != nil {
		return fmt.Errorf("add track %s: %w", up.id, err)
	}
	s.senders[up.id] = sender
	s.downs[up.id] = d
	up.addDown(d)
	go d.readRTCP(sender)
	s.negotiateSoonLocked(negotiateAddDelay)
	return nil
}

// RemoveTrack stops forwarding the up track with this id.
func (s *Subscriber) RemoveTrack(up *UpTrack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sender := s.senders[up.id]
	if sender == nil {
		return
	}
	up.removeDown(s.downs[up.id])
	s.allocMu.Lock()
	delete(s.allocState, s.downs[up.id])
	s.allocMu.Unlock()
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
func (s *Subscriber) Outstanding() (Offer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outstanding == nil {
		return Offer{}, false
	}
	return *s.outstanding, true
}

// AddCandidate adds a trickled remote ICE candidate.
func (s *Subscriber) AddCandidate(c webrtc.ICECandidateInit) error {
	return s.pc.AddICECandidate(c)
}

// Close stops every down track and the peer connection.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		close(s.quit)
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
		s.probe.expedite()
	}
	s.kickAllocator()
	return true
}

// kickAllocator runs an allocation round soon.
func (s *Subscriber) kickAllocator() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Bandwidth is the subscriber's estimated bandwidth in bits per second
// (GCC's estimate, or more where a probe confirmed more), 0 when unknown.
func (s *Subscriber) Bandwidth() int {
	if b := s.budget.Load(); b > 0 {
		return int(b)
	}
	if s.bwe == nil {
		return 0
	}
	return s.bwe.GetTargetBitrate()
}

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
	o := &Offer{SDP: s.pc.LocalDescription().SDP, Tracks: map[string]TrackDesc{}}
	for _, t := range s.pc.GetTransceivers() {
		sender := t.Sender()
		if sender == nil || t.Mid() == "" {
			continue
		}
		d, ok := sender.Track().(*DownTrack)
		if !ok || d == nil {
			continue
		}
		o.Tracks[t.Mid()] = TrackDesc{
			Participant: d.up.participant,
			Source:      d.up.source,
			Kind:        d.up.Kind(),
			Stream:      d.stream,
		}
	}
	s.outstanding = o
	s.events.SendOffer(*o)
}
