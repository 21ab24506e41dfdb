package secure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"conclave/internal/e2ee"
)

// The verification round of the meeting code (docs/e2ee.md, section 14)
// and what the transparency log changes during a meeting.

// maxDeparted bounds the participants remembered after they left.
const maxDeparted = 64

// maxVerifyQueue bounds the verify messages kept per sender until its
// announcement is verified.
const maxVerifyQueue = 8

// adoptTimeout bounds a consistency check with a peer's checkpoint.
const adoptTimeout = 10 * time.Second

// sendVerify sends a verify message. Called with mu held.
func (s *Session) sendVerify(payload []byte) {
	if s.tr == nil || payload == nil {
		return
	}
	if err := s.tr.SendVerify(payload); err != nil {
		s.log.Warn("sending a verification message failed", "err", err)
	}
}

// onVerify takes a commit or a reveal from a participant.
func (s *Session) onVerify(from string, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.rounds == nil || from == s.self {
		return
	}
	s.takeVerify(from, payload, true)
	s.progressRound()
}

// takeVerify feeds one message to the round; a message of a participant
// not verified yet waits (queue) for its announcement.
func (s *Session) takeVerify(from string, payload []byte, queue bool) {
	s.st.RLock()
	p := s.peers[from]
	s.st.RUnlock()
	if p == nil {
		if q := s.verifyQueue[from]; queue && len(q) < maxVerifyQueue && len(s.verifyQueue) < maxBufferedPeers {
			s.verifyQueue[from] = append(q, payload)
		}
		return
	}
	switch {
	case e2ee.IsCommit(payload):
		s.st.Lock()
		cp, err := s.rounds.OnCommit(from, payload)
		moved := s.rounds.Pending()
		s.st.Unlock()
		if err != nil {
			s.counter(from).badAnnouncements.Add(1)
			s.warn(fmt.Sprintf("refused a verification commit of participant %s (%s): %v", from, p.ann.DisplayName, err))
			return
		}
		// A round ahead of ours: we moved to it with a fresh nonce, or
		// will once the pace of commits allows.
		s.sendVerify(moved)
		s.scheduleCommit()
		switch {
		case cp == nil:
		case s.cfg.Log != nil && len(cp.Note) > 0:
			s.adoptLater(cp.Note)
		case s.cfg.Log == nil:
			// Without a log key this member cannot check checkpoints: it
			// takes the largest one its peers hold, so that the round can
			// agree (the code covers it either way).
			s.st.Lock()
			commit, err := s.rounds.Adopt(*cp)
			s.st.Unlock()
			if err == nil {
				s.sendVerify(commit)
				s.scheduleCommit()
			}
		}
		s.st.RLock()
		round, differs := s.rounds.DisagreeingRound(from)
		s.st.RUnlock()
		if differs {
			s.checkViewLater(p, round)
		}
	case e2ee.IsReveal(payload):
		s.st.Lock()
		err := s.rounds.OnReveal(from, payload)
		s.st.Unlock()
		if err != nil {
			s.warn(fmt.Sprintf("participant %s (%s) revealed a value that does not match its commitment: the meeting code cannot be trusted", from, p.ann.DisplayName))
		}
	default:
		s.counter(from).badAnnouncements.Add(1)
	}
}

// ViewGrace is how long a participant may commit to another list of
// participants than this one's before a warning says so (views differ
// for a moment while a join or leave travels).
const ViewGrace = 5 * time.Second

// checkViewLater warns if, after ViewGrace, p's commit of that round still
// names another view.
func (s *Session) checkViewLater(p *peer, round uint32) {
	epoch := s.epoch
	s.cfg.Clock.AfterFunc(ViewGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.closed || s.rounds == nil {
			return
		}
		s.st.RLock()
		r, differs := s.rounds.DisagreeingRound(p.id)
		s.st.RUnlock()
		if differs && r == round && p.warnedView < round {
			p.warnedView = round
			s.warn(fmt.Sprintf("participant %s (%s) sees a DIFFERENT LIST OF PARTICIPANTS than you: no meeting code can be agreed. Compare the participant lists aloud; someone may be in the middle", p.id, p.ann.DisplayName))
		}
	})
}

// replayVerify feeds the queued messages of participants now verified.
func (s *Session) replayVerify() {
	for from, q := range s.verifyQueue {
		s.st.RLock()
		known := s.peers[from] != nil
		s.st.RUnlock()
		if !known {
			continue
		}
		delete(s.verifyQueue, from)
		for _, m := range q {
			s.takeVerify(from, m, false)
		}
	}
}

// scheduleCommit makes the commit the round owes if it is due, and
// otherwise sets a timer for when it is (docs/e2ee.md, section 14, rule
// 1). Called with mu held.
func (s *Session) scheduleCommit() {
	if s.roundStop != nil {
		s.roundStop()
		s.roundStop = nil
	}
	s.st.Lock()
	if s.rounds == nil {
		s.st.Unlock()
		return
	}
	commit, err := s.rounds.CommitDue()
	at, owed := s.rounds.Due()
	s.st.Unlock()
	if err != nil {
		s.warn("cannot commit to the meeting code: " + err.Error())
		return
	}
	s.sendVerify(commit)
	if !owed {
		return
	}
	epoch := s.epoch
	s.roundStop = s.cfg.Clock.AfterFunc(at.Sub(s.cfg.Clock.Now()), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.closed {
			return
		}
		s.roundStop = nil
		s.scheduleCommit()
		s.progressRound()
	})
}

// progressRound reveals once everyone committed to the same view and
// checkpoint, and shows the code once every reveal is in.
func (s *Session) progressRound() {
	s.st.Lock()
	if s.rounds == nil {
		s.st.Unlock()
		return
	}
	reveal := s.rounds.Reveal()
	code := s.rounds.Code()
	changed := code != s.code
	s.code = code
	s.st.Unlock()
	s.sendVerify(reveal)
	if reveal != nil && code == "" {
		s.st.Lock()
		code = s.rounds.Code()
		changed = code != s.code
		s.code = code
		s.st.Unlock()
	}
	if changed {
		s.notify(Notice{Kind: CodeChanged, Code: code})
	}
}

// adoptLater checks a peer's checkpoint against the trusted one (a
// consistency proof from the server) off the event path, then adopts it in
// the round, or reports a split view.
func (s *Session) adoptLater(signed []byte) {
	epoch := s.epoch
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), adoptTimeout)
		defer cancel()
		cp, err := s.cfg.Log.Adopt(ctx, signed)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.epoch != epoch || s.closed || s.rounds == nil {
			return
		}
		if err != nil {
			if errors.Is(err, e2ee.ErrSplitView) {
				return // reported by the monitor's LogSplit event
			}
			s.warn("cannot check a participant's identity log against this one's: " + err.Error() + " (the meeting code stays unverified)")
			return
		}
		s.st.Lock()
		commit, err := s.rounds.Adopt(cp)
		s.st.Unlock()
		if err != nil {
			s.warn("cannot commit again to the meeting code: " + err.Error())
			return
		}
		s.sendVerify(commit)
		s.scheduleCommit()
		s.progressRound()
	}()
}

// onLogEvent follows the transparency log during the meeting.
func (s *Session) onLogEvent(e LogEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	switch e.Kind {
	case LogNewDevice:
		text := fmt.Sprintf("A NEW DEVICE WAS CERTIFIED FOR YOUR ACCOUNT: %s, on %s. If it is not one of yours, tell your administrator at once: it can be revoked.",
			e.Fingerprint, e.At.Local().Format(time.DateTime))
		s.log.Warn("end-to-end encryption: " + text)
		s.notify(Notice{Kind: NewDevice, Text: text})
	case LogSplit:
		s.warn("THE SERVER SHOWED DIFFERENT VERSIONS OF THE IDENTITY LOG (" + e.Text + "): identities in this meeting cannot be trusted, and no meeting code will be shown")
	case LogAdvanced:
		s.checkPeers()
	}
}

// checkPeers applies what the log now says to the participants: revoked
// devices leave the view; newly logged credentials become certified.
func (s *Session) checkPeers() {
	s.st.RLock()
	peers := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	s.st.RUnlock()
	// The server usually sends a revoked device away before the client
	// reads the revocation: report it for those who left too.
	for id, p := range s.departed {
		if d := s.describe(p.ann, false, p.verified.Load()); d.Revoked {
			delete(s.departed, id)
			s.st.Lock()
			s.revokedPeers[id] = d
			s.st.Unlock()
			s.notify(Notice{Kind: Revoked, Participant: d})
			s.warn(fmt.Sprintf("the organisation REVOKED the device of participant %s (%s); it was sent away and got no keys after it left", id, d.Name))
		}
	}
	for _, p := range peers {
		d := s.describe(p.ann, false, p.verified.Load())
		switch {
		case d.Revoked:
			s.revokePeer(p, d)
		case d.Certified && !p.certified:
			p.certified = true
			s.notify(Notice{Kind: Announced, Participant: d})
			s.warnLookalikes(p.id) // a certified name is compared otherwise
			if s.cfg.RequireCertified && !p.keysSent {
				s.giveKeys(p, true)
			}
		}
	}
}

// revokePeer drops a participant whose device the log revoked: no more
// keys, a rotation if it had ours, a new round without it.
func (s *Session) revokePeer(p *peer, d Participant) {
	s.st.Lock()
	delete(s.peers, p.id)
	s.revokedPeers[p.id] = d
	s.st.Unlock()
	s.log.Warn("end-to-end encryption: device revoked", "participant", p.id)
	s.notify(Notice{Kind: Revoked, Participant: d})
	s.warn(fmt.Sprintf("the organisation REVOKED the device of participant %s (%s): it gets no more keys", p.id, d.Name))
	s.updateCode()
	if p.keysSent {
		s.scheduleRotation()
	}
}

// revokedOf returns a participant revoked during this meeting.
func (s *Session) revokedOf(id string) (Participant, bool) {
	s.st.RLock()
	defer s.st.RUnlock()
	p, ok := s.revokedPeers[id]
	return p, ok
}

// Revoked returns the participants whose device was revoked during this
// meeting.
func (s *Session) Revoked() []Participant {
	s.st.RLock()
	defer s.st.RUnlock()
	out := make([]Participant, 0, len(s.revokedPeers))
	for _, p := range s.revokedPeers {
		out = append(out, p)
	}
	return out
}

// lookalikeOf returns who d's name imitates among all (docs/e2ee.md,
// section 15), "" if nobody: the name d chose (the free text of a guest,
// or of a certified participant whose credential names it otherwise)
// against another participant's name, and, against a certified one, also
// with a title or decoration added ("Alice Martin (CEO)") or its account
// written out ("(@alice)"); and the credential's name of a certified d
// against another certified user's name or account (an account the server
// made with someone else's name). The browser's rule is the same
// (meetingcrypto.mjs).
func lookalikeOf(d Participant, all []Participant) string {
	var chosen string
	switch {
	case !d.Certified:
		chosen = d.Name
	case e2ee.Skeleton(d.Name) != e2ee.Skeleton(d.CertifiedName):
		chosen = d.Name
	}
	certName := func(p Participant) string {
		if p.CertifiedName != "" {
			return p.CertifiedName
		}
		return p.Account
	}
	// Certified participants first: the name imitated is usually theirs.
	others := slices.Clone(all)
	slices.SortStableFunc(others, func(a, b Participant) int {
		switch {
		case a.Certified == b.Certified:
			return 0
		case a.Certified:
			return -1
		}
		return 1
	})
	for _, o := range others {
		if o.ID == d.ID || (d.Certified && o.Certified && o.UserID == d.UserID) {
			continue
		}
		if o.Certified {
			on := certName(o)
			if chosen != "" && (e2ee.LooksLike(chosen, on, true) || e2ee.LooksLike(chosen, o.Account, false) || e2ee.ClaimsAccount(chosen, o.Account)) ||
				d.Certified && (e2ee.LooksLike(certName(d), on, false) || e2ee.LooksLike(certName(d), o.Account, false)) {
				return fmt.Sprintf("%s (@%s)", on, o.Account)
			}
		} else if chosen != "" && e2ee.LooksLike(chosen, o.Name, false) {
			return fmt.Sprintf("%q", o.Name)
		}
	}
	return ""
}

// warnLookalikes warns of every participant whose name imitates another's
// since participant id was verified or certified (once per participant
// and imitated name): id against everyone, and everyone against id, since
// a look-alike may come before the participant it imitates. Pairs of
// others were checked when the later of the two came: checking only the
// pairs with id costs O(n) per join instead of O(n^2) (a meeting of 300
// made every join cost each member 90,000 name comparisons). Called with
// mu held.
func (s *Session) warnLookalikes(id string) {
	all := s.Participants()
	var changed []Participant
	for _, d := range all {
		if d.ID == id {
			changed = append(changed, d)
		}
	}
	if len(changed) == 0 {
		return
	}
	for _, d := range all {
		if d.Self {
			continue
		}
		against := changed
		if d.ID == id {
			against = all
		}
		like := lookalikeOf(d, against)
		s.st.RLock()
		p := s.peers[d.ID]
		s.st.RUnlock()
		if p == nil || like == "" || p.warnedLike == like {
			continue
		}
		p.warnedLike = like
		shown := d.Name
		if d.Certified && shown == "" {
			shown = d.CertifiedName
		}
		s.warn(fmt.Sprintf("participant %s calls themselves %q, which LOOKS LIKE %s", d.ID, shown, like))
	}
}
