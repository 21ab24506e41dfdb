package meeting

// The meeting's own model. The wire types of internal/signal appear only
// where messages are decoded and encoded (wire.go, and the handling of
// each message in participant.go and hostcontrol.go).

// Role is what a participant may do in a meeting.
type Role int

// Roles, least first.
const (
	// RoleGuest: entered with a guest PIN or by an open door, without an
	// account that gives more. The room's rules may stop guests from
	// unmuting after a host's mute and from presenting.
	RoleGuest Role = iota + 1
	// RoleParticipant: a participant with the usual rights.
	RoleParticipant
	// RoleHost: may run the meeting (lock, admit, mute, remove, promote,
	// end).
	RoleHost
)

// Account is the signed-in account behind a connection.
type Account struct {
	ID       int64
	Username string
	// DisplayName is the account's display name ("" if it has none).
	DisplayName string
}

// MediaState is what a participant says it sends.
type MediaState struct {
	Audio, Video, Screen bool
}

// Rules are the room's rules for guests, which hosts may change during a
// meeting.
type Rules struct {
	GuestsMayUnmute  bool
	GuestsMayPresent bool
}

// waitReason is why a participant is not in the meeting yet.
type waitReason int

const (
	admittedNow waitReason = iota // not waiting
	waitHost                      // for a host to arrive
	waitLobby                     // for a host to let it in (locked room)
)
