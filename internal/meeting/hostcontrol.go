package meeting

import (
	"strconv"

	"conclave/internal/signal"
)

// HostAction is a host control as the audit log records it (the node
// turns it into an audit record; this package does not know the store).
type HostAction struct {
	// Action is one of the Action constants.
	Action string
	// Actor is the host's display name; Source its address.
	Actor, Source string
	// Target is the participant's display name, or the room's alias.
	Target  string
	Details map[string]string
}

// Host actions, named as in the audit log (package audit).
const (
	ActionParticipantMuted   = "participant-muted"
	ActionGuestsMuted        = "guests-muted"
	ActionMeetingSettings    = "meeting-settings-changed"
	ActionRoleChanged        = "role-changed"
	ActionRoomLocked         = "room-locked"
	ActionRoomUnlocked       = "room-unlocked"
	ActionLobbyAdmitted      = "lobby-admitted"
	ActionLobbyDenied        = "lobby-denied"
	ActionParticipantRemoved = "participant-removed"
	ActionMeetingEnded       = "meeting-ended"
)

// Auditor records host actions.
type Auditor interface {
	HostAction(HostAction)
}

// auditRemote records a host action by p on another node's participant.
func (p *Participant) auditRemote(action string, target Member, details map[string]string) {
	rec := p.mgr.cfg.Audit
	if rec == nil {
		return
	}
	if details == nil {
		details = map[string]string{}
	}
	details["participant_id"] = target.Info.ID
	if target.UserID != 0 {
		details["participant_user_id"] = strconv.FormatInt(target.UserID, 10)
	}
	if target.Addr != "" {
		details["participant_address"] = target.Addr
	}
	p.auditOn(action, target.Info.Name, details)
}

// auditOn records a host action by p on the target named tgt.
func (p *Participant) auditOn(action, tgt string, details map[string]string) {
	rec := p.mgr.cfg.Audit
	r := p.room
	details["room"] = r.alias
	details["host_id"] = p.id
	if p.userID != 0 {
		details["host_user_id"] = strconv.FormatInt(p.userID, 10)
	}
	src := ""
	if p.addr.IsValid() {
		src = p.addr.String()
	}
	rec.HostAction(HostAction{Action: action, Actor: p.name, Source: src, Target: tgt, Details: details})
}

// actor is p as the author of a command on another node.
func (p *Participant) actor() *Actor {
	a := &Actor{ID: p.id, Name: p.name, UserID: p.userID}
	if p.addr.IsValid() {
		a.Addr = p.addr.String()
	}
	return a
}

// remoteCommand sends a host's command to the node of the target (another
// node's participant, member or waiting); it reports false when the
// target is not another node's participant.
func (p *Participant) remoteCommand(m *signal.Message) (bool, error) {
	r := p.room
	r.mu.Lock()
	x := r.remote[m.Target]
	if x == nil {
		r.mu.Unlock()
		return false, nil
	}
	target := x.m
	switch m.Type {
	case signal.TypeAdmit, signal.TypeDeny:
		if target.Wait != signal.WaitLobby {
			r.mu.Unlock()
			return true, signal.Errorf(signal.CodeUnknownParticipant, "Nobody with this id is knocking.")
		}
	case signal.TypeMute, signal.TypeSetRole:
		if !x.admitted() {
			r.mu.Unlock()
			return true, signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", m.Target)
		}
	}
	r.sendToLocked(x.node, Event{Kind: EventCommand, Type: m.Type, Target: m.Target, Role: m.Role, Host: p.actor()})
	r.mu.Unlock()
	switch m.Type {
	case signal.TypeMute:
		p.auditRemote(ActionParticipantMuted, target, nil)
	case signal.TypeRemove:
		p.auditRemote(ActionParticipantRemoved, target, nil)
	case signal.TypeSetRole:
		p.auditRemote(ActionRoleChanged, target, map[string]string{"from": target.Info.Role, "to": m.Role})
	case signal.TypeAdmit:
		p.auditRemote(ActionLobbyAdmitted, target, nil)
	case signal.TypeDeny:
		p.auditRemote(ActionLobbyDenied, target, nil)
	}
	p.log.Info("host command sent to another node", "room", r.alias, "host", p.id, "type", m.Type, "participant", m.Target)
	return true, nil
}

// audit records a host action by p on target (a participant, or the room
// when nil).
func (p *Participant) audit(action string, target *Participant, details map[string]string) {
	if p.mgr.cfg.Audit == nil {
		return
	}
	if details == nil {
		details = map[string]string{}
	}
	tgt := p.room.alias
	if target != nil {
		tgt = target.name
		details["participant_id"] = target.id
		if target.userID != 0 {
			details["participant_user_id"] = strconv.FormatInt(target.userID, 10)
		}
		if target.addr.IsValid() {
			details["participant_address"] = target.addr.String()
		}
	}
	p.auditOn(action, tgt, details)
}

// hostCommand executes a host control. Every rule is enforced here, on the
// server: a client that is not a host changes nothing.
func (p *Participant) hostCommand(m *signal.Message) error {
	if p.getRole() != RoleHost {
		return signal.Errorf(signal.CodeForbidden, "Only a host can do this.")
	}
	r := p.room
	if m.Type == signal.TypeEnd {
		p.log.Info("meeting ended by host", "room", r.alias, "host", p.id)
		p.audit(ActionMeetingEnded, nil, nil)
		r.mu.Lock()
		r.federateLocked(Event{Kind: EventEnd, Reason: "ended"})
		r.mu.Unlock()
		go r.end("ended")
		return nil
	}
	switch m.Type {
	case signal.TypeMute, signal.TypeRemove, signal.TypeSetRole, signal.TypeAdmit, signal.TypeDeny:
		if remote, err := p.remoteCommand(m); remote {
			return err
		}
	}
	if m.Type == signal.TypeRemove {
		return p.removeParticipant(m.Target)
	}
	if m.Type == signal.TypeDeny {
		r.mu.Lock()
		q := r.findWaitingLocked(m.Target)
		if q == nil || q.getWait() != waitLobby {
			r.mu.Unlock()
			return signal.Errorf(signal.CodeUnknownParticipant, "Nobody with this id is knocking.")
		}
		r.mu.Unlock()
		p.log.Info("lobby denied", "room", r.alias, "host", p.id, "participant", q.id)
		p.audit(ActionLobbyDenied, q, nil)
		q.leave("denied") // tells the other hosts knock-ended
		return nil
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	switch m.Type {
	case signal.TypeMute:
		q := r.findLocked(m.Target)
		if q == nil {
			return signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", m.Target)
		}
		r.muteLocked(p.id, q)
		p.audit(ActionParticipantMuted, q, nil)
	case signal.TypeMuteGuests:
		n := 0
		for _, q := range r.order {
			if q.getRole() == RoleGuest {
				r.muteLocked(p.id, q)
				n++
			}
		}
		for _, x := range r.remote {
			if x.admitted() && x.role() == RoleGuest {
				n++
			}
		}
		r.federateLocked(Event{Kind: EventCommand, Type: signal.TypeMuteGuests, Host: p.actor()})
		p.audit(ActionGuestsMuted, nil, map[string]string{"muted": strconv.Itoa(n)})
	case signal.TypeSetRole:
		q := r.findLocked(m.Target)
		if q == nil {
			return signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", m.Target)
		}
		role := roleFromWire(m.Role)
		was := r.setRoleLocked(q, role)
		p.log.Info("role changed", "room", r.alias, "host", p.id, "participant", q.id, "from", was, "to", role)
		p.audit(ActionRoleChanged, q, map[string]string{"from": was.String(), "to": role.String()})
	case signal.TypeLock:
		r.locked = *m.Locked
		p.log.Info("room lock changed", "room", r.alias, "host", p.id, "locked", r.locked)
		if r.locked {
			p.audit(ActionRoomLocked, nil, nil)
		} else {
			p.audit(ActionRoomUnlocked, nil, nil)
		}
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
		r.changedLocked()
	case signal.TypeAdmit:
		q := r.findWaitingLocked(m.Target)
		if q == nil || q.getWait() != waitLobby {
			return signal.Errorf(signal.CodeUnknownParticipant, "Nobody with this id is knocking.")
		}
		p.log.Info("lobby admitted", "room", r.alias, "host", p.id, "participant", q.id)
		p.audit(ActionLobbyAdmitted, q, nil)
		r.admitWaitingLocked(q)
	case signal.TypeRoomSettings:
		r.rules = Rules{GuestsMayUnmute: m.Settings.GuestsMayUnmute, GuestsMayPresent: m.Settings.GuestsMayPresent}
		p.log.Info("room settings changed", "room", r.alias, "host", p.id,
			"guestsMayUnmute", r.rules.GuestsMayUnmute, "guestsMayPresent", r.rules.GuestsMayPresent)
		p.audit(ActionMeetingSettings, nil, map[string]string{"guests_may_unmute": strconv.FormatBool(r.rules.GuestsMayUnmute),
			"guests_may_present": strconv.FormatBool(r.rules.GuestsMayPresent)})
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
		r.reconcileLocked()
		r.changedLocked()
	}
	return nil
}

// setRoleLocked gives q role, tells everyone (here and on the other
// nodes), and applies what follows: a new host sees the lobby and lets in
// the guests waiting for a host; a meeting without a host may end. It
// returns the previous role.
func (r *Room) setRoleLocked(q *Participant, role Role) Role {
	q.mu.Lock()
	was := q.role
	q.role = role
	q.mu.Unlock()
	r.broadcastLocked(nil, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(q.info())})
	r.memberChangedLocked(q)
	switch {
	case was != RoleHost && role == RoleHost:
		// A new host sees who is already knocking, here and elsewhere.
		for _, w := range r.waiting {
			if w.getWait() == waitLobby {
				q.send(&signal.Message{Type: signal.TypeKnock, Participant: ptr(w.info())})
			}
		}
		for _, x := range r.remote {
			if x.m.Wait == signal.WaitLobby {
				q.send(&signal.Message{Type: signal.TypeKnock, Participant: ptr(x.m.Info)})
			}
		}
		r.hostArrivedLocked()
	case was == RoleHost && role != RoleHost:
		r.hostLeftLocked()
	}
	r.reconcileLocked()
	return was
}

// admitWaitingLocked lets q in from the lobby.
func (r *Room) admitWaitingLocked(q *Participant) {
	r.removeWaitingLocked(q)
	r.toHostsLocked(&signal.Message{Type: signal.TypeKnockEnded, Participant: ptr(q.info())})
	if err := r.admitLocked(q); err != nil {
		r.mgr.log.Error("admit failed", "room", r.alias, "participant", q.id, "err", err)
		go q.leave("server-error")
	}
}

// banLocked bars q's account and source from the meeting, on every
// node.
func (r *Room) banLocked(q *Participant) {
	// The account, and the machine it came from: a removed account that
	// comes back without its cookie is a guest from the same source.
	if q.userID != 0 {
		r.banned[userKey(q.userID)] = true
	}
	if k := sourceKey(q); k != "" {
		r.banned[k] = true
	}
	r.changedLocked()
}

// muteLocked applies a host's mute (by is the host's id) to q.
func (r *Room) muteLocked(by string, q *Participant) {
	q.setMicMuted(true)
	// Remembered for the rest of the meeting: a reload does not unmute.
	if k := muteKey(q); k != "" {
		r.muted[k] = true
	}
	q.send(&signal.Message{Type: signal.TypeMuted, By: by})
	r.broadcastLocked(q, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(q.info())})
	r.memberChangedLocked(q)
	r.changedLocked()
	r.mgr.log.Info("participant muted", "room", r.alias, "host", by, "participant", q.id)
}

// removeParticipant sends a member or a waiting participant away and bars
// it (its account, or its address for a guest) from this meeting.
func (p *Participant) removeParticipant(id string) error {
	r := p.room
	r.mu.Lock()
	q := r.findLocked(id)
	if q == nil {
		q = r.findWaitingLocked(id)
	}
	if q == nil || q == p {
		r.mu.Unlock()
		return signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", id)
	}
	r.banLocked(q)
	r.mu.Unlock()
	p.log.Info("participant removed", "room", r.alias, "host", p.id, "participant", q.id)
	p.audit(ActionParticipantRemoved, q, nil)
	q.leave("removed")
	return nil
}
