package meeting

import (
	"sync"

	"conclave/internal/sfu"
	"conclave/internal/signal"
)

// Room is an active meeting: the participants currently in one room.
// Everything a participant sends reaches only members of its own Room.
type Room struct {
	mgr   *Manager
	alias string
	name  string

	mu      sync.Mutex
	order   []*Participant // in order of arrival
	joining int            // admitted, not yet in order
}

func newRoom(m *Manager, alias, name string) *Room {
	return &Room{mgr: m, alias: alias, name: name}
}

func (r *Room) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order) + r.joining
}

func (r *Room) empty() bool { return r.size() == 0 }

func (r *Room) reserve() {
	r.mu.Lock()
	r.joining++
	r.mu.Unlock()
}

func (r *Room) unreserve() {
	r.mu.Lock()
	r.joining--
	r.mu.Unlock()
}

// members returns a snapshot of the participants.
func (r *Room) members() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Participant(nil), r.order...)
}

// find returns the participant with this id, or nil.
func (r *Room) find(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.order {
		if p.id == id {
			return p
		}
	}
	return nil
}

// admit makes p a member: it gets its welcome, the others learn about it,
// and it is subscribed to every track already published. Holding the room
// lock throughout keeps the newcomer's view and the others' consistent with
// concurrent track changes.
func (r *Room) admit(p *Participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joining--
	others := append([]*Participant(nil), r.order...)
	r.order = append(r.order, p)

	p.send(p.welcome(others, false))
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
			if err := p.sub.AddTrack(t); err != nil {
				r.mgr.log.Error("subscribe failed", "room", r.alias, "participant", p.id, "track", t.ID(), "err", err)
			}
		}
	}
}

// remove takes p out of the room; it reports whether p was a member.
func (r *Room) remove(p *Participant) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, q := range r.order {
		if q == p {
			r.order = append(r.order[:i], r.order[i+1:]...)
			return true
		}
	}
	return false
}

// broadcast sends m to every member but from.
func (r *Room) broadcast(from *Participant, m *signal.Message) {
	for _, q := range r.members() {
		if q != from {
			q.send(m)
		}
	}
}

// trackAdded subscribes every other member to a new track of publisher.
func (r *Room) trackAdded(publisher *Participant, t *sfu.UpTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.order {
		if q == publisher {
			continue
		}
		if err := q.sub.AddTrack(t); err != nil {
			r.mgr.log.Error("subscribe failed", "room", r.alias, "participant", q.id, "track", t.ID(), "err", err)
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

func ptr[T any](v T) *T { return &v }
