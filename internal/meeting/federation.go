package meeting

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"conclave/internal/conn"
	"conclave/internal/signal"
)

// Meetings that span conference nodes (docs/cluster.md, "Meetings across
// nodes").
//
// Every node keeps a Room for every meeting in progress in the cluster,
// whether or not it has participants of its own in it: the room's shared
// state (meeting id, lock, the guests' rules, bans, host mutes) and the
// other nodes' participants (remote), as their nodes tell it. A node
// tells the others (Federation.Broadcast) about its own participants and
// about what its hosts change, and delivers what it is told
// (Manager.Deliver) to its own members as the protocol's messages: the
// others' arrivals, departures, updates, announcements, chat, key and
// verification messages. So the room's state is not held by one node:
// when a node dies, the others still have the lock, the rules, the bans
// and everyone's role, and a participant who comes back through another
// node with its resume token gets its role back.
//
// Media crosses nodes once per node (Federation.Relay): a room gives the
// relay toward a node that has members the local tracks, like a
// subscriber, and the relayed tracks arrive on the other node as up
// tracks of the remote participant (Manager.RemoteTrack), which its
// members subscribe to like any other.

// Federation connects a node's meetings with the other nodes of the
// cluster (internal/cascade). Its methods must not block: they queue.
type Federation interface {
	// Self is this node's name.
	Self() string
	// Broadcast sends ev about room alias to every other node.
	Broadcast(alias string, ev Event)
	// Send sends ev about room alias to one node.
	Send(node, alias string, ev Event)
	// Relay returns the subscriber that carries the room's local tracks
	// to node: tracks added to it reach node's copy of the room through
	// Manager.RemoteTrack there. Closing it withdraws them all.
	Relay(node, alias string) (conn.Subscriber, error)
}

// Event kinds.
const (
	// EventState carries the room's shared state and the sending node's
	// participants, all of them: those missing from it have left.
	EventState = "state"
	// EventMember adds or updates one of the sender's participants.
	EventMember = "member"
	// EventGone: one of the sender's participants left (ID, Reason).
	EventGone = "gone"
	// EventMessage relays an E2EE message (Type announce, chat, verify
	// or key; From, To, Payload).
	EventMessage = "message"
	// EventCommand asks the node of the target to carry out a host's
	// command (Type, Target, Role; Host is who).
	EventCommand = "command"
	// EventRoomState changes the shared state (State without members).
	EventRoomState = "room-state"
	// EventEnd: a host ended the meeting.
	EventEnd = "end"
)

// Event is what nodes tell each other about a room.
type Event struct {
	Kind    string `json:"kind"`
	Meeting string `json:"meeting"`
	// Room describes the room, so that a node that has not seen it yet
	// can follow it.
	Room *RoomDesc `json:"room,omitempty"`

	State  *SharedState `json:"state,omitempty"`
	Member *Member      `json:"member,omitempty"`

	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`

	Type    string `json:"type,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Payload string `json:"payload,omitempty"`

	Host   *Actor `json:"host,omitempty"`
	Target string `json:"target,omitempty"`
	Role   string `json:"role,omitempty"`
}

// RoomDesc is what a node needs to know of a room it has no participant
// in.
type RoomDesc struct {
	Alias        string `json:"alias"`
	Name         string `json:"name"`
	HostRequired bool   `json:"hostRequired,omitempty"`
}

// SharedState is the state of a meeting every node holds.
type SharedState struct {
	// Rev orders changes: a node applies a state whose Rev is higher than
	// its own (bans and mutes are unions, they only grow).
	Rev     uint64   `json:"rev"`
	Locked  bool     `json:"locked"`
	Rules   Rules    `json:"rules"`
	Banned  []string `json:"banned,omitempty"`
	Muted   []string `json:"muted,omitempty"`
	Members []Member `json:"members,omitempty"` // EventState only
}

// Member is a participant as the other nodes see it.
type Member struct {
	Info     signal.Participant `json:"info"`
	Announce string             `json:"announce,omitempty"`
	// Wait is "" for a member, else why it waits (signal.WaitHost,
	// signal.WaitLobby).
	Wait string `json:"wait,omitempty"`
	// UserID and Source are what a host's removal or mute sticks to.
	UserID int64  `json:"userId,omitempty"`
	Source string `json:"source,omitempty"`
	Addr   string `json:"addr,omitempty"`
	// ResumeHash is the SHA-256 of the participant's resume token: a
	// participant whose node dies comes back through another one with the
	// token, and gets its role back.
	ResumeHash string `json:"resumeHash,omitempty"`
	// Replaces names the participant this one took over (it came back
	// through this node from another one).
	Replaces string `json:"replaces,omitempty"`
}

// Actor is the host behind a command, for the audit log and the
// "muted by" of the target's client.
type Actor struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	UserID int64  `json:"userId,omitempty"`
	Addr   string `json:"addr,omitempty"`
}

// remote is another node's participant.
type remote struct {
	node   string
	m      Member
	tracks []conn.UpTrack // relayed to this node; under the room's lock
	// mics are the microphone tracks among them, for the speaker
	// detector (which reads them without the room's lock).
	mics atomic.Pointer[[]conn.UpTrack]
}

// tracksChanged refreshes mics; called with the room's lock held.
func (x *remote) tracksChanged() {
	var mics []conn.UpTrack
	for _, t := range x.tracks {
		if t.Source() == conn.Microphone {
			mics = append(mics, t)
		}
	}
	x.mics.Store(&mics)
}

func (x *remote) admitted() bool { return x.m.Wait == "" }

func (x *remote) role() Role { return roleFromWire(x.m.Info.Role) }

// orphan is a participant of a node that went down, kept for
// ResumeWindow so that it gets its role back through another node.
type orphan struct {
	m       Member
	expires time.Time
}

func resumeHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// SetFederation connects the manager to the other nodes; call it before
// the first participant arrives.
func (m *Manager) SetFederation(f Federation) {
	m.fed.Store(&f)
}

// member is p as the other nodes see it.
func (p *Participant) member() Member {
	info := p.info()
	p.mu.Lock()
	defer p.mu.Unlock()
	m := Member{Info: info, Announce: p.announce, Wait: p.wait.wire(), UserID: p.userID, Source: p.source,
		ResumeHash: resumeHash(p.resume), Replaces: p.replaces}
	if p.addr.IsValid() {
		m.Addr = p.addr.String()
	}
	return m
}

// desc describes the room for other nodes.
func (r *Room) desc() *RoomDesc {
	return &RoomDesc{Alias: r.alias, Name: r.name, HostRequired: r.hostRequired}
}

// sharedLocked is the room's shared state, without members.
func (r *Room) sharedLocked() *SharedState {
	s := &SharedState{Rev: r.rev, Locked: r.locked, Rules: r.rules}
	for k := range r.banned {
		s.Banned = append(s.Banned, k)
	}
	for k := range r.muted {
		s.Muted = append(s.Muted, k)
	}
	slices.Sort(s.Banned)
	slices.Sort(s.Muted)
	return s
}

// federateLocked tells every other node ev about this room.
func (r *Room) federateLocked(ev Event) {
	f := r.mgr.federation()
	if f == nil {
		return
	}
	ev.Meeting = r.id
	ev.Room = r.desc()
	f.Broadcast(r.alias, ev)
}

// sendToLocked tells one node ev about this room.
func (r *Room) sendToLocked(node string, ev Event) {
	f := r.mgr.federation()
	if f == nil {
		return
	}
	ev.Meeting = r.id
	ev.Room = r.desc()
	f.Send(node, r.alias, ev)
}

// changedLocked records a change of the shared state and tells the
// other nodes.
func (r *Room) changedLocked() {
	r.rev++
	r.federateLocked(Event{Kind: EventRoomState, State: r.sharedLocked()})
}

// memberChangedLocked tells the other nodes about p (arrived, updated,
// waiting).
func (r *Room) memberChangedLocked(p *Participant) {
	m := p.member()
	r.federateLocked(Event{Kind: EventMember, Member: &m})
}

func (m *Manager) federation() Federation {
	if f := m.fed.Load(); f != nil {
		return *f
	}
	return nil
}

// Deliver applies what node says about room alias.
func (m *Manager) Deliver(node, alias string, ev Event) {
	if ev.Kind == EventCommand && ev.Type == commandRevokeDevice {
		// About a device, in every room of this node.
		m.revokedOnNode(ev)
		return
	}
	key := strings.ToLower(alias)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	r := m.active[key]
	if r == nil {
		if (ev.Kind != EventState && ev.Kind != EventMember) || ev.Room == nil || ev.Meeting == "" || m.endedIDs[ev.Meeting] {
			m.mu.Unlock()
			return
		}
		r = newRoom(m, Admission{Alias: ev.Room.Alias, Name: ev.Room.Name, HostRequired: ev.Room.HostRequired})
		r.id = ev.Meeting
		m.active[key] = r
	}
	m.mu.Unlock()

	r.mu.Lock()
	if r.id != ev.Meeting {
		if !r.adoptLocked(ev) {
			r.mu.Unlock()
			m.log.Warn("cluster: another node holds a different meeting of this room; they stay apart",
				"room", alias, "node", node, "ours", r.id, "theirs", ev.Meeting)
			return
		}
	}
	var leave []*Participant
	switch ev.Kind {
	case EventState:
		if ev.State != nil {
			r.applySharedLocked(ev.State)
			seen := map[string]bool{}
			for _, mem := range ev.State.Members {
				seen[mem.Info.ID] = true
				leave = append(leave, r.applyMemberLocked(node, mem)...)
			}
			for id, x := range r.remote {
				if x.node == node && !seen[id] {
					r.removeRemoteLocked(id, "left")
				}
			}
		}
	case EventMember:
		if ev.Member != nil {
			leave = r.applyMemberLocked(node, *ev.Member)
		}
	case EventGone:
		if x := r.remote[ev.ID]; x != nil && x.node == node {
			r.removeRemoteLocked(ev.ID, ev.Reason)
		}
	case EventMessage:
		r.applyMessageLocked(node, ev)
	case EventCommand:
		leave = r.applyCommandLocked(ev)
	case EventRoomState:
		if ev.State != nil {
			r.applySharedLocked(ev.State)
		}
	case EventEnd:
		r.mu.Unlock()
		r.end(ev.Reason)
		return
	}
	r.mu.Unlock()
	for _, p := range leave {
		p.leave(p.pendingLeave())
	}
	m.forgetIfEmpty(r)
}

// adoptLocked lets a room without participants of its own follow the
// meeting another node holds, the older one (lower id) when two nodes
// started the same room at the same time.
func (r *Room) adoptLocked(ev Event) bool {
	if len(r.order)+len(r.waiting)+r.joining > 0 {
		return false
	}
	if len(r.remote) > 0 && ev.Meeting > r.id {
		return false
	}
	r.id = ev.Meeting
	r.remote = map[string]*remote{}
	return true
}

// applySharedLocked applies another node's shared state: the lock and
// rules when newer, the bans and mutes in any case.
func (r *Room) applySharedLocked(s *SharedState) {
	changed := false
	for _, k := range s.Banned {
		r.banned[k] = true
	}
	for _, k := range s.Muted {
		r.muted[k] = true
	}
	if s.Rev > r.rev {
		r.rev = s.Rev
		changed = r.locked != s.Locked || r.rules != s.Rules
		r.locked, r.rules = s.Locked, s.Rules
	}
	if changed {
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
		r.reconcileLocked()
	}
}

// applyMemberLocked adds or updates another node's participant. It
// returns the local participants to send away: the one it replaces, if
// that one is here.
func (r *Room) applyMemberLocked(node string, mem Member) []*Participant {
	var leave []*Participant
	if mem.Replaces != "" {
		if p := r.findLocked(mem.Replaces); p != nil {
			p.setPendingLeave("moved")
			leave = append(leave, p)
		} else if p := r.findWaitingLocked(mem.Replaces); p != nil {
			p.setPendingLeave("moved")
			leave = append(leave, p)
		}
		if r.remote[mem.Replaces] != nil {
			r.removeRemoteLocked(mem.Replaces, "moved")
		}
	}
	for h, o := range r.orphans {
		if o.m.Info.ID == mem.Replaces || h == mem.ResumeHash {
			delete(r.orphans, h)
		}
	}
	id := mem.Info.ID
	x := r.remote[id]
	if x == nil {
		x = &remote{node: node}
		r.remote[id] = x
	}
	was := x.m
	wasHost := x.role() == RoleHost && x.admitted()
	wasAdmitted := was.Info.ID != "" && was.Wait == ""
	x.node = node
	x.m = mem
	switch {
	case mem.Wait == "" && !wasAdmitted:
		// A member now: the local members learn about it.
		joined := &signal.Message{Type: signal.TypeParticipantJoined, Participant: ptr(mem.Info)}
		r.broadcastLocked(nil, joined)
		if mem.Announce != "" {
			r.broadcastLocked(nil, &signal.Message{Type: signal.TypeAnnounce, From: id, Payload: mem.Announce})
		}
		if was.Wait == signal.WaitLobby {
			r.toHostsLocked(&signal.Message{Type: signal.TypeKnockEnded, Participant: ptr(was.Info)})
		}
		r.speakers.add(id, x.micLevel)
		for _, t := range x.tracks {
			for _, q := range r.order {
				r.subscribeLocked(q, t)
			}
		}
		r.ensureRelayLocked(node)
	case mem.Wait == "":
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(mem.Info)})
		if mem.Announce != "" && mem.Announce != was.Announce {
			r.broadcastLocked(nil, &signal.Message{Type: signal.TypeAnnounce, From: id, Payload: mem.Announce})
		}
	case mem.Wait == signal.WaitLobby && was.Wait != signal.WaitLobby:
		r.toHostsLocked(&signal.Message{Type: signal.TypeKnock, Participant: ptr(mem.Info)})
	}
	isHost := x.role() == RoleHost && x.admitted()
	switch {
	case isHost && !wasHost:
		r.hostArrivedLocked()
	case wasHost && !isHost:
		r.hostLeftLocked()
	}
	return leave
}

// removeRemoteLocked takes another node's participant out.
func (r *Room) removeRemoteLocked(id, reason string) {
	x := r.remote[id]
	if x == nil {
		return
	}
	delete(r.remote, id)
	if !x.admitted() {
		if x.m.Wait == signal.WaitLobby {
			r.toHostsLocked(&signal.Message{Type: signal.TypeKnockEnded, Participant: ptr(x.m.Info)})
		}
		return
	}
	r.speakers.remove(id)
	for _, t := range x.tracks {
		for _, q := range r.order {
			if q.sub != nil {
				q.sub.RemoveTrack(t)
			}
		}
	}
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeParticipantLeft, Participant: ptr(x.m.Info)})
	if x.role() == RoleHost {
		r.hostLeftLocked()
	}
	if !r.nodeHasMembersLocked(x.node) {
		r.dropRelayLocked(x.node)
	}
	_ = reason
}

// micLevel is the remote participant's loudness through its relayed
// microphone track, for the speaker detector (on the detector's own
// goroutine).
func (x *remote) micLevel() (float64, bool) {
	var best float64
	heard := false
	mics := x.mics.Load()
	if mics == nil {
		return 0, false
	}
	for _, t := range *mics {
		if l, n := t.AudioLevel(); n > 0 {
			heard = true
			best = max(best, l)
		}
	}
	return best, heard
}

// nodeHasMembersLocked reports whether node has members in the room.
func (r *Room) nodeHasMembersLocked(node string) bool {
	for _, x := range r.remote {
		if x.node == node && x.admitted() {
			return true
		}
	}
	return false
}

// ensureRelayLocked opens the relay of the local tracks toward node
// (which has members), and gives it every track the rules let through.
func (r *Room) ensureRelayLocked(node string) {
	f := r.mgr.federation()
	if f == nil || r.relays[node] != nil {
		return
	}
	sub, err := f.Relay(node, r.alias)
	if err != nil {
		r.mgr.log.Warn("cluster: cannot relay the meeting's media to a node", "room", r.alias, "node", node, "err", err)
		return
	}
	r.relays[node] = sub
	for _, p := range r.order {
		if p.pub == nil {
			continue
		}
		for _, t := range p.pub.Tracks() {
			if p.mayForward(t.Source(), r.rules) {
				if err := sub.AddTrack(t, r.trackOptionsLocked(t)); err != nil {
					r.mgr.log.Warn("cluster: relay failed", "room", r.alias, "node", node, "track", t.ID(), "err", err)
				}
			}
		}
	}
}

// dropRelayLocked closes the relay toward node.
func (r *Room) dropRelayLocked(node string) {
	if sub := r.relays[node]; sub != nil {
		delete(r.relays, node)
		go sub.Close()
	}
}

// applyMessageLocked relays another node's E2EE message to the local
// members (or, for a key message, to its one recipient).
func (r *Room) applyMessageLocked(node string, ev Event) {
	x := r.remote[ev.From]
	if x == nil || x.node != node || !x.admitted() {
		return // not a member of that node (gone meanwhile)
	}
	switch ev.Type {
	case signal.TypeAnnounce:
		x.m.Announce = ev.Payload
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeAnnounce, From: ev.From, Payload: ev.Payload})
	case signal.TypeChat, signal.TypeVerify:
		r.broadcastLocked(nil, &signal.Message{Type: ev.Type, From: ev.From, Payload: ev.Payload})
	case signal.TypeKey:
		if q := r.findLocked(ev.To); q != nil {
			q.send(&signal.Message{Type: signal.TypeKey, From: ev.From, Payload: ev.Payload})
		}
	}
}

// applyCommandLocked carries out a host's command on local participants.
// The host's node checked the host's role and wrote the audit entry.
func (r *Room) applyCommandLocked(ev Event) (leave []*Participant) {
	by := ""
	if ev.Host != nil {
		by = ev.Host.ID
		if x := r.remote[by]; x == nil || x.role() != RoleHost || !x.admitted() {
			r.mgr.log.Warn("cluster: command from someone this node does not know as a host; ignored", "room", r.alias, "from", by, "type", ev.Type)
			return nil
		}
	}
	switch ev.Type {
	case signal.TypeMute:
		if q := r.findLocked(ev.Target); q != nil {
			r.muteLocked(by, q)
		}
	case signal.TypeMuteGuests:
		for _, q := range r.order {
			if q.getRole() == RoleGuest {
				r.muteLocked(by, q)
			}
		}
	case signal.TypeRemove:
		q := r.findLocked(ev.Target)
		if q == nil {
			q = r.findWaitingLocked(ev.Target)
		}
		if q != nil {
			r.banLocked(q)
			q.setPendingLeave("removed")
			leave = append(leave, q)
		}
	case signal.TypeSetRole:
		if q := r.findLocked(ev.Target); q != nil {
			r.setRoleLocked(q, roleFromWire(ev.Role))
		}
	case signal.TypeAdmit:
		if q := r.findWaitingLocked(ev.Target); q != nil && q.getWait() == waitLobby {
			r.admitWaitingLocked(q)
		}
	case signal.TypeDeny:
		if q := r.findWaitingLocked(ev.Target); q != nil && q.getWait() == waitLobby {
			q.setPendingLeave("denied")
			leave = append(leave, q)
		}
	case commandDisconnect:
		q := r.findLocked(ev.Target)
		if q == nil {
			q = r.findWaitingLocked(ev.Target)
		}
		if q != nil && q.userID != 0 {
			q.setPendingLeave("account-disabled")
			leave = append(leave, q)
		}
	}
	return leave
}

// commandDisconnect (EventCommand) asks the node of a signed-in
// participant to end it (bye account-disabled): the management node,
// which holds the accounts, disabled or deleted its account
// (Manager.DisconnectUser). It ends nobody without an account.
const commandDisconnect = "disconnect"

// NodeUp tells the manager that node is reachable (again): it is sent
// the state of every room that has participants here.
func (m *Manager) NodeUp(node string) {
	for _, r := range m.rooms() {
		r.mu.Lock()
		if len(r.order)+len(r.waiting) > 0 {
			st := r.sharedLocked()
			for _, p := range append(append([]*Participant(nil), r.order...), r.waiting...) {
				st.Members = append(st.Members, p.member())
			}
			r.sendToLocked(node, Event{Kind: EventState, State: st})
		}
		r.mu.Unlock()
	}
}

// NodeDown tells the manager that node is gone: its participants leave
// every room (the members are told), and are kept as orphans for the
// resume window, so that those who come back through this node get their
// role back.
func (m *Manager) NodeDown(node string) {
	now := m.cfg.Clock.Now()
	for _, r := range m.rooms() {
		r.mu.Lock()
		for id, x := range r.remote {
			if x.node != node {
				continue
			}
			if x.m.ResumeHash != "" {
				r.orphans[x.m.ResumeHash] = &orphan{m: x.m, expires: now.Add(m.cfg.ResumeWindow)}
			}
			r.removeRemoteLocked(id, "node-down")
		}
		r.dropRelayLocked(node)
		if len(r.orphans) > 0 && r.orphanTimer == nil {
			r.orphanTimer = m.cfg.Clock.AfterFunc(m.cfg.ResumeWindow, func() { m.expireOrphans(r) })
		}
		r.mu.Unlock()
		m.forgetIfEmpty(r)
	}
}

func (m *Manager) expireOrphans(r *Room) {
	now := m.cfg.Clock.Now()
	r.mu.Lock()
	r.orphanTimer = nil
	var next time.Time
	for h, o := range r.orphans {
		if !o.expires.After(now) {
			delete(r.orphans, h)
		} else if next.IsZero() || o.expires.Before(next) {
			next = o.expires
		}
	}
	if !next.IsZero() {
		r.orphanTimer = m.cfg.Clock.AfterFunc(next.Sub(now), func() { m.expireOrphans(r) })
	}
	r.mu.Unlock()
	m.forgetIfEmpty(r)
}

// RemoteTrack gives room alias a track that node relays for its
// participant; ended is closed when the relay stops it (the track is
// then withdrawn from the members).
func (m *Manager) RemoteTrack(node, alias, participant string, t conn.UpTrack) {
	m.mu.Lock()
	r := m.active[strings.ToLower(alias)]
	m.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	x := r.remote[participant]
	if x == nil || x.node != node {
		return
	}
	x.tracks = append(x.tracks, t)
	x.tracksChanged()
	if !x.admitted() {
		return
	}
	for _, q := range r.order {
		r.subscribeLocked(q, t)
	}
}

// RemoteTrackEnded withdraws a relayed track.
func (m *Manager) RemoteTrackEnded(node, alias, participant string, t conn.UpTrack) {
	m.mu.Lock()
	r := m.active[strings.ToLower(alias)]
	m.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if x := r.remote[participant]; x != nil {
		x.tracks = slices.DeleteFunc(x.tracks, func(u conn.UpTrack) bool { return u == t })
		x.tracksChanged()
	}
	for _, q := range r.order {
		if q.sub != nil {
			q.sub.RemoveTrack(t)
		}
	}
}

// takeOver finds, for a join with a resume token unknown here, the
// participant it belonged to on another node: still listed (it is moving
// here, its node draining or unreachable to it) or orphaned (its node
// died). The participant comes back with its name, role and ban keys.
func (r *Room) takeOverLocked(token string) (Member, bool) {
	h := resumeHash(token)
	if o := r.orphans[h]; o != nil {
		delete(r.orphans, h)
		return o.m, true
	}
	for id, x := range r.remote {
		if x.m.ResumeHash == h {
			m := x.m
			r.removeRemoteLocked(id, "moved")
			return m, true
		}
	}
	return Member{}, false
}

// rooms returns the active rooms.
func (m *Manager) rooms() []*Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Room, 0, len(m.active))
	for _, r := range m.active {
		out = append(out, r)
	}
	return out
}

// forgetIfEmpty forgets a room that has nobody left, here or elsewhere.
func (m *Manager) forgetIfEmpty(r *Room) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := strings.ToLower(r.alias)
	if m.active[key] != r {
		return
	}
	r.mu.Lock()
	empty := len(r.order)+len(r.waiting)+r.joining == 0 && len(r.remote) == 0 && len(r.orphans) == 0
	r.mu.Unlock()
	if empty {
		delete(m.active, key)
		r.stopTimers()
		m.endedLocked(r)
	}
}

// remoteInfosLocked lists the other nodes' members, for a welcome.
func (r *Room) remoteInfosLocked() []signal.Participant {
	var out []signal.Participant
	for _, x := range r.remote {
		if x.admitted() {
			out = append(out, x.m.Info)
		}
	}
	return out
}

// remoteAnnouncesLocked returns the other nodes' members' announcements.
func (r *Room) remoteAnnouncesLocked() []*signal.Message {
	var out []*signal.Message
	for id, x := range r.remote {
		if x.admitted() && x.m.Announce != "" {
			out = append(out, &signal.Message{Type: signal.TypeAnnounce, From: id, Payload: x.m.Announce})
		}
	}
	return out
}

// remoteAnnouncementsLocked sends p the other nodes' members'
// announcements.
func (r *Room) remoteAnnouncementsLocked(p *Participant) {
	for _, a := range r.remoteAnnouncesLocked() {
		p.send(a)
	}
}

// relay sends an E2EE message of p (announce, chat, verify) to every
// other member, here and on the other nodes.
func (r *Room) relay(p *Participant, typ, payload string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broadcastLocked(p, &signal.Message{Type: typ, From: p.id, Payload: payload})
	r.federateLocked(Event{Kind: EventMessage, Type: typ, From: p.id, Payload: payload})
}

// keyToRemote sends p's key message to another node's member; false when
// there is no such member.
func (r *Room) keyToRemote(p *Participant, to, payload string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	x := r.remote[to]
	if x == nil || !x.admitted() {
		return false
	}
	r.sendToLocked(x.node, Event{Kind: EventMessage, Type: signal.TypeKey, From: p.id, To: to, Payload: payload})
	return true
}

// takenAdmission admits a participant taken over from another node as
// what it was there.
func (m *Manager) takenAdmission(alias string, mem Member) Admission {
	m.mu.Lock()
	r := m.active[strings.ToLower(alias)]
	m.mu.Unlock()
	adm := Admission{Alias: alias, Role: roleFromWire(mem.Info.Role), Source: mem.Source}
	if r != nil {
		r.mu.Lock()
		adm.Alias, adm.Name, adm.HostRequired = r.alias, r.name, r.hostRequired
		adm.GuestsMayUnmute, adm.GuestsMayPresent = r.rules.GuestsMayUnmute, r.rules.GuestsMayPresent
		r.mu.Unlock()
	}
	// It was in the meeting: the lock does not send it to the lobby.
	adm.BypassLock = mem.Wait == ""
	return adm
}

// HasMembers reports whether node has admitted participants in the
// meeting meetingID (its instance id), as that node told this one: the
// files of a meeting kept here are served to the nodes of its members
// only (internal/cascade).
func (m *Manager) HasMembers(node, meetingID string) bool {
	for _, r := range m.rooms() {
		r.mu.Lock()
		ok := r.id == meetingID && r.nodeHasMembersLocked(node)
		r.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}
