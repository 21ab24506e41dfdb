package secure

import (
	"errors"
	"fmt"

	"conclave/internal/e2ee"
)

// eligible reports whether p may get this session's keys: any verified
// participant, or only certified ones with RequireCertified.
func (s *Session) eligible(p *peer) bool {
	return !s.cfg.RequireCertified || s.certified(p.ann)
}

// giveKeys sends a newly verified participant the keys it needs
// (docs/e2ee.md, section 6): a newcomer gets the next ratchet step of our
// key (the pending rotated key during a rotation), which we use at once;
// a participant that was there before us gets our current key (and the
// pending one).
func (s *Session) giveKeys(p *peer, newcomer bool) {
	if !s.eligible(p) {
		s.warn(fmt.Sprintf("participant %s (%s) is not certified: it gets no keys and cannot decrypt this participant", p.id, p.ann.DisplayName))
		return
	}
	active := s.active.Load()
	if active == nil {
		return
	}
	if !newcomer {
		s.sendKey(p, active.Key())
		if s.pending != nil {
			s.sendKey(p, s.pending.Key())
		}
		return
	}
	target := s.pending
	if target == nil {
		target = active
	}
	if target.Key().Step == 255 {
		// The ratchet is exhausted: a fresh generation for everyone, p
		// (already listed) included.
		s.rotate()
		return
	}
	k, fresh, err := target.Ratchet()
	if err != nil || fresh {
		s.log.Error("ratchet failed", "err", err, "fresh", fresh)
		return
	}
	s.observe(KeyEvent{Kind: OwnKey, Participant: s.self, Key: k, Pending: target == s.pending})
	s.sendKey(p, k)
}

// sendKey seals k for p and sends it. Called with mu held, so that key
// messages leave in the order of their sequence numbers.
func (s *Session) sendKey(p *peer, k e2ee.SenderKey) {
	p.keysSent = true
	if s.tr == nil {
		return
	}
	if err := s.tr.SendKey(p.id, p.ch.Seal(k)); err != nil {
		s.log.Warn("sending a key message failed", "to", p.id, "err", err)
	}
}

// scheduleRotation rotates after the debounce; leaves during it share the
// rotation.
func (s *Session) scheduleRotation() {
	if s.rotateStop != nil {
		return
	}
	epoch := s.epoch
	s.rotateStop = s.cfg.Clock.AfterFunc(s.cfg.RotationDebounce, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.closed {
			return
		}
		s.rotateStop = nil
		s.rotate()
	})
}

// rotate draws a fresh key of the next generation, sends it to every
// remaining participant it may go to, and starts using it after the
// switch delay.
func (s *Session) rotate() {
	base := s.pending
	if base == nil {
		base = s.active.Load()
	}
	if base == nil {
		return
	}
	cur := base.Key()
	k, err := e2ee.NewSenderKey(cur.Index, cur.Generation+1)
	if err != nil {
		s.log.Error("drawing a rotated key failed", "err", err)
		return
	}
	next, err := e2ee.NewSender(k)
	if err != nil {
		s.log.Error("starting a rotated sender failed", "err", err)
		return
	}
	s.pending = next
	s.observe(KeyEvent{Kind: OwnKey, Participant: s.self, Key: k, Pending: true})
	s.log.Info("rotating the sender key", "generation", k.Generation)
	s.st.RLock()
	peers := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	s.st.RUnlock()
	for _, p := range peers {
		if s.eligible(p) {
			s.sendKey(p, k)
		}
	}
	if s.switchStop != nil {
		s.switchStop()
	}
	epoch := s.epoch
	s.switchStop = s.cfg.Clock.AfterFunc(s.cfg.SwitchDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.closed || s.pending == nil {
			return
		}
		s.switchStop = nil
		s.active.Store(s.pending)
		s.observe(KeyEvent{Kind: Switched, Participant: s.self, Key: s.pending.Key()})
		s.pending = nil
	})
}

// onKey handles a `key` message: a key request, or a key message to open
// with the channel of its sender.
func (s *Session) onKey(from string, payload []byte) {
	if isKeyRequest(payload) {
		s.onKeyRequest(from)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.eph == nil {
		return
	}
	s.st.RLock()
	p := s.peers[from]
	s.st.RUnlock()
	if p == nil {
		// Its announcement has not come (or was refused): keep a few.
		q := s.buffered[from]
		if len(q) < maxBufferedPerPeer && (q != nil || len(s.buffered) < maxBufferedPeers) {
			s.buffered[from] = append(q, payload)
		} else {
			s.counter(from).badKeyMessages.Add(1)
		}
		return
	}
	s.openKey(p, payload)
}

// openKey opens a key message from p and installs the key. The first that
// opens makes p "end-to-end verified".
func (s *Session) openKey(p *peer, payload []byte) {
	k, err := p.ch.Open(payload)
	switch {
	case errors.Is(err, e2ee.ErrReplay):
		p.cnt.replays.Add(1)
		s.warn(fmt.Sprintf("refused a replayed key message from participant %s (%s)", p.id, p.ann.DisplayName))
		return
	case err != nil:
		p.cnt.badKeyMessages.Add(1)
		s.warn(fmt.Sprintf("a key message from participant %s (%s) does not open (%v): its keys may have been substituted", p.id, p.ann.DisplayName, err))
		return
	}
	if err := p.recv.AddKey(k); err != nil {
		p.cnt.badKeyMessages.Add(1)
		s.warn(fmt.Sprintf("participant %s (%s) sent a key for another sender index", p.id, p.ann.DisplayName))
		return
	}
	p.cnt.keyMessages.Add(1)
	p.keyArrived()
	s.observe(KeyEvent{Kind: PeerKey, Participant: p.id, Key: k})
	if !p.verified.Swap(true) {
		s.notify(Notice{Kind: Verified, Participant: s.describe(p.ann, false, true)})
	}
}

// onKeyRequest answers a key request from a participant this session
// verified with its current key (and the pending one), at most once per
// resendInterval per requester.
func (s *Session) onKeyRequest(from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.eph == nil {
		return
	}
	s.counter(from).keyRequestsReceived.Add(1)
	s.st.RLock()
	p := s.peers[from]
	s.st.RUnlock()
	active := s.active.Load()
	if p == nil || active == nil || !s.eligible(p) {
		return
	}
	now := s.cfg.Clock.Now()
	if now.Sub(p.lastResend) < resendInterval {
		return
	}
	p.lastResend = now
	s.log.Debug("answering a key request", "from", from)
	s.sendKey(p, active.Key())
	if s.pending != nil {
		s.sendKey(p, s.pending.Key())
	}
}
