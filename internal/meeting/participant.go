package meeting

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"conclave/internal/conn"
	"conclave/internal/signal"
)

// Participant is one person in a meeting, admitted or waiting. It outlives
// its signaling connection for Config.ResumeWindow so that a client whose
// WebSocket drops can come back without interrupting its media.
type Participant struct {
	id     string
	name   string
	resume string
	upload string // authorises the participant's file transfers
	addr   netip.Addr
	source string // Admission.Source: what a ban on this participant bars
	userID int64  // 0 for guests without an account
	room   *Room
	mgr    *Manager
	log    *slog.Logger
	// gateway is Client.Gateway: set for a participant that breaks
	// end-to-end encryption; media is Client.Media.
	gateway string
	media   conn.Engine

	// Set when admitted; nil while waiting.
	pub conn.Publisher
	sub conn.Subscriber

	mu sync.Mutex
	// Per-participant budgets of what is relayed to every member.
	chatBudget, announceBudget, verifyBudget *rateLimiter
	role                                     Role
	wait                                     waitReason  // admittedNow, waitHost or waitLobby
	conn                                     *connection // nil while disconnected
	state                                    MediaState
	forcedMute                               bool // a host muted the microphone
	announce                                 string
	device                                   string // device public key of the announcement (revocation)
	left                                     bool
	replaces                                 string      // the participant of another node this one took over
	pendingReason                            string      // why it is about to leave (setPendingLeave)
	dropped                                  func() bool // stops the resume window after a lost connection
	waitTimer                                func() bool // stops the wait for a host
}

// ID returns the participant's id.
func (p *Participant) ID() string { return p.id }

func (p *Participant) startMedia() error {
	if p.pub != nil {
		return nil
	}
	media := p.mgr.media
	if p.media != nil {
		media = p.media
	}
	pub, err := media.NewPublisher(p.id, pubEvents{p})
	if err != nil {
		return err
	}
	sub, err := media.NewSubscriber(subEvents{p})
	if err != nil {
		pub.Close()
		return err
	}
	p.mu.Lock()
	p.pub, p.sub = pub, sub
	p.mu.Unlock()
	return nil
}

func (p *Participant) getRole() Role {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.role
}

func (p *Participant) getWait() waitReason {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wait
}

func (p *Participant) setWait(w waitReason) {
	p.mu.Lock()
	p.wait = w
	p.mu.Unlock()
}

func (p *Participant) admitted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wait == admittedNow && p.pub != nil
}

// mayForward reports whether the room's rules let this participant's
// track of the given source reach the others.
func (p *Participant) mayForward(source conn.Source, rules Rules) bool {
	if !source.Screen() {
		return true
	}
	return p.getRole() != RoleGuest || rules.GuestsMayPresent
}

// micLevel is the loudness of the participant's microphone since the last
// call (conn.UpTrack.AudioLevel), for the speaker detector: false when no
// packet carried a level; silence while a host's mute holds.
func (p *Participant) micLevel() (float64, bool) {
	if p.pub == nil {
		return 0, false
	}
	p.mu.Lock()
	muted := p.forcedMute
	p.mu.Unlock()
	var best float64
	heard := false
	for _, t := range p.pub.Tracks() {
		if t.Source() != conn.Microphone {
			continue
		}
		l, n := t.AudioLevel()
		if muted {
			l, n = 0, 1
		}
		if n > 0 {
			heard = true
			best = max(best, l)
		}
	}
	return best, heard
}

func (p *Participant) announcement() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.announce
}

func (p *Participant) startWaitTimer(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitTimer = p.mgr.cfg.Clock.AfterFunc(d, func() { p.leave("no-host") })
}

func (p *Participant) stopWaitTimer() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitTimer != nil {
		p.waitTimer()
		p.waitTimer = nil
	}
}

// send queues a message for the participant's current connection; while
// disconnected, messages are dropped (the client gets the full state again
// when it resumes).
func (p *Participant) send(m *signal.Message) {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c != nil {
		c.send(m)
	}
}

// attach gives the participant a new connection after a drop. It reports
// false if the participant has already left.
func (p *Participant) attach(conn *connection) bool {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return false
	}
	old := p.conn
	p.conn = conn
	if p.dropped != nil {
		p.dropped()
		p.dropped = nil
	}
	wait := p.wait
	p.mu.Unlock()
	if old != nil {
		old.send(&signal.Message{Type: signal.TypeBye, Reason: "replaced"})
		old.close(CloseNormal, "replaced")
	}
	r := p.room
	if wait != admittedNow {
		conn.send(&signal.Message{Type: signal.TypeWaiting, Wait: wait.wire(), RoomInfo: &signal.RoomInfo{Alias: r.alias, Name: r.name}})
		return true
	}
	r.mu.Lock()
	w := p.welcome(r.order, true)
	w.Participants = append(w.Participants, r.remoteInfosLocked()...)
	w.RoomState = r.stateLocked()
	members := append([]*Participant(nil), r.order...)
	remoteAnn := r.remoteAnnouncesLocked()
	r.mu.Unlock()
	conn.send(w)
	for _, q := range members {
		if q == p {
			continue
		}
		if a := q.announcement(); a != "" {
			conn.send(&signal.Message{Type: signal.TypeAnnounce, From: q.id, Payload: a})
		}
	}
	for _, a := range remoteAnn {
		conn.send(a)
	}
	if o, ok := p.sub.Outstanding(); ok {
		conn.send(offerMessage(o))
	}
	return true
}

// detach notes that conn closed. Unless the participant already moved to
// another connection or left, it waits ResumeWindow for a resume and then
// leaves.
func (p *Participant) detach(conn *connection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left || p.conn != conn {
		return
	}
	p.conn = nil
	p.dropped = p.mgr.cfg.Clock.AfterFunc(p.mgr.cfg.ResumeWindow, func() { p.leave("timeout") })
	p.log.Info("participant connection lost", "room", p.room.alias, "participant", p.id)
}

// leave removes the participant from its meeting for good, telling its
// client why.
func (p *Participant) leave(reason string) {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return
	}
	p.left = true
	conn := p.conn
	p.conn = nil
	for _, stop := range []func() bool{p.dropped, p.waitTimer} {
		if stop != nil {
			stop()
		}
	}
	p.mu.Unlock()
	if conn != nil {
		conn.send(&signal.Message{Type: signal.TypeBye, Reason: reason})
		conn.close(CloseNormal, reason)
	}
	wasMember := p.room.remove(p)
	if wasMember {
		// First: the others' clients rotate their keys on this message
		// (docs/e2ee.md), and closing the peer connections below takes a
		// while in a big meeting (every subscriber renegotiates).
		p.room.broadcast(p, &signal.Message{Type: signal.TypeParticipantLeft, Participant: ptr(p.info())})
	}
	if p.pub != nil {
		// Closing the publisher reports each of its tracks as removed,
		// which unsubscribes the remaining members.
		p.pub.Close()
		p.sub.Close()
	}
	p.mgr.forget(p)
	p.log.Info("participant left", "room", p.room.alias, "participant", p.id, "reason", reason)
}

// setMicMuted applies a host's mute (or its lifting) on the media path: the
// SFU stops forwarding the participant's audio at once, without
// renegotiation. Every audio track is muted, whatever source it was
// declared as, so that relabelling a microphone does not escape the mute.
func (p *Participant) setMicMuted(muted bool) {
	p.mu.Lock()
	p.forcedMute = muted
	p.mu.Unlock()
	if p.pub == nil {
		return
	}
	for _, t := range p.pub.Tracks() {
		if t.Kind() == conn.Audio {
			t.SetMuted(muted)
		}
	}
}

// Budgets of what a participant has relayed to every member.
const (
	chatRate      = 64 << 10 // bytes a second
	chatBurst     = 1 << 20
	announceRate  = 0.2 // announcements a second
	verifyRate    = 2   // verify messages a second
	verifyBurst   = 40
	announceBurst = 4
)

// budget takes cost from the participant's bucket b (made with rate and
// burst on first use) and reports whether there was enough.
func (p *Participant) budget(b **rateLimiter, rate, burst, cost float64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if *b == nil {
		*b = newRateLimiter(rate, burst)
	}
	return (*b).take(p.mgr.cfg.Clock.Now(), cost)
}

// handle executes one validated message from the participant's client.
func (p *Participant) handle(sc *connection, m *signal.Message) error {
	if m.Type == signal.TypeLeave {
		p.leave("left")
		return nil
	}
	if !p.admitted() {
		return signal.Errorf(signal.CodeNotAdmitted, "You are not in the meeting yet; wait until you are let in.")
	}
	switch m.Type {
	case signal.TypePublish:
		sources := make(map[string]conn.Source, len(m.Tracks))
		for mid, t := range m.Tracks {
			sources[mid] = conn.Source(t.Source)
		}
		answer, err := p.pub.HandleOffer(m.SDP, sources)
		if err != nil {
			p.log.Warn("publish offer refused", "participant", p.id, "err", err)
			return signal.Errorf(signal.CodeNegotiationFailed, "The server could not use this offer: %v.", err)
		}
		sc.send(&signal.Message{Type: signal.TypePublishAnswer, SDP: answer})
	case signal.TypeSubscribeAnswer:
		if err := p.sub.HandleAnswer(m.SDP); err != nil {
			return signal.Errorf(signal.CodeNegotiationFailed, "The server could not use this answer: %v.", err)
		}
	case signal.TypeCandidate:
		c := m.Candidate
		if c.Candidate == "" {
			return nil // end of candidates
		}
		var err error
		if m.PC == signal.PCPublish {
			err = p.pub.AddCandidate(iceCandidate(c))
		} else {
			err = p.sub.AddCandidate(iceCandidate(c))
		}
		if err != nil {
			return signal.Errorf(signal.CodeNegotiationFailed, "The server could not use this candidate: %v.", err)
		}
	case signal.TypeState:
		return p.setState(mediaStateFromWire(*m.State))
	case signal.TypeRestartICE:
		p.sub.RestartICE()
	case signal.TypeLayout:
		for mid, sz := range m.Layout {
			p.sub.SetTrackSize(mid, sz.Width, sz.Height)
		}
	case signal.TypeAnnounce:
		// Each announcement makes every member verify it and re-key: a
		// few at once (a join, a reconnection), then one every 5 s.
		if !p.budget(&p.announceBudget, announceRate, announceBurst, 1) {
			return signal.Errorf(signal.CodeRateLimited, "Too many announcements; this one was not relayed.")
		}
		device := announcedDevice(m.Payload)
		if p.mgr.deviceRevoked(device) {
			p.log.Info("announcement of a revoked device refused", "participant", p.id)
			go p.leave("revoked")
			return nil
		}
		p.mu.Lock()
		p.announce, p.device = m.Payload, device
		p.mu.Unlock()
		p.room.relay(p, signal.TypeAnnounce, m.Payload)
	case signal.TypeChat:
		// Chat is relayed to everyone: a sender gets 64 KiB a second
		// (a burst of 1 MiB), so that one flooder cannot fill the others'
		// queues and get slow receivers disconnected.
		if !p.budget(&p.chatBudget, chatRate, chatBurst, float64(len(m.Payload))) {
			return signal.Errorf(signal.CodeRateLimited, "You are sending chat too fast; this message was not sent. Wait a moment.")
		}
		p.room.relay(p, signal.TypeChat, m.Payload)
	case signal.TypeVerify:
		// A commit and a reveal per change of the meeting's membership
		// (docs/e2ee.md, section 14), and a commit again when a member
		// adopts a newer log checkpoint.
		if !p.budget(&p.verifyBudget, verifyRate, verifyBurst, 1) {
			return signal.Errorf(signal.CodeRateLimited, "Too many verification messages; this one was not relayed.")
		}
		p.room.relay(p, signal.TypeVerify, m.Payload)
	case signal.TypeKey:
		to := p.room.find(m.To)
		if to == nil && p.room.keyToRemote(p, m.To, m.Payload) {
			return nil
		}
		if to == nil || to == p {
			return signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", m.To)
		}
		to.send(&signal.Message{Type: signal.TypeKey, From: p.id, Payload: m.Payload})
	case signal.TypeMute, signal.TypeMuteGuests, signal.TypeRemove, signal.TypeSetRole, signal.TypeLock,
		signal.TypeAdmit, signal.TypeDeny, signal.TypeRoomSettings, signal.TypeEnd:
		return p.hostCommand(m)
	default:
		return fmt.Errorf("unhandled message type %q", m.Type)
	}
	return nil
}

// setState records what the participant sends. Unmuting after a host's
// mute is refused to guests unless the room lets guests unmute.
func (p *Participant) setState(st MediaState) error {
	r := p.room
	r.mu.Lock()
	mayUnmute := r.rules.GuestsMayUnmute
	r.mu.Unlock()
	p.mu.Lock()
	var err error
	lift := false
	if st.Audio && p.forcedMute {
		if p.role == RoleGuest && !mayUnmute {
			st.Audio = false
			err = signal.Errorf(signal.CodeForbidden, "The host does not allow guests to unmute; your microphone stays muted.")
		} else {
			lift = true
		}
	}
	p.state = st
	p.mu.Unlock()
	if lift {
		p.setMicMuted(false)
		r.forgetMute(p)
	}
	r.mu.Lock()
	r.broadcastLocked(p, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(p.info())})
	r.memberChangedLocked(p)
	r.mu.Unlock()
	return err
}

type pubEvents struct{ p *Participant }

func (e pubEvents) TrackAdded(t conn.UpTrack) {
	e.p.log.Debug("track added", "participant", e.p.id, "track", t.ID(), "source", t.Source(), "codec", t.Codec())
	if t.Kind() == conn.Audio {
		e.p.mu.Lock()
		muted := e.p.forcedMute
		e.p.mu.Unlock()
		t.SetMuted(muted)
	}
	e.p.room.trackAdded(e.p, t)
}

func (e pubEvents) TrackRemoved(t conn.UpTrack) {
	e.p.log.Debug("track removed", "participant", e.p.id, "track", t.ID())
	e.p.room.trackRemoved(t)
}

// LayersNeeded is the media core's dynacast: the layers of t that some
// subscriber needs. The publisher is told, and pauses the others
// (encodings[i].active in the browser).
func (e pubEvents) LayersNeeded(t conn.UpTrack, active []bool) {
	e.p.log.Debug("layers needed", "participant", e.p.id, "track", t.ID(), "active", active)
	e.p.send(&signal.Message{Type: signal.TypeLayers, Mid: t.Mid(), Active: active})
}

func (e pubEvents) ConnectionState(s string) {
	e.p.log.Debug("publish connection", "participant", e.p.id, "state", s)
}

type subEvents struct{ p *Participant }

func (e subEvents) SendOffer(o conn.Offer) { e.p.send(offerMessage(o)) }

func (e subEvents) ConnectionState(s string) {
	e.p.log.Debug("subscribe connection", "participant", e.p.id, "state", s)
}

// setPendingLeave records why the participant is about to be sent away
// (by a command from another node), for pendingLeave.
func (p *Participant) setPendingLeave(reason string) {
	p.mu.Lock()
	p.pendingReason = reason
	p.mu.Unlock()
}

func (p *Participant) pendingLeave() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pendingReason == "" {
		return "removed"
	}
	return p.pendingReason
}
