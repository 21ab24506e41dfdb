package secure

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"conclave/internal/client"
	"conclave/internal/e2ee"
)

// errNotVerified drops a frame of a participant whose announcement this
// session has not verified: it has no key for it.
var errNotVerified = errors.New("secure: frame from a participant without a verified announcement")

// errNotReady drops an outgoing frame before the session has a key.
var errNotReady = errors.New("secure: no sender key yet")

func codecOf(c client.Codec) (e2ee.Codec, error) {
	switch c {
	case client.CodecVP8:
		return e2ee.CodecVP8, nil
	case client.CodecVP9:
		return e2ee.CodecVP9, nil
	case client.CodecOpus:
		return e2ee.CodecOpus, nil
	}
	return 0, fmt.Errorf("%w: %q", e2ee.ErrUnsupportedCodec, c)
}

// sendTransform encrypts outgoing frames with the current sender key.
type sendTransform struct{ s *Session }

// TransformFrame implements client.FrameTransform.
func (t sendTransform) TransformFrame(info client.FrameInfo, frame, dst []byte) ([]byte, error) {
	s := t.s
	codec, err := codecOf(info.Codec)
	if err != nil {
		s.dropped.Add(1)
		return nil, err
	}
	sender := s.active.Load()
	if sender == nil {
		s.dropped.Add(1)
		return nil, errNotReady
	}
	out, err := sender.EncryptFrame(codec, frame, dst)
	if err != nil {
		s.dropped.Add(1)
		return nil, err
	}
	s.encrypted.Add(1)
	return out, nil
}

// receiveTransform decrypts incoming frames with the Receiver of their
// sender. Frames it cannot decrypt are dropped and counted.
type receiveTransform struct{ s *Session }

// TransformFrame implements client.FrameTransform.
func (t receiveTransform) TransformFrame(info client.FrameInfo, frame, dst []byte) ([]byte, error) {
	s := t.s
	s.st.RLock()
	p := s.peers[info.Participant]
	s.st.RUnlock()
	if p == nil {
		s.counter(info.Participant).unverified.Add(1)
		return nil, errNotVerified
	}
	codec, err := codecOf(info.Codec)
	if err != nil {
		p.cnt.malformed.Add(1)
		return nil, err
	}
	out, err := p.recv.DecryptFrame(codec, frame, dst)
	if errors.Is(err, e2ee.ErrUnknownKey) && s.awaitKey(p, frameKID(codec, frame)) {
		out, err = p.recv.DecryptFrame(codec, frame, dst)
	}
	switch {
	case errors.Is(err, e2ee.ErrUnknownKey):
		p.cnt.noKey.Add(1)
		s.maybeRequestKey(p, frameKID(codec, frame))
		return nil, err
	case errors.Is(err, e2ee.ErrAuth):
		p.cnt.authFailed.Add(1)
		return nil, err
	case err != nil:
		p.cnt.malformed.Add(1)
		return nil, err
	}
	p.cnt.decrypted.Add(1)
	p.failingSince.Store(0)
	if s.cfg.Observer != nil {
		if kid := frameKID(codec, frame); p.lastKID.Swap(kid+1) != kid+1 {
			index, gen, step, _ := e2ee.SplitKID(kid)
			s.observe(KeyEvent{Kind: FirstDecrypt, Participant: p.id,
				Key: e2ee.SenderKey{Index: index, Generation: gen, Step: step}})
		}
	}
	return out, nil
}

// awaitKey holds a frame of p whose key generation p's ring does not hold
// but may yet get (e2ee.KeyRing.Awaits: a newer generation) until a key
// message of p comes, or until the wait ends: KeyWait after the first
// frame that began to wait since p's last key message. Frames that come
// later wait no longer than that first one, and once the wait has ended
// none waits again until a key message comes, so a key that never comes
// stalls a track once, by KeyWait at most. It reports whether a key
// message came, so that the frame is worth trying again. It blocks only
// the track the frame came on: a sender switches to a rotated key
// SwitchDelay after sending it, and its first frames may overtake the key
// message on the way.
func (s *Session) awaitKey(p *peer, kid uint64) bool {
	_, gen, _, ok := e2ee.SplitKID(kid)
	ring := p.recv.Ring()
	if !ok || s.cfg.KeyWait < 0 || !ring.Awaits(gen) {
		return false
	}
	for {
		p.keyMu.Lock()
		if !ring.Awaits(gen) {
			p.keyMu.Unlock()
			return true
		}
		now := s.cfg.Clock.Now()
		if p.waitUntil.IsZero() {
			p.waitUntil = now.Add(s.cfg.KeyWait)
		}
		left, added := p.waitUntil.Sub(now), p.keyAdded
		p.keyMu.Unlock()
		if left <= 0 {
			return false
		}
		expired := make(chan struct{})
		stop := s.cfg.Clock.AfterFunc(left, func() { close(expired) })
		select {
		case <-added:
			stop()
		case <-expired:
		}
	}
}

// frameKID reads the KID of an encrypted frame (0 if it has none).
func frameKID(codec e2ee.Codec, frame []byte) uint64 {
	n, err := codec.ClearPrefix(frame)
	if err != nil {
		return 0
	}
	kid, _, _, err := e2ee.ParseHeader(frame[n:])
	if err != nil {
		return 0
	}
	return kid
}

// counters are the E2EE counts of one remote participant.
type counters struct {
	name                                                   string // from the latest verified announcement; guarded by Session.st
	decrypted, noKey, authFailed, malformed, unverified    atomic.Uint64
	keyMessages, replays, badKeyMessages, badAnnouncements atomic.Uint64
	keyRequestsSent, keyRequestsReceived                   atomic.Uint64
}

// counter returns the counters of a participant, made on first use.
func (s *Session) counter(id string) *counters {
	s.st.RLock()
	c := s.counts[id]
	s.st.RUnlock()
	if c != nil {
		return c
	}
	s.st.Lock()
	defer s.st.Unlock()
	if c = s.counts[id]; c == nil {
		c = &counters{}
		s.counts[id] = c
	}
	return c
}

// Stats are the E2EE counts of one remote participant since the session
// began.
type Stats struct {
	Participant string
	Name        string // from its announcement, if one verified
	// Decrypted frames were passed on; Dropped ones were not: the sum of
	// NoKey (no key for their KID), AuthFailed (altered, or under a key
	// that is not the sender's), Malformed and Unverified (no verified
	// announcement from their sender).
	Decrypted, Dropped                        uint64
	NoKey, AuthFailed, Malformed, Unverified  uint64
	KeyMessages                               uint64 // key messages opened
	Replays, BadKeyMessages, BadAnnouncements uint64 // refused
	KeyRequestsSent, KeyRequestsReceived      uint64
}

// Stats returns the counts of every participant seen, sorted by id.
func (s *Session) Stats() []Stats {
	s.st.RLock()
	out := make([]Stats, 0, len(s.counts))
	for id, c := range s.counts {
		st := Stats{Participant: id,
			Decrypted: c.decrypted.Load(), NoKey: c.noKey.Load(), AuthFailed: c.authFailed.Load(),
			Malformed: c.malformed.Load(), Unverified: c.unverified.Load(),
			KeyMessages: c.keyMessages.Load(), Replays: c.replays.Load(),
			BadKeyMessages: c.badKeyMessages.Load(), BadAnnouncements: c.badAnnouncements.Load(),
			KeyRequestsSent: c.keyRequestsSent.Load(), KeyRequestsReceived: c.keyRequestsReceived.Load()}
		st.Dropped = st.NoKey + st.AuthFailed + st.Malformed + st.Unverified
		st.Name = c.name
		out = append(out, st)
	}
	s.st.RUnlock()
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Participant, b.Participant) })
	return out
}

// Sent returns how many of this participant's own frames were encrypted
// and sent, and how many were dropped (no key yet, or not encryptable).
func (s *Session) Sent() (encrypted, dropped uint64) {
	return s.encrypted.Load(), s.dropped.Load()
}
