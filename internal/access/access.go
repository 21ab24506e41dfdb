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
	"conclave/internal/signal"
	"conclave/internal/store"
)

// Gate implements meeting.Gate on the management store.
type Gate struct {
	store store.Store
	guard *guard.Guard
	audit audit.Recorder
	log   *slog.Logger
	// dummyPIN is verified when there is no real PIN hash to check, so
	// that a refusal takes as long whatever its cause.
	dummyPIN string
}

// New returns a gate. audit may be nil.
func New(st store.Store, g *guard.Guard, rec audit.Recorder, log *slog.Logger) (*Gate, error) {
	dummy, err := auth.HashPIN("000000")
	if err != nil {
		return nil, fmt.Errorf("prepare PIN check: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Gate{store: st, guard: g, audit: rec, log: log, dummyPIN: dummy}, nil
}

// Enter implements meeting.Gate.
func (g *Gate) Enter(ctx context.Context, e meeting.Entry) (meeting.Admission, error) {
	if err := g.guard.Check(e.Addr, e.Room); err != nil {
		g.burnPIN(e.PIN)
		g.record(ctx, e, "room-access-refused", audit.OutcomeFailure, map[string]string{"reason": "blocked"})
		return meeting.Admission{}, meeting.ErrUnavailable
	}
	room, err := g.store.RoomByAlias(ctx, e.Room)
	if errors.Is(err, store.ErrNotFound) {
		g.burnPIN(e.PIN)
		g.guard.Fail(e.Addr, e.Room, guard.UnknownRoom)
		return meeting.Admission{}, meeting.ErrUnavailable
	}
	if err != nil {
		return meeting.Admission{}, fmt.Errorf("look up room: %w", err)
	}
	if room.Access == "" {
		room = store.DefaultRoomAccess(room)
	}
	adm := meeting.Admission{Alias: room.Alias, Name: room.DisplayName,
		GuestsMayUnmute: room.GuestsMayUnmute, GuestsMayPresent: room.GuestsMayPresent}

	hostByAccount, member, err := g.accountRole(ctx, room, e.User)
	if err != nil {
		return meeting.Admission{}, err
	}
	hostPIN, guestPIN := g.checkPINs(room, e.PIN)

	switch room.Access {
	case store.AccessOpen:
		adm.Role = signal.RoleParticipant
		if hostByAccount {
			adm.Role, adm.BypassLock = signal.RoleHost, true
		}
		return adm, nil

	case store.AccessPIN:
		adm.HostRequired = true
		switch {
		case hostByAccount || hostPIN:
			adm.Role, adm.BypassLock = signal.RoleHost, true
			return adm, nil
		case room.AllowGuests && (guestPIN || room.GuestPINHash == "" && e.PIN == ""):
			adm.Role = signal.RoleGuest
			return adm, nil
		}
		return adm, g.refuse(ctx, e, room, "wrong-pin")

	case store.AccessAccounts:
		adm.HostRequired = room.AllowGuests
		switch {
		case hostByAccount:
			adm.Role, adm.BypassLock = signal.RoleHost, true
			return adm, nil
		case e.User != nil && (member || !room.MembersOnly):
			adm.Role = signal.RoleParticipant
			return adm, nil
		case room.AllowGuests && (guestPIN || room.GuestPINHash == "" && e.PIN == ""):
			adm.Role = signal.RoleGuest
			return adm, nil
		}
		return adm, g.refuse(ctx, e, room, "not-allowed")
	}
	return meeting.Admission{}, fmt.Errorf("room %s has unknown access mode %q", room.Alias, room.Access)
}

// accountRole tells whether a signed-in user hosts the room (owner or host
// member) and whether it is on the member list.
func (g *Gate) accountRole(ctx context.Context, room store.Room, u *store.User) (host, member bool, err error) {
	if u == nil || !u.Enabled {
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

// refuse counts a failed attempt on an existing room. A wrong PIN counts
// against the room and the address; an attempt without a PIN, or by an
// account that may not enter, counts against the address only, like an
// unknown alias (a shared link opened before the PIN was typed must not
// block a room).
func (g *Gate) refuse(ctx context.Context, e meeting.Entry, room store.Room, reason string) error {
	if e.PIN != "" {
		g.guard.Fail(e.Addr, room.Alias, guard.WrongPIN)
		reason = "wrong-pin"
	} else {
		g.guard.Fail(e.Addr, room.Alias, guard.UnknownRoom)
		if reason == "wrong-pin" {
			reason = "no-pin"
		}
	}
	action := "room-access-refused"
	if reason == "wrong-pin" {
		action = audit.ActionPINFailed
	}
	g.record(ctx, e, action, audit.OutcomeFailure, map[string]string{"room": room.Alias, "reason": reason})
	return meeting.ErrUnavailable
}

func (g *Gate) record(ctx context.Context, e meeting.Entry, action, outcome string, details map[string]string) {
	if g.audit == nil {
		return
	}
	actor := "guest"
	if e.User != nil {
		actor = e.User.Username
	}
	if details == nil {
		details = map[string]string{}
	}
	if _, ok := details["room"]; !ok {
		details["room"] = e.Room
	}
	ev := audit.Event{Actor: actor, Source: e.Addr.String(), Action: action, Target: e.Room, Outcome: outcome, Details: details}
	if err := g.audit.Record(ctx, ev); err != nil {
		g.log.Error("audit record failed", "action", action, "err", err)
	}
}
