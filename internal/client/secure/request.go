package secure

import (
	"fmt"
	"time"
)

// keyRequest is the payload of a key request, the same in the browser
// (web/static/js/e2ee/meetingcrypto.mjs): the 5 bytes "CKRQ" || 0x01
// (version). It travels in a `key` message; a key message is 61 bytes,
// so the two never collide.
const keyRequest = "CKRQ\x01"

// isKeyRequest reports whether a `key` payload is a key request.
func isKeyRequest(payload []byte) bool { return string(payload) == keyRequest }

// maybeRequestKey is called on the frame path when a frame of p has no
// key: once frames have failed for KeyRequestAfter, and at most every
// KeyRequestAfter, it asks p for its key.
func (s *Session) maybeRequestKey(p *peer, kid uint64) {
	// kid is only logged: the request names no key version.
	now := s.cfg.Clock.Now().UnixNano()
	since := p.failingSince.Load()
	if since == 0 {
		p.failingSince.CompareAndSwap(0, now)
		return
	}
	after := int64(s.cfg.KeyRequestAfter)
	last := p.lastRequest.Load()
	if now-since < after || now-last < after || !p.lastRequest.CompareAndSwap(last, now) {
		return
	}
	s.st.RLock()
	tr := s.tr
	s.st.RUnlock()
	if tr == nil {
		return
	}
	p.cnt.keyRequestsSent.Add(1)
	s.log.Debug("asking for a key", "participant", p.id, "kid", kid,
		"failing", time.Duration(now-since).Round(time.Millisecond))
	// Not on the frame path: sending waits for the signaling loop.
	go func() {
		if err := tr.SendKey(p.id, []byte(keyRequest)); err != nil {
			s.log.Debug("sending a key request failed", "to", p.id, "err", fmt.Sprint(err))
		}
	}()
}
