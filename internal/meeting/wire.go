package meeting

import (
	"conclave/internal/conn"
	"conclave/internal/signal"
)

// The edge between the meeting's model and the signaling protocol
// (internal/signal, docs/protocol.md).

// wire is the role as the protocol names it.
func (r Role) wire() string {
	switch r {
	case RoleHost:
		return signal.RoleHost
	case RoleParticipant:
		return signal.RoleParticipant
	}
	return signal.RoleGuest
}

// String returns the role's protocol name, for logs.
func (r Role) String() string { return r.wire() }

// roleFromWire reads a role of a set-role message (validated by signal).
func roleFromWire(s string) Role {
	switch s {
	case signal.RoleHost:
		return RoleHost
	case signal.RoleParticipant:
		return RoleParticipant
	}
	return RoleGuest
}

func (w waitReason) wire() string {
	switch w {
	case waitHost:
		return signal.WaitHost
	case waitLobby:
		return signal.WaitLobby
	}
	return ""
}

func mediaStateFromWire(s signal.MediaState) MediaState {
	return MediaState{Audio: s.Audio, Video: s.Video, Screen: s.Screen}
}

// roomState is the room's state as members see it.
func roomState(rules Rules, locked, hostPresent bool) *signal.RoomState {
	return &signal.RoomState{Locked: locked, HostPresent: hostPresent,
		GuestsMayUnmute: rules.GuestsMayUnmute, GuestsMayPresent: rules.GuestsMayPresent}
}

// info is the participant as the others see it.
func (p *Participant) info() signal.Participant {
	p.mu.Lock()
	defer p.mu.Unlock()
	return signal.Participant{ID: p.id, Name: p.name, Audio: p.state.Audio && !p.forcedMute, Video: p.state.Video,
		Screen: p.state.Screen, Role: p.role.wire(), Account: p.userID != 0, Muted: p.forcedMute,
		Gateway: p.gateway}
}

// welcome is the message that admits p (again, when resumed) among others.
func (p *Participant) welcome(others []*Participant, resumed bool) *signal.Message {
	list := make([]signal.Participant, 0, len(others))
	for _, q := range others {
		if q != p {
			list = append(list, q.info())
		}
	}
	return &signal.Message{
		Type:         signal.TypeWelcome,
		Meeting:      p.room.id,
		UploadToken:  p.upload,
		Self:         ptr(p.info()),
		Resume:       p.resume,
		Resumed:      resumed,
		Participants: list,
		ICEServers:   p.mgr.iceServers(p.id),
		ICEPolicy:    p.mgr.transportPolicy(),
		RoomInfo:     &signal.RoomInfo{Alias: p.room.alias, Name: p.room.name},
		Nodes:        p.mgr.alternatives(p.room),
	}
}

// offerMessage is a subscribe offer of the media core.
func offerMessage(o conn.Offer) *signal.Message {
	tracks := make(map[string]signal.TrackInfo, len(o.Tracks))
	for mid, t := range o.Tracks {
		tracks[mid] = signal.TrackInfo{Participant: t.Participant, Source: string(t.Source), Kind: string(t.Kind), Stream: t.Stream}
	}
	return &signal.Message{Type: signal.TypeSubscribeOffer, SDP: o.SDP, Tracks: tracks}
}

// iceCandidate is a client's candidate for the media core.
func iceCandidate(c *signal.Candidate) conn.ICECandidate {
	return conn.ICECandidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}

func ptr[T any](v T) *T { return &v }
