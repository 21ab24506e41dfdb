// Package access decides who may enter a room and as what: it applies the
// room's access mode (open, PIN, accounts), its PINs and member list, and
// the break-in rules of the guard package, and gives every refusal the same
// answer.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/guard"
	"conclave/internal/meeting"
	"conclave/internal/store"
	"conclave/internal/ticket"
)

// Rooms is what the gate reads of the configuration: the management
// store on the management node, the copy of the configuration a
// conference node keeps (internal/nodeconf).
type Rooms interface {
	// RoomByAlias returns the room, or store.ErrNotFound.
	RoomByAlias(ctx context.Context, alias string) (store.Room, error)
	// RoomMemberRole returns a user's role on a room's member list, or
	// store.ErrNotFound.
	RoomMemberRole(ctx context.Context, roomID, userID int64) (store.MemberRole, error)
}

// Gate implements meeting.Gate on the rooms of the configuration.
type Gate struct {
	store   Rooms
	guard   *guard.Guard
	audit   audit.Recorder
	hashing *auth.HashBudget
	log     *slog.Logger
	// dummyPIN is verified when there is no real PIN hash to check, so
	// that a refusal takes as long whatever its cause.
	dummyPIN string
	// tickets checks admission tickets; nil refuses them all.
	tickets Tickets
}

// Tickets checks the admission tickets of signed-in accounts that the
// management node sent to this node (*ticket.Verifier).
type Tickets interface {
	Verify(text, room string) (ticket.Claims, error)
}

// AcceptTickets makes the gate admit holders of valid admission tickets
// with the account and role the ticket carries; call it before the
// first participant arrives.
func (g *Gate) AcceptTickets(t Tickets) { g.tickets = t }

// New returns a gate. audit may be nil; so may hashing (PIN checks are
// then not bounded, for tests).
func New(st Rooms, g *guard.Guard, rec audit.Recorder, hashing *auth.HashBudget, log *slog.Logger) (*Gate, error) {
	dummy, err := auth.HashPIN("000000")
	if err != nil {
		return nil, fmt.Errorf("prepare PIN check: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Gate{store: st, guard: g, audit: rec, hashing: hashing, log: log, dummyPIN: dummy}, nil
}

// Enter implements meeting.Gate.
//
// Every attempt that is not refused at the door does the same work,
// whatever the outcome: one room lookup, two PIN checks when a PIN is
// given (against a dummy hash where there is no such PIN or no such room),
// one count in the guard and one audit record when refused. So unknown,
// wrong and blocked rooms answer alike in content and in time. Only a
// quarantined address is refused before anything else, without any
// hashing: it has used up its failures, and refusing it must cost the
// server nothing.
func (g *Gate) Enter(ctx context.Context, e meeting.Entry) (meeting.Admission, error) {
	if g.guard.CheckAddress(e.Addr) != nil {
		g.record(ctx, e, "room-access-refused", "", map[string]string{"reason": "address-quarantined"})
		return meeting.Admission{}, meeting.ErrUnavailable
	}
	if e.Ticket != "" {
		return g.enterTicket(ctx, e)
	}
	if e.PIN != "" && g.hashing != nil {
		release, err := g.hashing.Acquire(ctx, g.guard.Source(e.Addr), auth.PINArgon2.Memory)
		if err != nil {
			g.record(ctx, e, "room-access-refused", "", map[string]string{"reason": "busy"})
			return meeting.Admission{}, meeting.ErrUnavailable
		}
		defer release()
		// Quarantined while this attempt waited for its turn.
		if g.guard.CheckAddress(e.Addr) != nil {
			g.record(ctx, e, "room-access-refused", "", map[string]string{"reason": "address-quarantined"})
			return meeting.Admission{}, meeting.ErrUnavailable
		}
	}
	room, err := g.store.RoomByAlias(ctx, e.Room)
	if errors.Is(err, store.ErrNotFound) {
		g.burnPIN(e.PIN)
		g.guard.Fail(e.Addr, e.Room, guard.UnknownRoom)
		g.record(ctx, e, "room-access-refused", e.Room, map[string]string{"reason": "unknown-room"})
		return meeting.Admission{}, meeting.ErrUnavailable
	}
	if err != nil {
		return meeting.Admission{}, fmt.Errorf("look up room: %w", err)
	}
	if room.Access == "" {
		room = store.DefaultRoomAccess(room)
	}
	adm := meeting.Admission{Alias: room.Alias, Name: room.DisplayName,
		GuestsMayUnmute: room.GuestsMayUnmute, GuestsMayPresent: room.GuestsMayPresent,
		Source: g.guard.SourceString(e.Addr)}

	hostByAccount, member, err := g.accountRole(ctx, room, e.Account)
	if err != nil {
		return meeting.Admission{}, err
	}
	hostPIN, guestPIN := g.checkPINs(room, e.PIN)
	if hostPIN && guestPIN {
		// Equal PINs (refused since, but a room may have been given them
		// before): nobody can tell a host from a guest, so the lesser
		// role it is.
		hostPIN = false
	}
	// A blocked room still lets in the people it belongs to, signed in
	// with their account: its owner, its hosts and (accounts rooms) its
	// members. Whoever guessed PINs blocked it for PINs only.
	blocked := g.guard.RoomBlocked(room.Alias)

	switch room.Access {
	case store.AccessOpen:
		adm.Role = meeting.RoleParticipant
		if hostByAccount {
			adm.Role, adm.BypassLock = meeting.RoleHost, true
		}
		return adm, nil

	case store.AccessPIN:
		adm.HostRequired = true
		switch {
		case hostByAccount:
			adm.Role, adm.BypassLock = meeting.RoleHost, true
			return adm, nil
		case blocked:
			return adm, g.refuseBlocked(ctx, e, room)
		case hostPIN:
			adm.Role, adm.BypassLock = meeting.RoleHost, true
			return adm, nil
		case room.AllowGuests && (guestPIN || room.GuestPINHash == "" && e.PIN == ""):
			adm.Role = meeting.RoleGuest
			return adm, nil
		}
		return adm, g.refuse(ctx, e, room, "wrong-pin")

	case store.AccessAccounts:
		adm.HostRequired = room.AllowGuests
		switch {
		case hostByAccount:
			adm.Role, adm.BypassLock = meeting.RoleHost, true
			return adm, nil
		case e.Account != nil && (member || !room.MembersOnly):
			adm.Role = meeting.RoleParticipant
			return adm, nil
		case blocked:
			return adm, g.refuseBlocked(ctx, e, room)
		case room.AllowGuests && (guestPIN || room.GuestPINHash == "" && e.PIN == ""):
			adm.Role = meeting.RoleGuest
			return adm, nil
		}
		return adm, g.refuse(ctx, e, room, "not-allowed")
	}
	return meeting.Admission{}, fmt.Errorf("room %s has unknown access mode %q", room.Alias, room.Access)
}

// enterTicket admits the holder of a valid admission ticket: the room
// must exist here, and the role is the one the management node's gate
// decided when it issued the ticket. A malformed or forged ticket counts
// against the address like an unknown room; every refused ticket is
// audited.
func (g *Gate) enterTicket(ctx context.Context, e meeting.Entry) (meeting.Admission, error) {
	if g.tickets == nil {
		g.record(ctx, e, "room-access-refused", e.Room, map[string]string{"reason": "ticket-not-taken"})
		return meeting.Admission{}, &meeting.TicketRefused{Reason: "not-taken",
			Message: "This server does not take sign-in passes. Join from the meeting link."}
	}
	c, err := g.tickets.Verify(e.Ticket, e.Room)
	var te *ticket.Error
	if errors.As(err, &te) {
		if te.Reason == ticket.ReasonMalformed || te.Reason == ticket.ReasonForged {
			g.guard.Fail(e.Addr, e.Room, guard.UnknownRoom)
		}
		g.record(ctx, e, "room-access-refused", e.Room, map[string]string{"reason": "ticket-" + te.Reason})
		return meeting.Admission{}, &meeting.TicketRefused{Reason: te.Reason, Message: te.Message}
	}
	if err != nil {
		return meeting.Admission{}, err
	}
	acct := &meeting.Account{ID: c.Account.ID, Username: c.Account.Username, DisplayName: c.Account.Name}
	e.Account = acct
	room, err := g.store.RoomByAlias(ctx, c.Room)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted since the ticket was issued.
		g.record(ctx, e, "room-access-refused", c.Room, map[string]string{"reason": "unknown-room"})
		return meeting.Admission{}, meeting.ErrUnavailable
	}
	if err != nil {
		return meeting.Admission{}, fmt.Errorf("look up room: %w", err)
	}
	if room.Access == "" {
		room = store.DefaultRoomAccess(room)
	}
	adm := meeting.Admission{Alias: room.Alias, Name: room.DisplayName, Account: acct, Meeting: c.Meeting,
		GuestsMayUnmute: room.GuestsMayUnmute, GuestsMayPresent: room.GuestsMayPresent,
		Source: g.guard.SourceString(e.Addr)}
	switch room.Access {
	case store.AccessPIN:
		adm.HostRequired = true
	case store.AccessAccounts:
		adm.HostRequired = room.AllowGuests
	}
	switch c.Role {
	case ticket.RoleHost:
		adm.Role, adm.BypassLock = meeting.RoleHost, true
	case ticket.RoleParticipant:
		adm.Role = meeting.RoleParticipant
	default:
		adm.Role = meeting.RoleGuest
	}
	g.log.Info("admitted with an admission ticket", "room", room.Alias, "account", c.Account.Username, "role", c.Role)
	return adm, nil
}

// refuseBlocked refuses an attempt on a blocked room. It counts against
// the address (not the room, which is blocked already), so that an address
// that keeps trying is quarantined.
func (g *Gate) refuseBlocked(ctx context.Context, e meeting.Entry, room store.Room) error {
	g.guard.Fail(e.Addr, room.Alias, guard.Refused)
	g.record(ctx, e, "room-access-refused", room.Alias, map[string]string{"reason": "room-blocked"})
	return meeting.ErrUnavailable
}

// accountRole tells whether a signed-in user hosts the room (owner or host
// member) and whether it is on the member list.
func (g *Gate) accountRole(ctx context.Context, room store.Room, u *meeting.Account) (host, member bool, err error) {
	if u == nil {
		return false, false, nil
	}
	if room.OwnerID != 0 && room.OwnerID == u.ID {
		return true, true, nil
	}
	role, err := g.store.RoomMemberRole(ctx, room.ID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("look up room membership: %w", err)
	}
	return role == store.MemberHost, true, nil
}

// checkPINs verifies pin against both of the room's PINs. Both checks run
// (against a dummy hash where the room has no such PIN) so that the time
// taken does not tell which PIN a room has.
func (g *Gate) checkPINs(room store.Room, pin string) (host, guest bool) {
	if pin == "" {
		return false, false
	}
	hostHash, guestHash := room.HostPINHash, room.GuestPINHash
	if hostHash == "" {
		hostHash = g.dummyPIN
	}
	if guestHash == "" {
		guestHash = g.dummyPIN
	}
	host, _ = auth.VerifyPIN(hostHash, pin)
	guest, _ = auth.VerifyPIN(guestHash, pin)
	return host && room.HostPINHash != "", guest && room.GuestPINHash != ""
}

// burnPIN spends the time of two PIN checks, for refusals that need none.
func (g *Gate) burnPIN(pin string) {
	if pin != "" {
		auth.VerifyPIN(g.dummyPIN, pin)
		auth.VerifyPIN(g.dummyPIN, pin)
	}
}

// refuse counts a failed attempt on an existing room. A wrong PIN on a
// room that has a PIN counts against the room and the address; an attempt
// without a PIN, a PIN on a room that takes none, or an account that may
// not enter, counts against the address only, like an unknown alias (a
// shared link opened before the PIN was typed must not block a room, and
// nobody can block a room that no PIN opens).
func (g *Gate) refuse(ctx context.Context, e meeting.Entry, room store.Room, reason string) error {
	takesPIN := room.HostPINHash != "" || room.GuestPINHash != ""
	switch {
	case e.PIN != "" && takesPIN:
		g.guard.Fail(e.Addr, room.Alias, guard.WrongPIN)
		reason = "wrong-pin"
	default:
		g.guard.Fail(e.Addr, room.Alias, guard.UnknownRoom)
		if reason == "wrong-pin" {
			reason = "no-pin"
		}
	}
	action := "room-access-refused"
	if reason == "wrong-pin" {
		action = audit.ActionPINFailed
	}
	g.record(ctx, e, action, room.Alias, map[string]string{"reason": reason})
	return meeting.ErrUnavailable
}

// record writes a refusal to the audit log (an audit.Aggregator in the
// server, which writes repeats once). target is the alias tried, "" when
// the address was refused whatever it tried.
func (g *Gate) record(ctx context.Context, e meeting.Entry, action, target string, details map[string]string) {
	if g.audit == nil {
		return
	}
	actor := "guest"
	if e.Account != nil {
		actor = e.Account.Username
	}
	if target != "" {
		details["room"] = target
	}
	ev := audit.Event{Actor: actor, Source: e.Addr.String(), Action: action, Target: target, Outcome: audit.OutcomeFailure, Details: details}
	if err := g.audit.Record(ctx, ev); err != nil {
		g.log.Error("audit record failed", "action", action, "err", err)
	}
}
