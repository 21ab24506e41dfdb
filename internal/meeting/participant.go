package meeting

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"conclave/internal/sfu"
	"conclave/internal/signal"
)

// Participant is one member of a meeting. It outlives its signaling
// connection for Config.ResumeWindow so that a client whose WebSocket drops
// can come back without interrupting its media.
type Participant struct {
	id     string
	name   string
	resume string
	room   *Room
	mgr    *Manager
	log    *slog.Logger

	pub *sfu.Publisher
	sub *sfu.Subscriber

	mu       sync.Mutex
	conn     *connection // nil while disconnected
	state    signal.MediaState
	announce string
	left     bool
	dropped  *time.Timer
}

// ID returns the participant's id.
func (p *Participant) ID() string { return p.id }

func (p *Participant) start(conn *connection) error {
	var err error
	p.pub, err = p.mgr.engine.NewPublisher(p.id, pubEvents{p})
	if err != nil {
		return err
	}
	p.sub, err = p.mgr.engine.NewSubscriber(subEvents{p})
	if err != nil {
		p.pub.Close()
		return err
	}
	p.mu.Lock()
	p.conn = conn
	p.mu.Unlock()
	p.room.admit(p)
	return nil
}

func (p *Participant) info() signal.Participant {
	p.mu.Lock()
	defer p.mu.Unlock()
	return signal.Participant{ID: p.id, Name: p.name, Audio: p.state.Audio, Video: p.state.Video, Screen: p.state.Screen}
}

func (p *Participant) announcement() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.announce
}

func (p *Participant) welcome(others []*Participant, resumed bool) *signal.Message {
	list := make([]signal.Participant, 0, len(others))
	for _, q := range others {
		if q != p {
			list = append(list, q.info())
		}
	}
	return &signal.Message{
		Type:         signal.TypeWelcome,
		Self:         ptr(p.info()),
		Resume:       p.resume,
		Resumed:      resumed,
		Participants: list,
		ICEServers:   p.mgr.cfg.ICEServers,
		RoomInfo:     &signal.RoomInfo{Alias: p.room.alias, Name: p.room.name},
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
		p.dropped.Stop()
		p.dropped = nil
	}
	p.mu.Unlock()
	if old != nil {
		old.send(&signal.Message{Type: signal.TypeBye, Reason: "replaced"})
		old.close(CloseNormal, "replaced")
	}
	conn.send(p.welcome(p.room.members(), true))
	for _, q := range p.room.members() {
		if q == p {
			continue
		}
		if a := q.announcement(); a != "" {
			conn.send(&signal.Message{Type: signal.TypeAnnounce, From: q.id, Payload: a})
		}
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
	p.dropped = time.AfterFunc(p.mgr.cfg.ResumeWindow, func() { p.leave("timeout") })
	p.log.Info("participant connection lost", "room", p.room.alias, "participant", p.id)
}

// leave removes the participant from its meeting for good.
func (p *Participant) leave(reason string) {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return
	}
	p.left = true
	conn := p.conn
	p.conn = nil
	if p.dropped != nil {
		p.dropped.Stop()
	}
	p.mu.Unlock()
	if conn != nil {
		conn.send(&signal.Message{Type: signal.TypeBye, Reason: reason})
		conn.close(CloseNormal, reason)
	}
	p.room.remove(p)
	// Closing the publisher reports each of its tracks as removed, which
	// unsubscribes the remaining members.
	p.pub.Close()
	p.sub.Close()
	p.room.broadcast(p, &signal.Message{Type: signal.TypeParticipantLeft, Participant: ptr(p.info())})
	p.mgr.forget(p)
	p.log.Info("participant left", "room", p.room.alias, "participant", p.id, "reason", reason)
}

// handle executes one validated message from the participant's client.
func (p *Participant) handle(conn *connection, m *signal.Message) error {
	switch m.Type {
	case signal.TypePublish:
		sources := make(map[string]string, len(m.Tracks))
		for mid, t := range m.Tracks {
			sources[mid] = t.Source
		}
		answer, err := p.pub.HandleOffer(m.SDP, sources)
		if err != nil {
			p.log.Warn("publish offer refused", "participant", p.id, "err", err)
			return signal.Errorf(signal.CodeNegotiationFailed, "The server could not use this offer: %v.", err)
		}
		conn.send(&signal.Message{Type: signal.TypePublishAnswer, SDP: answer})
	case signal.TypeSubscribeAnswer:
		if err := p.sub.HandleAnswer(m.SDP); err != nil {
			return signal.Errorf(signal.CodeNegotiationFailed, "The server could not use this answer: %v.", err)
		}
	case signal.TypeCandidate:
		c := m.Candidate
		if c.Candidate == "" {
			return nil // end of candidates
		}
		init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
		var err error
		if m.PC == signal.PCPublish {
			err = p.pub.AddCandidate(init)
		} else {
			err = p.sub.AddCandidate(init)
		}
		if err != nil {
			return signal.Errorf(signal.CodeNegotiationFailed, "The server could not use this candidate: %v.", err)
		}
	case signal.TypeState:
		p.mu.Lock()
		p.state = *m.State
		p.mu.Unlock()
		p.room.broadcast(p, &signal.Message{Type: signal.TypeParticipantUpdated, Participant: ptr(p.info())})
	case signal.TypeRestartICE:
		p.sub.RestartICE()
	case signal.TypeAnnounce:
		p.mu.Lock()
		p.announce = m.Payload
		p.mu.Unlock()
		p.room.broadcast(p, &signal.Message{Type: signal.TypeAnnounce, From: p.id, Payload: m.Payload})
	case signal.TypeKey:
		to := p.room.find(m.To)
		if to == nil || to == p {
			return signal.Errorf(signal.CodeUnknownParticipant, "Participant %q is not in this meeting.", m.To)
		}
		to.send(&signal.Message{Type: signal.TypeKey, From: p.id, Payload: m.Payload})
	case signal.TypeLeave:
		p.leave("left")
	default:
		return fmt.Errorf("unhandled message type %q", m.Type)
	}
	return nil
}

func offerMessage(o sfu.Offer) *signal.Message {
	tracks := make(map[string]signal.TrackInfo, len(o.Tracks))
	for mid, t := range o.Tracks {
		tracks[mid] = signal.TrackInfo{Participant: t.Participant, Source: t.Source, Kind: t.Kind, Stream: t.Stream}
	}
	return &signal.Message{Type: signal.TypeSubscribeOffer, SDP: o.SDP, Tracks: tracks}
}

type pubEvents struct{ p *Participant }

func (e pubEvents) TrackAdded(t *sfu.UpTrack) {
	e.p.log.Debug("track added", "participant", e.p.id, "track", t.ID(), "source", t.Source(), "codec", t.Codec())
	e.p.room.trackAdded(e.p, t)
}

func (e pubEvents) TrackRemoved(t *sfu.UpTrack) {
	e.p.log.Debug("track removed", "participant", e.p.id, "track", t.ID())
	e.p.room.trackRemoved(t)
}

func (e pubEvents) ConnectionState(s webrtc.PeerConnectionState) {
	e.p.log.Debug("publish connection", "participant", e.p.id, "state", s.String())
}

type subEvents struct{ p *Participant }

func (e subEvents) SendOffer(o sfu.Offer) { e.p.send(offerMessage(o)) }

func (e subEvents) ConnectionState(s webrtc.PeerConnectionState) {
	e.p.log.Debug("subscribe connection", "participant", e.p.id, "state", s.String())
}
