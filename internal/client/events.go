package client

import "conclave/internal/signal"

// EventKind says what an Event reports.
type EventKind int

// Kinds of events.
const (
	// Joined: the server welcomed this participant (Participant) into
	// the meeting instance Meeting, with Others already there; their
	// ParticipantJoined events follow.
	Joined EventKind = iota + 1
	// ParticipantJoined: Participant entered the meeting (or was found
	// there after a reconnection).
	ParticipantJoined
	// ParticipantUpdated: Participant changed what it sends.
	ParticipantUpdated
	// ParticipantLeft: Participant left the meeting.
	ParticipantLeft
	// TrackStarted: the first frame of a remote track arrived.
	TrackStarted
	// TrackStopped: a remote track ended (its sender stopped or left).
	TrackStopped
	// Reconnecting: the signaling connection dropped; the session is
	// trying to get back in.
	Reconnecting
	// Rejoined: the session is back in the meeting after Reconnecting.
	// Resumed tells whether it kept its identity and media connections
	// (true) or joined afresh as a new participant (false); Participant,
	// Meeting and Others are as for Joined.
	Rejoined
	// Waiting: the server holds the participant until a host arrives
	// (Wait "host") or admits it from the lobby (Wait "lobby").
	Waiting
	// Muted: a host (By) muted this participant's microphone.
	Muted
	// Closed: the session ended; Err says why (nil after Leave).
	Closed
)

var eventNames = map[EventKind]string{
	Joined: "joined", ParticipantJoined: "participant-joined", ParticipantUpdated: "participant-updated",
	ParticipantLeft: "participant-left", TrackStarted: "track-started", TrackStopped: "track-stopped",
	Reconnecting: "reconnecting", Rejoined: "rejoined", Waiting: "waiting", Muted: "muted", Closed: "closed",
}

func (k EventKind) String() string { return eventNames[k] }

// Event is something that happened in the session.
type Event struct {
	Kind        EventKind
	Participant signal.Participant   // participant events; self for Joined and Rejoined
	Meeting     string               // Joined, Rejoined: the meeting instance id (E2EE context)
	Others      []signal.Participant // Joined, Rejoined: the others present at the welcome
	Track       TrackInfo            // track events
	Resumed     bool                 // Rejoined
	Wait        string               // Waiting: "host" or "lobby"
	By          string               // Muted: the host's id
	Err         error                // Closed
}

// Hooks receive what happens in a session. Each is optional. They are
// called one at a time, in order, from a goroutine of the session's own;
// they must not block for long and must not call Leave (start a goroutine
// for that).
type Hooks struct {
	// OnStart is called once, before any other hook and before the
	// session connects, with the session Dial is making: a layer that
	// answers events with messages (end-to-end encryption) keeps it to
	// send them, since Dial returns only after the welcome.
	OnStart func(*Session)
	// OnEvent receives participant, track and connection events.
	OnEvent func(Event)
	// OnAnnounce receives a participant's opaque E2EE announcement, as
	// relayed by the server (docs/protocol.md, announce).
	OnAnnounce func(from string, payload []byte)
	// OnKey receives an opaque E2EE key message addressed to this
	// participant.
	OnKey func(from string, payload []byte)
	// OnVerify receives an opaque E2EE verification message (a commit or
	// a reveal of the meeting code's round) from a participant.
	OnVerify func(from string, payload []byte)
}
