package secure

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	"conclave/internal/e2ee"
)

// Bounds on key messages kept while their sender's announcement is
// missing (the server relays in order, so this is rare).
const (
	maxBufferedPerPeer = 4
	maxBufferedPeers   = 16
)

func (s *Session) verifyOptions(meeting string) e2ee.VerifyOptions {
	return e2ee.VerifyOptions{MeetingID: meeting, OrgKey: s.cfg.OrgKey, Now: s.cfg.Clock.Now()}
}

// onWelcome starts the E2EE of a meeting after a fresh welcome: a new
// ECDH key, sender index and sender key, an empty list, and the signed
// announcement (docs/e2ee.md, section 8). others are the participants
// already there: they are not newcomers, so their keys come unratcheted.
func (s *Session) onWelcome(self, meeting string, others []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.epoch++
	s.stopTimers()
	s.pending, s.eph = nil, nil
	s.buffered = map[string][][]byte{}
	s.ownPayload = nil
	s.listed = map[string]string{}
	s.preexisting = map[string]bool{}
	for _, id := range others {
		s.preexisting[id] = true
	}
	s.st.Lock()
	s.meeting, s.self, s.own, s.code = meeting, self, nil, ""
	s.peers = map[string]*peer{}
	s.rounds = nil
	s.revokedPeers = map[string]Participant{}
	s.st.Unlock()
	s.verifyQueue = map[string][][]byte{}
	s.departed = map[string]*peer{}
	s.active.Store(nil)
	if meeting == "" {
		s.warn("the server gave no meeting id: end-to-end encryption is impossible; nothing will be sent or received")
		return
	}

	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		s.warn("cannot draw an ECDH key: " + err.Error())
		return
	}
	index := randomIndex()
	k, err := e2ee.NewSenderKey(index, 0)
	if err != nil {
		s.warn("cannot draw a sender key: " + err.Error())
		return
	}
	sender, err := e2ee.NewSender(k)
	if err != nil {
		s.warn("cannot start the sender: " + err.Error())
		return
	}
	payload, own, err := s.announcement(meeting, self, eph, index)
	if err != nil {
		s.warn(err.Error())
		return
	}
	s.eph, s.ownPayload = eph, payload
	s.active.Store(sender)
	var verifier note.Verifier
	if s.cfg.Log != nil {
		verifier = s.cfg.Log.Verifier()
	}
	s.st.Lock()
	s.own = own
	s.rounds = e2ee.NewRoundState(meeting, self, s.cfg.Device, verifier, s.cfg.CodeDigits)
	s.rounds.SetClock(s.cfg.Clock.Now)
	s.st.Unlock()
	s.observe(KeyEvent{Kind: Ephemeral, Participant: self, ECDH: eph})
	s.observe(KeyEvent{Kind: OwnKey, Participant: self, Key: k})
	s.observe(KeyEvent{Kind: Switched, Participant: self, Key: k})
	s.log.Info("end-to-end encryption ready", "meeting", meeting, "participant", self, "certified", own.Certified)
	if s.tr != nil {
		if err := s.tr.SendAnnounce(payload); err != nil {
			s.log.Warn("sending the announcement failed", "err", err)
		}
	}
	s.updateCode()
}

// announcement signs this participant's announcement and verifies it as
// the others will. A credential that does not verify (expired, or from
// another organisation key) would make everyone refuse the announcement:
// the participant then announces itself as a guest, with a warning.
func (s *Session) announcement(meeting, self string, eph *ecdh.PrivateKey, index uint16) ([]byte, *e2ee.VerifiedAnnouncement, error) {
	a := e2ee.Announcement{MeetingID: meeting, ParticipantID: self, UserID: s.cfg.UserID,
		DisplayName: s.cfg.Name, ECDHPublicKey: eph.PublicKey(), Credential: s.cfg.Credential,
		SenderIndex: index, Timestamp: s.cfg.Clock.Now()}
	for {
		payload, err := e2ee.SignAnnouncement(s.cfg.Device, a)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot sign the announcement: %w", err)
		}
		own, err := e2ee.VerifyAnnouncement(payload, s.verifyOptions(meeting))
		if err == nil {
			return payload, own, nil
		}
		if a.Credential == nil {
			return nil, nil, fmt.Errorf("own announcement does not verify: %w", err)
		}
		s.warn(fmt.Sprintf("this device's credential does not verify (%v); joining as not certified", err))
		a.Credential, a.UserID = nil, ""
	}
}

// randomIndex draws a sender index in 1..65535.
func randomIndex() uint16 {
	var b [2]byte
	for {
		rand.Read(b[:])
		if v := binary.BigEndian.Uint16(b[:]); v != 0 {
			return v
		}
	}
}

// onAnnounce verifies an announcement relayed by the server and, once it
// holds, lists the participant and gives it keys: a newcomer gets a
// ratcheted key (it cannot read what came before), a participant that was
// there before us our current key.
func (s *Session) onAnnounce(from string, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.eph == nil || from == s.self {
		return
	}
	s.st.RLock()
	old, meeting := s.peers[from], s.meeting
	s.st.RUnlock()
	if old != nil && bytes.Equal(old.ann.Raw, payload) {
		return // the same announcement again
	}
	if _, gone := s.revokedOf(from); gone {
		return // its device was revoked: nothing of it is taken in again
	}
	a, err := e2ee.VerifyAnnouncement(payload, s.verifyOptions(meeting))
	if err != nil {
		s.counter(from).badAnnouncements.Add(1)
		s.warn(fmt.Sprintf("refused the announcement of participant %s: %v", from, err))
		return
	}
	if a.ParticipantID != from {
		s.counter(from).badAnnouncements.Add(1)
		s.warn(fmt.Sprintf("refused an announcement relayed as participant %s but made by %s", from, a.ParticipantID))
		return
	}
	ch, err := e2ee.NewChannel(meeting, s.self, s.eph, from, a.ECDHPublicKey)
	if err != nil {
		s.counter(from).badAnnouncements.Add(1)
		s.warn(fmt.Sprintf("refused the announcement of participant %s: %v", from, err))
		return
	}
	p := &peer{id: from, ann: a, ch: ch, cnt: s.counter(from), keyAdded: make(chan struct{}),
		recv: e2ee.NewReceiver(a.SenderIndex, e2ee.KeyRingConfig{Retention: s.cfg.Retention, Clock: s.cfg.Clock})}
	s.st.Lock()
	s.peers[from] = p
	p.cnt.name = a.DisplayName
	s.st.Unlock()
	newcomer := !s.preexisting[from]
	if old != nil {
		// Keep the latest (docs/e2ee.md, section 8), but whoever holds the
		// new keys is treated as a newcomer, and the holder of the old
		// ones as gone.
		s.warn(fmt.Sprintf("participant %s (%s) announced new keys; compare the meeting code again", from, a.DisplayName))
		newcomer = true
		if old.keysSent {
			s.scheduleRotation()
		}
	}
	delete(s.preexisting, from)
	d := s.describe(a, false, false)
	p.certified = d.Certified
	s.notify(Notice{Kind: Announced, Participant: d})
	s.warnLookalikes(from)
	if d.NewDevice {
		s.warn(fmt.Sprintf("participant %s (%s) uses a NEW DEVICE, first certified %s ago: if they did not add a device, it may be an impostor",
			from, d.CertifiedName, s.cfg.Clock.Now().Sub(d.FirstCertified).Round(time.Minute)))
	}
	s.updateCode()
	s.giveKeys(p, newcomer)
	queued := s.buffered[from]
	delete(s.buffered, from)
	for _, m := range queued {
		s.openKey(p, m)
	}
}

// reannounce sends our announcement again after a resumed welcome, in
// case it was lost with the connection (others ignore a repeat).
func (s *Session) reannounce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ownPayload == nil || s.tr == nil {
		return
	}
	if err := s.tr.SendAnnounce(s.ownPayload); err != nil {
		s.log.Warn("sending the announcement failed", "err", err)
	}
}

// onListed notes a participant the server lists; if no announcement of
// it verifies within AnnounceGrace, a warning says it is not end-to-end.
func (s *Session) onListed(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.listed == nil || id == s.self {
		return
	}
	s.listed[id] = name
	epoch := s.epoch
	if stop := s.graceStops[id]; stop != nil {
		stop()
	}
	s.graceStops[id] = s.cfg.Clock.AfterFunc(AnnounceGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.closed {
			return
		}
		delete(s.graceStops, id)
		s.st.RLock()
		p := s.peers[id]
		s.st.RUnlock()
		if name, listed := s.listed[id]; listed && p == nil {
			s.warn(fmt.Sprintf("participant %s (%s) is in the meeting but has no verified announcement: it is not end-to-end, gets no keys, and its media is dropped", id, name))
		}
	})
}

// onLeft drops a participant the server reports gone; if it had our key,
// a rotation follows after the debounce.
func (s *Session) onLeft(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.preexisting, id)
	delete(s.buffered, id)
	delete(s.listed, id)
	if stop := s.graceStops[id]; stop != nil {
		stop()
		delete(s.graceStops, id)
	}
	s.st.Lock()
	p := s.peers[id]
	delete(s.peers, id)
	s.st.Unlock()
	if p == nil {
		return
	}
	if len(s.departed) >= maxDeparted {
		clear(s.departed)
	}
	s.departed[id] = p
	s.notify(Notice{Kind: Gone, Participant: s.describe(p.ann, false, p.verified.Load())})
	s.updateCode()
	if p.keysSent {
		s.scheduleRotation()
	}
}

// updateCode records a change of the verified view for the meeting code
// (docs/e2ee.md, section 14): the code shows "verifying" ("") until a
// round over the new view completes. The commit to it (a fresh nonce, the
// verified announcements and the trusted log checkpoint) waits until the
// view has been quiet a moment (scheduleCommit), so that joins that come
// together share one round.
func (s *Session) updateCode() {
	s.st.Lock()
	if s.own == nil || s.rounds == nil {
		s.st.Unlock()
		return
	}
	view := []*e2ee.VerifiedAnnouncement{s.own}
	for _, p := range s.peers {
		view = append(view, p.ann)
	}
	var cp e2ee.Checkpoint
	if s.cfg.Log != nil {
		cp = s.cfg.Log.Checkpoint()
	}
	s.rounds.Change(view, cp)
	changed := s.code != ""
	s.code = ""
	s.st.Unlock()
	if changed {
		s.notify(Notice{Kind: CodeChanged, Code: ""})
	}
	// Commits that came before the view changed still count if they name it.
	s.replayVerify()
	s.scheduleCommit()
	s.progressRound()
}
