package meeting

import (
	"strconv"
	"sync"
	"time"

	"conclave/internal/sfu"
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
	settings signal.RoomState
	banned   map[string]bool // "user:<id>" and "addr:<ip>" of removed participants
	endTimer func() bool     // stops the end of a host-required meeting without a host
	ended    bool
	speakers *sfu.SpeakerDetector
}

func newRoom(m *Manager, adm Admission) *Room {
	r := &Room{mgr: m, id: randomHex(16), alias: adm.Alias, name: adm.Name, hostRequired: adm.HostRequired,
		settings: signal.RoomState{GuestsMayUnmute: adm.GuestsMayUnmute, GuestsMayPresent: adm.GuestsMayPresent},
		banned:   map[string]bool{}}
	r.speakers = sfu.NewSpeakerDetector(sfu.SpeakerConfig{}, r.speakerChanged)
	r.speakers.Start()
	return r
}

// speakerChanged is told the new dominant speaker of the meeting. The SFU
// already gives that participant's video priority in every subscriber's
// bandwidth allocation; the members are told so that their layout can
// follow.
func (r *Room) speakerChanged(id string) {
	r.mgr.log.Debug("active speaker", "room", r.alias, "participant", id)
	r.broadcast(nil, &signal.Message{Type: signal.TypeSpeaker, From: id})
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
// A removed account is barred; a removed guest's address is barred for
// guests only, so that a host (host PIN or host account) behind the same
// NAT can still come in.
func (r *Room) reserve(p *Participant, max int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return signal.Fatalf(signal.CodeRoomUnavailable, unavailableMessage)
	}
	if p.userID != 0 && r.banned[userKey(p.userID)] ||
		p.userID == 0 && p.role != signal.RoleHost && p.addr.IsValid() && r.banned[addrKey(p)] {
		return signal.Fatalf(signal.CodeRemoved, "A host removed you from this meeting; you cannot rejoin it.")
	}
	if len(r.order)+len(r.waiting)+r.joining >= max {
		return signal.Fatalf(signal.CodeRoomFull, "This meeting is full (%d participants).", max)
	}
	r.joining++
	return nil
}

func userKey(id int64) string { return "user:" + strconv.FormatInt(id, 10) }

func addrKey(p *Participant) string { return "addr:" + p.addr.String() }

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
		if p.getRole() == signal.RoleHost {
			return true
		}
	}
	return false
}

func (r *Room) stateLocked() *signal.RoomState {
	st := r.settings
	st.Locked = r.locked
	st.HostPresent = r.hostPresentLocked()
	return &st
}

// enter places a reserved participant: straight into the meeting, or to
// wait for a host, or in the lobby of a locked room.
func (r *Room) enter(p *Participant, adm Admission) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joining--
	switch {
	case r.hostRequired && adm.Role == signal.RoleGuest && !r.hostPresentLocked():
		r.waitLocked(p, signal.WaitHost)
		return nil
	case r.locked && !adm.BypassLock:
		r.waitLocked(p, signal.WaitLobby)
		return nil
	}
	return r.admitLocked(p)
}

// waitLocked puts p in the waiting list with the given reason.
func (r *Room) waitLocked(p *Participant, wait string) {
	p.setWait(wait)
	r.waiting = append(r.waiting, p)
	if wait == signal.WaitHost {
		p.startWaitTimer(r.mgr.cfg.WaitForHost)
	}
	p.send(&signal.Message{Type: signal.TypeWaiting, Wait: wait, RoomInfo: &signal.RoomInfo{Alias: r.alias, Name: r.name}})
	if wait == signal.WaitLobby {
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
	r.speakers.Add(p.pub)
	p.setWait("")
	others := append([]*Participant(nil), r.order...)
	r.order = append(r.order, p)

	w := p.welcome(others, false)
	w.RoomState = r.stateLocked()
	p.send(w)
	joined := &signal.Message{Type: signal.TypeParticipantJoined, Participant: ptr(p.info())}
	for _, q := range others {
		q.send(joined)
	}
	for _, q := range others {
		if a := q.announcement(); a != "" {
			p.send(&signal.Message{Type: signal.TypeAnnounce, From: q.id, Payload: a})
		}
	}
	for _, q := range others {
		for _, t := range q.pub.Tracks() {
			if q.mayForward(t.Source(), r.settings) {
				r.subscribeLocked(p, t)
			}
		}
	}
	if id := r.speakers.Dominant(); id != "" {
		p.send(&signal.Message{Type: signal.TypeSpeaker, From: id})
	}
	if p.getRole() == signal.RoleHost {
		r.hostArrivedLocked()
	}
	return nil
}

func (r *Room) subscribeLocked(p *Participant, t *sfu.UpTrack) {
	if err := p.sub.AddTrack(t); err != nil {
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
		if q.getWait() == signal.WaitHost {
			admit = append(admit, q)
		} else {
			still = append(still, q)
		}
	}
	r.waiting = still
	for _, q := range admit {
		q.stopWaitTimer()
		if r.locked {
			r.waitLocked(q, signal.WaitLobby)
			continue
		}
		if err := r.admitLocked(q); err != nil {
			r.mgr.log.Error("admit failed", "room", r.alias, "participant", q.id, "err", err)
		}
	}
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
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
		if p.getWait() == signal.WaitLobby {
			r.toHostsLocked(&signal.Message{Type: signal.TypeKnockEnded, Participant: ptr(p.info())})
		}
		return false
	}
	for i, q := range r.order {
		if q == p {
			r.order = append(r.order[:i], r.order[i+1:]...)
			r.speakers.Remove(p.pub)
			if p.getRole() == signal.RoleHost {
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
	r.speakers.Stop()
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
	r.speakers.Stop()
	if r.endTimer != nil {
		r.endTimer()
		r.endTimer = nil
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
		if q.getRole() == signal.RoleHost {
			q.send(m)
		}
	}
}

// trackAdded subscribes every other member to a new track of publisher,
// if the room's rules let it be forwarded.
func (r *Room) trackAdded(publisher *Participant, t *sfu.UpTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !publisher.mayForward(t.Source(), r.settings) {
		publisher.send(signal.ErrorMessage(signal.Errorf(signal.CodeForbidden,
			"The host does not allow guests to present; your screen is not shown to the others."), nil))
		return
	}
	for _, q := range r.order {
		if q != publisher {
			r.subscribeLocked(q, t)
		}
	}
}

// trackRemoved unsubscribes every member from a track that stopped.
func (r *Room) trackRemoved(t *sfu.UpTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.order {
		if q.sub != nil {
			q.sub.RemoveTrack(t)
		}
	}
}

// reconcileLocked applies the forwarding rules again after a role or a
// setting changed: tracks that may now be forwarded are subscribed, those
// that may not any more are withdrawn.
func (r *Room) reconcileLocked() {
	for _, p := range r.order {
		for _, t := range p.pub.Tracks() {
			allowed := p.mayForward(t.Source(), r.settings)
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
		}
	}
}

func ptr[T any](v T) *T { return &v }
