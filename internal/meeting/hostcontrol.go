package meeting

import (
	"conclave/internal/signal"
)

// hostCommand executes a host control. Every rule is enforced here, on the
// server: a client that is not a host changes nothing.
func (p *Participant) hostCommand(m *signal.Message) error {
	if p.getRole() != RoleHost {
		return signal.Errorf(signal.CodeForbidden, "Only a host can do this.")
	}
	r := p.room
	if m.Type == signal.TypeEnd {
		p.log.Info("meeting ended by host", "room", r.alias, "host", p.id)
		go r.end("ended")
		return nil
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
		r.muteLocked(p, q)
	case signal.TypeMuteGuests:
		for _, q := range r.order {
			if q.getRole() == RoleGuest {
				r.muteLocked(p, q)
			}
		}
	case signal.TypeSetRole:
		q := r.findLocked(m.Target)
		if q == nil {
			return signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", m.Target)
		}
		role := roleFromWire(m.Role)
		q.mu.Lock()
		was := q.role
		q.role = role
		q.mu.Unlock()
		p.log.Info("role changed", "room", r.alias, "host", p.id, "participant", q.id, "from", was, "to", role)
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(q.info())})
		switch {
		case was != RoleHost && role == RoleHost:
			// A new host sees who is already knocking.
			for _, w := range r.waiting {
				if w.getWait() == waitLobby {
					q.send(&signal.Message{Type: signal.TypeKnock, Participant: ptr(w.info())})
				}
			}
			r.hostArrivedLocked()
		case was == RoleHost && role != RoleHost:
			r.hostLeftLocked()
		}
		r.reconcileLocked()
	case signal.TypeLock:
		r.locked = *m.Locked
		p.log.Info("room lock changed", "room", r.alias, "host", p.id, "locked", r.locked)
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
	case signal.TypeAdmit:
		q := r.findWaitingLocked(m.Target)
		if q == nil || q.getWait() != waitLobby {
			return signal.Errorf(signal.CodeUnknownParticipant, "Nobody with this id is knocking.")
		}
		r.removeWaitingLocked(q)
		r.toHostsLocked(&signal.Message{Type: signal.TypeKnockEnded, Participant: ptr(q.info())})
		p.log.Info("lobby admitted", "room", r.alias, "host", p.id, "participant", q.id)
		if err := r.admitLocked(q); err != nil {
			p.log.Error("admit failed", "room", r.alias, "participant", q.id, "err", err)
			go q.leave("server-error")
		}
	case signal.TypeRoomSettings:
		r.rules = Rules{GuestsMayUnmute: m.Settings.GuestsMayUnmute, GuestsMayPresent: m.Settings.GuestsMayPresent}
		p.log.Info("room settings changed", "room", r.alias, "host", p.id,
			"guestsMayUnmute", r.rules.GuestsMayUnmute, "guestsMayPresent", r.rules.GuestsMayPresent)
		r.broadcastLocked(nil, &signal.Message{Type: signal.TypeRoomState, RoomState: r.stateLocked()})
		r.reconcileLocked()
	}
	return nil
}

func (r *Room) muteLocked(host, q *Participant) {
	q.setMicMuted(true)
	// Remembered for the rest of the meeting: a reload does not unmute.
	if k := muteKey(q); k != "" {
		r.muted[k] = true
	}
	q.send(&signal.Message{Type: signal.TypeMuted, By: host.id})
	r.broadcastLocked(q, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(q.info())})
	host.log.Info("participant muted", "room", r.alias, "host", host.id, "participant", q.id)
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
	// The account, and the machine it came from: a removed account that
	// comes back without its cookie is a guest from the same source.
	if q.userID != 0 {
		r.banned[userKey(q.userID)] = true
	}
	if k := sourceKey(q); k != "" {
		r.banned[k] = true
	}
	r.mu.Unlock()
	p.log.Info("participant removed", "room", r.alias, "host", p.id, "participant", q.id)
	q.leave("removed")
	return nil
}
