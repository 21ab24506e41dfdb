package meeting

import (
	"strconv"
	"sync"
	"time"

	"conclave/internal/conn"
	"conclave/internal/signal"
)

// Room is an active meeting: the participants currently in one room, and
// those waiting to enter it. Everything a participant sends reaches only
// members of its own Room; waiting participants receive nothing of it.
type Room struct {
	mgr          *Manager
	id           string // this meeting instance; a new meeting gets a new id
	alias        string
	name         string
	hostRequired bool

	mu       sync.Mutex
	order    []*Participant // members, in order of arrival
	waiting  []*Participant // waiting for a host, or knocking in the lobby
	joining  int            // reserved, not yet entered
	locked   bool
	rules    Rules
	banned   map[string]bool // "user:<id>" and "source:<prefix>" of removed participants
	muted    map[string]bool // the same keys, of participants a host muted
	endTimer func() bool     // stops the end of a host-required meeting without a host
	ended    bool
	speakers *speakerDetector
	speaker  string // the dominant speaker's id, as the tracks' priorities have it

	// Meetings across nodes (federation.go).
	rev         uint64                     // revision of the shared state
	remote      map[string]*remote         // other nodes' participants, by id
	orphans     map[string]*orphan         // participants of nodes that went down, by resume hash
	orphanTimer func() bool                // expires the orphans
	relays      map[string]conn.Subscriber // by node: what carries the local tracks there
}

func newRoom(m *Manager, adm Admission) *Room {
	r := &Room{mgr: m, id: randomHex(16), alias: adm.Alias, name: adm.Name, hostRequired: adm.HostRequired,
		rules:  Rules{GuestsMayUnmute: adm.GuestsMayUnmute, GuestsMayPresent: adm.GuestsMayPresent},
		banned: map[string]bool{}, muted: map[string]bool{},
		remote: map[string]*remote{}, orphans: map[string]*orphan{}, relays: map[string]conn.Subscriber{}}
	r.speakers = newSpeakerDetector(m.cfg.Speaker, m.cfg.Clock, r.speakerChanged)
	r.speakers.start()
	return r
}

// speakerChanged is told the new dominant speaker of the meeting: its
// tracks get priority in every subscriber's bandwidth allocation (and
// the previous speaker's lose it), and the members are told so that
// their layout can follow.
func (r *Room) speakerChanged(previous, next string) {
	r.mgr.log.Debug("active speaker", "room", r.alias, "participant", next)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.speaker = next
	for _, id := range []string{previous, next} {
		if p := r.findLocked(id); p != nil && id != "" {
			r.resubscribeLocked(p)
		}
		if x := r.remote[id]; x != nil && id != "" {
			for _, t := range x.tracks {
				for _, q := range r.order {
					r.subscribeLocked(q, t)
				}
			}
		}
	}
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeSpeaker, From: next})
}

// Track priorities in a subscriber's bandwidth allocation: a screen
// share first, then the active speaker's tracks, then the others (by the
// size they are shown at).
const (
	priorityOther   = 0
	prioritySpeaker = 1
	priorityScreen  = 2
)

// trackOptionsLocked is how the room has a subscriber receive t: a
// participant's microphone and camera in one stream (lip sync), its
// screen and screen audio in another; a screen first, then the active
// speaker's tracks.
func (r *Room) trackOptionsLocked(t conn.UpTrack) conn.TrackOptions {
	o := conn.TrackOptions{Stream: t.Participant(), Priority: priorityOther}
	if t.Source().Screen() {
		o.Stream = t.Participant() + "-screen"
	}
	switch {
	case t.Source() == conn.Screen:
		o.Priority = priorityScreen
	case t.Participant() == r.speaker:
		o.Priority = prioritySpeaker
	}
	return o
}

// resubscribeLocked applies the room's current options to what the
// members receive of p's tracks (their priority after a speaker change).
func (r *Room) resubscribeLocked(p *Participant) {
	if p.pub == nil {
		return
	}
	for _, t := range p.pub.Tracks() {
		if !p.mayForward(t.Source(), r.rules) {
			continue
		}
		for _, q := range r.order {
			if q != p {
				r.subscribeLocked(q, t)
			}
		}
	}
}

func (r *Room) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order) + len(r.waiting) + r.joining
}

func (r *Room) empty() bool { return r.size() == 0 }

// reserve counts p in the room before it enters, refusing it when the room
// is full, ended, or p was removed from this meeting.
//
// A removed account is barred, and so is the source it came from (an IPv4
// address, an IPv6 /64: Admission.Source) for everyone who enters without
// an account, with a host PIN too: a removed guest who knows the host PIN
// or takes a fresh IPv6 privacy address does not come back. Other
// accounts behind the same NAT still come in.
func (r *Room) reserve(p *Participant, max int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return signal.Fatalf(signal.CodeRoomUnavailable, unavailableMessage)
	}
	if p.userID != 0 && r.banned[userKey(p.userID)] ||
		p.userID == 0 && sourceKey(p) != "" && r.banned[sourceKey(p)] {
		return signal.Fatalf(signal.CodeRemoved, "A host removed you from this meeting; you cannot rejoin it.")
	}
	if len(r.order)+len(r.waiting)+r.joining+len(r.remote) >= max {
		return signal.Fatalf(signal.CodeRoomFull, "This meeting is full (%d participants).", max)
	}
	r.joining++
	if r.muted[muteKey(p)] {
		p.forcedMute = true // muted by a host earlier in this meeting
	}
	return nil
}

// muteKey names who a host's mute sticks to: the account, or for a guest
// its source.
func muteKey(p *Participant) string {
	if p.userID != 0 {
		return userKey(p.userID)
	}
	return sourceKey(p)
}

// forgetMute forgets a host's mute of p (lifted).
func (r *Room) forgetMute(p *Participant) {
	r.mu.Lock()
	delete(r.muted, muteKey(p))
	r.mu.Unlock()
}

func userKey(id int64) string { return "user:" + strconv.FormatInt(id, 10) }

// sourceKey names the participant's source for bans: the gate's
// Admission.Source, else its exact address; "" when it has none.
func sourceKey(p *Participant) string {
	switch {
	case p.source != "":
		return "source:" + p.source
	case p.addr.IsValid():
		return "source:" + p.addr.String()
	}
	return ""
}

// members returns a snapshot of the admitted participants.
func (r *Room) members() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Participant(nil), r.order...)
}

// everyone returns members and waiting participants.
func (r *Room) everyone() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]*Participant(nil), r.order...)
	return append(out, r.waiting...)
}

// find returns the member with this id, or nil.
func (r *Room) find(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.findLocked(id)
}

func (r *Room) findLocked(id string) *Participant {
	for _, p := range r.order {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (r *Room) findWaitingLocked(id string) *Participant {
	for _, p := range r.waiting {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (r *Room) hostPresentLocked() bool {
	for _, p := range r.order {
		if p.getRole() == RoleHost {
			return true
		}
	}
	for _, x := range r.remote {
		if x.admitted() && x.role() == RoleHost {
			return true
		}
	}
	return false
}

func (r *Room) stateLocked() *signal.RoomState {
	return roomState(r.rules, r.locked, r.hostPresentLocked())
}

// enter places a reserved participant: straight into the meeting, or to
// wait for a host, or in the lobby of a locked room. A gateway always
// knocks: it is let in only by a host's admit.
func (r *Room) enter(p *Participant, adm Admission) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joining--
	switch {
	case p.gateway != "" && !r.hostPresentLocked():
		r.waitLocked(p, waitHost)
		return nil
	case p.gateway != "":
		r.waitLocked(p, waitLobby)
		return nil
	case r.hostRequired && adm.Role == RoleGuest && !r.hostPresentLocked():
		r.waitLocked(p, waitHost)
		return nil
	case r.locked && !adm.BypassLock:
		r.waitLocked(p, waitLobby)
		return nil
	}
	return r.admitLocked(p)
}

// waitLocked puts p in the waiting list with the given reason.
func (r *Room) waitLocked(p *Participant, wait waitReason) {
	p.setWait(wait)
	r.waiting = append(r.waiting, p)
	r.memberChangedLocked(p)
	if wait == waitHost {
		p.startWaitTimer(r.mgr.cfg.WaitForHost)
	}
	p.send(&signal.Message{Type: signal.TypeWaiting, Wait: wait.wire(), RoomInfo: &signal.RoomInfo{Alias: r.alias, Name: r.name}})
	if wait == waitLobby {
		r.toHostsLocked(&signal.Message{Type: signal.TypeKnock, Participant: ptr(p.info())})
	}
}

func (r *Room) removeWaitingLocked(p *Participant) bool {
	for i, q := range r.waiting {
		if q == p {
			r.waiting = append(r.waiting[:i], r.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// admitLocked makes p a member: it gets its welcome, the others learn
// about it, and it is subscribed to every track already forwarded. Holding
// the room lock throughout keeps the newcomer's view and the others'
// consistent with concurrent track changes.
func (r *Room) admitLocked(p *Participant) error {
	if err := p.startMedia(); err != nil {
		return err
	}
	r.speakers.add(p.id, p.micLevel)
	p.setWait(admittedNow)
	others := append([]*Participant(nil), r.order...)
	r.order = append(r.order, p)

	w := p.welcome(others, false)
	w.Participants = append(w.Participants, r.remoteInfosLocked()...)
	w.RoomState = r.stateLocked()
	p.send(w)
	joined := &signal.Message{Type: signal.TypeParticipantJoined, Participant: ptr(p.info())}
	for _, q := range others {
		q.send(joined)
	}
	r.memberChangedLocked(p)
	for _, q := range others {
		if a := q.announcement(); a != "" {
			p.send(&signal.Message{Type: signal.TypeAnnounce, From: q.id, Payload: a})
		}
	}
	r.remoteAnnouncementsLocked(p)
	for _, q := range others {
		for _, t := range q.pub.Tracks() {
			if q.mayForward(t.Source(), r.rules) {
				r.subscribeLocked(p, t)
			}
		}
	}
	for _, x := range r.remote {
		if x.admitted() {
			for _, t := range x.tracks {
				r.subscribeLocked(p, t)
			}
		}
	}
	if id := r.speaker; id != "" {
		p.send(&signal.Message{Type: signal.TypeSpeaker, From: id})
	}
	if p.getRole() == RoleHost {
		r.hostArrivedLocked()
	}
	return nil
}

// subscribeLocked has p receive t, or updates how it does.
func (r *Room) subscribeLocked(p *Participant, t conn.UpTrack) {
	if err := p.sub.AddTrack(t, r.trackOptionsLocked(t)); err != nil {
		r.mgr.log.Error("subscribe failed", "room", r.alias, "participant", p.id, "track", t.ID(), "err", err)
	}
}

// hostArrivedLocked runs when a host enters or is promoted: the end of a
// host-less meeting is called off, and guests waiting for a host come in
// (or knock, if the room is locked).
func (r *Room) hostArrivedLocked() {
	if r.endTimer != nil {
		r.endTimer()
		r.endTimer = nil
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeNotice, Code: "host-back", Text: "A host is back; the meeting goes on."})
	}
	var still []*Participant
	var admit []*Participant
	for _, q := range r.waiting {
		if q.getWait() == waitHost {
			admit = append(admit, q)
		} else {
			still = append(still, q)
		}
	}
	r.waiting = still
	// The members learn that a host is present before the guests who
	// waited for one come in: those find the state in their welcome.
	// (Broadcast after them, it could reach an admitted guest after the
	// answers to its first messages, which its connection handles
	// meanwhile.)
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
	for _, q := range admit {
		q.stopWaitTimer()
		if r.locked || q.gateway != "" {
			r.waitLocked(q, waitLobby)
			continue
		}
		if err := r.admitLocked(q); err != nil {
			r.mgr.log.Error("admit failed", "room", r.alias, "participant", q.id, "err", err)
		}
	}
}

// hostLeftLocked runs after a host left or was demoted: if no host
// remains in a host-required meeting, members are told and the meeting
// ends after the grace period unless a host comes back.
func (r *Room) hostLeftLocked() {
	if !r.hostRequired || r.hostPresentLocked() || len(r.order) == 0 || r.endTimer != nil {
		return
	}
	grace := r.mgr.cfg.HostGrace
	// The timer exists before anyone is told, so that what a client sees
	// is always backed by the server's state.
	r.endTimer = r.mgr.cfg.Clock.AfterFunc(grace, func() { r.end("ended") })
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeNotice, Code: "host-left",
		Text: "The host left. The meeting will end in " + grace.Round(time.Second).String() + " unless a host returns."})
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
}

// remove takes p out of the room (members or waiting); it reports whether
// p was a member.
func (r *Room) remove(p *Participant) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removeWaitingLocked(p) {
		if p.getWait() == waitLobby {
			r.toHostsLocked(&signal.Message{Type: signal.TypeKnockEnded, Participant: ptr(p.info())})
		}
		r.federateLocked(Event{Kind: EventGone, ID: p.id})
		return false
	}
	for i, q := range r.order {
		if q == p {
			r.order = append(r.order[:i], r.order[i+1:]...)
			r.speakers.remove(p.id)
			r.federateLocked(Event{Kind: EventGone, ID: p.id})
			if p.getRole() == RoleHost {
				r.hostLeftLocked()
			}
			return true
		}
	}
	return false
}

// end finishes the meeting for everyone.
func (r *Room) end(reason string) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	r.speakers.halt()
	if r.endTimer != nil {
		r.endTimer()
		r.endTimer = nil
	}
	all := append(append([]*Participant(nil), r.order...), r.waiting...)
	r.mu.Unlock()
	r.mgr.endRoom(r)
	for _, p := range all {
		p.leave(reason)
	}
	r.mgr.log.Info("meeting ended", "room", r.alias, "reason", reason)
}

func (r *Room) stopTimers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.speakers.halt()
	if r.endTimer != nil {
		r.endTimer()
		r.endTimer = nil
	}
	if r.orphanTimer != nil {
		r.orphanTimer()
		r.orphanTimer = nil
	}
	for node := range r.relays {
		r.dropRelayLocked(node)
	}
}

// broadcast sends m to every member but from.
func (r *Room) broadcast(from *Participant, m *signal.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broadcastLocked(from, m)
}

func (r *Room) broadcastLocked(from *Participant, m *signal.Message) {
	for _, q := range r.order {
		if q != from {
			q.send(m)
		}
	}
}

func (r *Room) toHostsLocked(m *signal.Message) {
	for _, q := range r.order {
		if q.getRole() == RoleHost {
			q.send(m)
		}
	}
}

// trackAdded subscribes every other member to a new track of publisher,
// if the room's rules let it be forwarded.
func (r *Room) trackAdded(publisher *Participant, t conn.UpTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !publisher.mayForward(t.Source(), r.rules) {
		publisher.send(signal.ErrorMessage(signal.Errorf(signal.CodeForbidden,
			"The host does not allow guests to present; your screen is not shown to the others."), nil))
		return
	}
	for _, q := range r.order {
		if q != publisher {
			r.subscribeLocked(q, t)
		}
	}
	r.relayLocked(t)
}

// relayLocked gives t to the relays toward the other nodes.
func (r *Room) relayLocked(t conn.UpTrack) {
	for node, sub := range r.relays {
		if err := sub.AddTrack(t, r.trackOptionsLocked(t)); err != nil {
			r.mgr.log.Warn("cluster: relay failed", "room", r.alias, "node", node, "track", t.ID(), "err", err)
		}
	}
}

// trackRemoved unsubscribes every member from a track that stopped.
func (r *Room) trackRemoved(t conn.UpTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.order {
		if q.sub != nil {
			q.sub.RemoveTrack(t)
		}
	}
	for _, sub := range r.relays {
		sub.RemoveTrack(t)
	}
}

// reconcileLocked applies the forwarding rules again after a role or a
// setting changed: tracks that may now be forwarded are subscribed, those
// that may not any more are withdrawn.
func (r *Room) reconcileLocked() {
	for _, p := range r.order {
		for _, t := range p.pub.Tracks() {
			allowed := p.mayForward(t.Source(), r.rules)
			for _, q := range r.order {
				if q == p {
					continue
				}
				if allowed {
					r.subscribeLocked(q, t)
				} else {
					q.sub.RemoveTrack(t)
				}
			}
			if allowed {
				r.relayLocked(t)
			} else {
				for _, sub := range r.relays {
					sub.RemoveTrack(t)
				}
			}
		}
	}
}
