package meeting

import (
	"context"
	"errors"
	"net/netip"
)

// ErrUnavailable is the one refusal a Gate gives for an unknown room, a
// wrong or missing PIN, a blocked room, a quarantined address or an account
// that may not enter: the client learns nothing about which it was.
var ErrUnavailable = errors.New("room unavailable")

// TicketRefused is a Gate's refusal of a join's admission ticket
// (docs/protocol.md, "Nodes"): the client gets the fatal error
// ticket-refused with Message. A ticket proves nothing about the room, so
// this refusal tells nothing about it either.
type TicketRefused struct {
	Reason  string // malformed, forged, expired, replayed, other-room, ...
	Message string // a sentence for the person
}

func (e *TicketRefused) Error() string { return "admission ticket refused: " + e.Reason }

// unavailableMessage is sent, identical byte for byte, for every refusal.
const unavailableMessage = "This meeting is not available. Check the link and the PIN you were given."

// Entry is a request to enter a room.
type Entry struct {
	Room    string
	PIN     string
	Account *Account // nil for a guest without an account
	Addr    netip.Addr
	// Ticket is the join's admission ticket, issued by the management
	// node to a signed-in account it sent to this node; "" without.
	Ticket string
}

// Admission is a Gate's decision to let an Entry in.
type Admission struct {
	Alias string
	Name  string
	// Role is what the entrant may do.
	Role Role
	// BypassLock lets the entrant in although the room is locked (host PIN
	// or host account).
	BypassLock bool
	// HostRequired means guests wait until a host is present, and the
	// meeting ends when the last host has left.
	HostRequired bool
	// RoleGuest rules with which a new meeting of this room starts.
	GuestsMayUnmute  bool
	GuestsMayPresent bool
	// Account is the signed-in account the admission is for, when it
	// came with a ticket rather than with the connection.
	Account *Account
	// Meeting, when set, is the meeting the admission was decided for
	// (a ticket's): if the room holds another meeting now, the entrant is
	// refused and joins again.
	Meeting string
	// Source names the entrant's machine as the break-in rules count it
	// (an IPv4 address, an IPv6 /64): a removed guest is barred by it, so
	// that a fresh IPv6 privacy address does not get it back in. Empty
	// means the exact address.
	Source string
}

// Gate decides who may enter a room and as what. It returns ErrUnavailable
// for every refusal.
type Gate interface {
	Enter(ctx context.Context, e Entry) (Admission, error)
}
