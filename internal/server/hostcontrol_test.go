package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
)

// joinAs joins vault from source and returns the client and its first
// answer (welcome or waiting).
func joinAs(t *testing.T, srv *testserver.Server, source, name, pin string) (*wsClient, signal.Message) {
	t.Helper()
	c := dialFrom(t, srv, source)
	c.sendRaw(fmt.Sprintf(`{"v":1,"type":"join","room":"vault","name":%q,"pin":%q}`, name, pin))
	return c, c.next()
}

// expectQuiet checks that nothing but what skip names arrives before the
// answer to a ping: the client received nothing else.
func (w *wsClient) expectQuiet(skip ...string) {
	w.t.Helper()
	w.sendRaw(`{"v":1,"type":"ping","id":"quiet"}`)
	for {
		m := w.next(skip...)
		if m.Type == signal.TypePong && m.ID == "quiet" {
			return
		}
		w.t.Fatalf("unexpected %s message: %+v", m.Type, m)
	}
}

// TestLobbyAndHostControls walks through a PIN meeting: a guest waits for
// the host and receives nothing meanwhile; the host locks the room and
// admits a knocking newcomer; host commands from a guest are refused; the
// host mutes, removes (no rejoin) and ends.
func TestLobbyAndHostControls(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)

	guest, m := joinAs(t, srv, "127.0.0.41", "Gina", guestPIN)
	if m.Type != signal.TypeWaiting || m.Wait != signal.WaitHost {
		t.Fatalf("guest before the host: got %+v, want waiting for host", m)
	}
	guest.sendRaw(`{"v":1,"type":"announce","payload":"Z2hvc3Q="}`)
	guest.expectError(signal.CodeNotAdmitted)
	guest.sendRaw(`{"v":1,"type":"lock","locked":true}`)
	guest.expectError(signal.CodeNotAdmitted)

	host, m := joinAs(t, srv, "127.0.0.40", "Hana", hostPIN)
	if m.Type != signal.TypeWelcome || m.Self.Role != signal.RoleHost || len(m.Participants) != 0 {
		t.Fatalf("host: got %+v, want welcome as host, alone", m)
	}
	gw := guest.next()
	if gw.Type != signal.TypeWelcome || gw.Self.Role != signal.RoleGuest || len(gw.Participants) != 1 {
		t.Fatalf("guest once the host came: got %+v, want welcome with the host listed", gw)
	}
	guestID := gw.Self.ID
	hostID := m.Self.ID

	// Every host command from a guest is refused and changes nothing.
	for _, cmd := range []string{
		`{"v":1,"type":"mute","target":"` + hostID + `"}`,
		`{"v":1,"type":"mute-guests"}`,
		`{"v":1,"type":"remove","target":"` + hostID + `"}`,
		`{"v":1,"type":"set-role","target":"` + guestID + `","role":"host"}`,
		`{"v":1,"type":"lock","locked":true}`,
		`{"v":1,"type":"admit","target":"` + hostID + `"}`,
		`{"v":1,"type":"deny","target":"` + hostID + `"}`,
		`{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":false,"guestsMayPresent":false,"locked":false,"hostPresent":true}}`,
		`{"v":1,"type":"end"}`,
	} {
		guest.sendRaw(cmd)
		guest.expectError(signal.CodeForbidden)
	}
	host.expectQuiet(signal.TypeParticipantJoined, signal.TypeRoomState)

	// Locked: a newcomer knocks; it sees nothing of the meeting meanwhile.
	host.sendRaw(`{"v":1,"type":"lock","locked":true}`)
	if m := guest.next(signal.TypeParticipantJoined); m.Type != signal.TypeRoomState || !m.RoomState.Locked {
		t.Fatalf("guest after lock: got %+v, want room-state locked", m)
	}
	knocker, m := joinAs(t, srv, "127.0.0.42", "Kim", guestPIN)
	if m.Type != signal.TypeWaiting || m.Wait != signal.WaitLobby {
		t.Fatalf("newcomer in a locked room: got %+v, want waiting in the lobby", m)
	}
	k := host.next(signal.TypeRoomState)
	if k.Type != signal.TypeKnock || k.Participant.Name != "Kim" || k.Participant.Account {
		t.Fatalf("host: got %+v, want Kim's knock", k)
	}
	guest.sendRaw(`{"v":1,"type":"announce","payload":"YW5u"}`)
	host.next(signal.TypeRoomState) // the announcement
	guest.sendRaw(`{"v":1,"type":"chat","payload":"Y2hhdA=="}`)
	if m := host.next(); m.Type != signal.TypeChat {
		t.Fatalf("host: got %+v, want the chat message", m)
	}
	guest.sendRaw(`{"v":1,"type":"key","to":"` + k.Participant.ID + `","payload":"a2V5"}`)
	guest.expectError(signal.CodeUnknownParticipant)
	knocker.expectQuiet()

	host.sendRaw(`{"v":1,"type":"admit","target":"` + k.Participant.ID + `"}`)
	if m := knocker.next(); m.Type != signal.TypeWelcome || len(m.Participants) != 2 || m.RoomState == nil || !m.RoomState.Locked {
		t.Fatalf("admitted newcomer: got %+v, want welcome listing two, room locked", m)
	}
	if m := host.next(); m.Type != signal.TypeKnockEnded {
		t.Fatalf("host after admit: got %+v, want knock-ended", m)
	}

	// The host PIN bypasses the lock.
	cohost, m := joinAs(t, srv, "127.0.0.43", "Cleo", hostPIN)
	if m.Type != signal.TypeWelcome {
		t.Fatalf("host PIN in a locked room: got %+v, want welcome", m)
	}
	cohost.expectQuiet(signal.TypeParticipantJoined, signal.TypeAnnounce, signal.TypeRoomState)

	// Mute: the guest is told and may unmute (default), until the host
	// forbids it.
	host.sendRaw(`{"v":1,"type":"mute","target":"` + guestID + `"}`)
	if m := guest.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState); m.Type != signal.TypeMuted || m.By != hostID {
		t.Fatalf("guest after mute: got %+v, want muted by the host", m)
	}
	guest.sendRaw(`{"v":1,"type":"state","state":{"audio":true,"video":true,"screen":false}}`)
	guest.expectQuiet(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState)
	host.sendRaw(`{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":false,"guestsMayPresent":true,"locked":true,"hostPresent":true}}`)
	host.sendRaw(`{"v":1,"type":"mute","target":"` + guestID + `"}`)
	if m := guest.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState); m.Type != signal.TypeMuted {
		t.Fatalf("guest after second mute: got %+v", m)
	}
	guest.sendRaw(`{"v":1,"type":"state","state":{"audio":true,"video":true,"screen":false}}`)
	guest.expectError(signal.CodeForbidden)

	// Remove: the newcomer is sent away and cannot come back.
	host.sendRaw(`{"v":1,"type":"remove","target":"` + k.Participant.ID + `"}`)
	if m := knocker.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState, signal.TypeAnnounce); m.Type != signal.TypeBye || m.Reason != "removed" {
		t.Fatalf("removed participant: got %+v, want bye removed", m)
	}
	_, m = joinAs(t, srv, "127.0.0.42", "Kim", guestPIN)
	if m.Type != signal.TypeError || m.Code != signal.CodeRemoved || !m.Fatal {
		t.Fatalf("rejoin after removal: got %+v, want fatal removed", m)
	}
	// Nor with the host PIN (docs/hardening.md, finding 9): only an
	// account (signed in) gets in from the removed guest's address.
	if _, m = joinAs(t, srv, "127.0.0.42", "Kurt", hostPIN); m.Type != signal.TypeError || m.Code != signal.CodeRemoved {
		t.Fatalf("host PIN from the removed guest's address: got %+v, want fatal removed", m)
	}

	// End: everyone is told.
	host.sendRaw(`{"v":1,"type":"end"}`)
	for _, c := range []*wsClient{host, guest, cohost} {
		m := c.next(signal.TypeAnnounce, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeParticipantLeft, signal.TypeRoomState)
		if m.Type != signal.TypeBye || m.Reason != "ended" {
			t.Fatalf("after end: got %+v, want bye ended", m)
		}
	}
}

// TestHostLeaves: when the last host leaves, the guests are told; when a
// host comes back, they are told too.
func TestHostLeaves(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)
	host, _ := joinAs(t, srv, "127.0.0.50", "Hana", hostPIN)
	guest, m := joinAs(t, srv, "127.0.0.51", "Gina", guestPIN)
	if m.Type != signal.TypeWelcome {
		t.Fatalf("guest with a host present: got %+v", m)
	}
	host.sendRaw(`{"v":1,"type":"leave"}`)
	if m := guest.next(signal.TypeParticipantLeft, signal.TypeRoomState); m.Type != signal.TypeNotice || m.Code != "host-left" {
		t.Fatalf("guest after the host left: got %+v, want notice host-left", m)
	}
	joinAs(t, srv, "127.0.0.50", "Hana", hostPIN)
	if m := guest.next(signal.TypeParticipantLeft, signal.TypeParticipantJoined, signal.TypeRoomState); m.Type != signal.TypeNotice || m.Code != "host-back" {
		t.Fatalf("guest after the host came back: got %+v, want notice host-back", m)
	}
}

// TestCrossRoom is the isolation matrix: a host of room "annex" sends every
// command there is, aimed at room "vault"'s participants, and room "vault"
// notices nothing; a resume token of one room does not enter another.
func TestCrossRoom(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)
	hostHash, _ := auth.HashPIN("975310")
	if _, err := srv.Store().CreateRoom(context.Background(), store.Room{Alias: "annex", DisplayName: "Annex",
		Access: store.AccessPIN, HostPINHash: hostHash, AllowGuests: true, GuestsMayUnmute: true, GuestsMayPresent: true}); err != nil {
		t.Fatal(err)
	}
	host, hw := joinAs(t, srv, "127.0.0.60", "Hana", hostPIN)
	guest, gw := joinAs(t, srv, "127.0.0.61", "Gina", guestPIN)

	other := dialFrom(t, srv, "127.0.0.62")
	other.sendRaw(`{"v":1,"type":"join","room":"annex","name":"Otto","pin":"975310"}`)
	ow := other.next()
	if ow.Type != signal.TypeWelcome || ow.Self.Role != signal.RoleHost {
		t.Fatalf("annex host: got %+v", ow)
	}
	for _, target := range []string{hw.Self.ID, gw.Self.ID} {
		for _, cmd := range []string{
			`{"v":1,"type":"key","to":"%s","payload":"a2V5"}`,
			`{"v":1,"type":"mute","target":"%s"}`,
			`{"v":1,"type":"remove","target":"%s"}`,
			`{"v":1,"type":"set-role","target":"%s","role":"guest"}`,
			`{"v":1,"type":"admit","target":"%s"}`,
			`{"v":1,"type":"deny","target":"%s"}`,
		} {
			other.sendRaw(fmt.Sprintf(cmd, target))
			other.expectError(signal.CodeUnknownParticipant)
		}
	}
	// Room-wide commands act on annex only.
	for _, cmd := range []string{
		`{"v":1,"type":"lock","locked":true}`,
		`{"v":1,"type":"mute-guests"}`,
		`{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":false,"guestsMayPresent":false,"locked":false,"hostPresent":true}}`,
		`{"v":1,"type":"announce","payload":"b3R0bw=="}`,
		`{"v":1,"type":"chat","payload":"b3R0bw=="}`,
		`{"v":1,"type":"state","state":{"audio":true,"video":true,"screen":true}}`,
	} {
		other.sendRaw(cmd)
	}
	other.expectQuiet(signal.TypeRoomState)
	host.expectQuiet(signal.TypeParticipantJoined, signal.TypeRoomState)
	guest.expectQuiet(signal.TypeRoomState)
	newcomer, m := joinAs(t, srv, "127.0.0.63", "Nell", guestPIN)
	if m.Type != signal.TypeWelcome || m.RoomState.Locked || len(m.Participants) != 2 {
		t.Fatalf("vault after annex's commands: newcomer got %+v; want an unlocked welcome listing Hana and Gina only", m)
	}
	newcomer.expectQuiet()

	// Tokens do not cross rooms.
	thief := dialFrom(t, srv, "127.0.0.64")
	thief.sendRaw(`{"v":1,"type":"join","room":"vault","name":"Otto","resume":"` + ow.Resume + `"}`)
	if m := thief.next(); m.Type != signal.TypeError || m.Code != signal.CodeRoomUnavailable {
		t.Fatalf("resume token of annex used on vault: got %+v", m)
	}
	if st, _ := fileRequest(t, srv, "GET", "/api/files/00000000000000000000000000000000", ow.UploadToken, nil); st != 404 {
		t.Fatalf("file request with annex's token: %d", st)
	}
	other.sendRaw(`{"v":1,"type":"end"}`)
	if m := other.next(signal.TypeRoomState); m.Type != signal.TypeBye || m.Reason != "ended" {
		t.Fatalf("annex host after end: %+v", m)
	}
	host.expectQuiet(signal.TypeParticipantJoined)
	guest.expectQuiet(signal.TypeParticipantJoined)
}

func openTimedServer(t *testing.T) (*testserver.Server, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	srv := openAccessServer(t, clk)
	return srv, clk
}

// pendingOf counts the clock's pending timers of duration d.
func pendingOf(clk *fakeclock.Clock, d time.Duration) int {
	n := 0
	for _, p := range clk.Pending() {
		if p == d {
			n++
		}
	}
	return n
}

// TestWaitForHostTimeout: a guest alone waits 10 minutes for a host, then
// is sent away with a reason.
func TestWaitForHostTimeout(t *testing.T) {
	srv, clk := openTimedServer(t)
	guest, m := joinAs(t, srv, "127.0.0.70", "Gina", guestPIN)
	if m.Type != signal.TypeWaiting {
		t.Fatalf("got %+v, want waiting", m)
	}
	if n := pendingOf(clk, 10*time.Minute); n != 1 {
		t.Fatalf("%d wait-for-host timers armed, want 1", n)
	}
	clk.Advance(10*time.Minute - time.Millisecond)
	guest.expectQuiet(signal.TypeParticipantJoined)
	clk.Advance(time.Millisecond)
	if m := guest.next(); m.Type != signal.TypeBye || m.Reason != "no-host" {
		t.Fatalf("guest after the wait: got %+v, want bye no-host", m)
	}
}

// TestHostGrace: when the last host leaves, the meeting ends for the guests
// after the grace period; a promoted guest can host instead.
func TestHostGrace(t *testing.T) {
	srv, clk := openTimedServer(t)
	host, _ := joinAs(t, srv, "127.0.0.71", "Hana", hostPIN)
	guest, gw := joinAs(t, srv, "127.0.0.72", "Gina", guestPIN)
	other, _ := joinAs(t, srv, "127.0.0.73", "Gus", guestPIN)

	// Promotion: Gina becomes a host and can lock the room.
	host.sendRaw(`{"v":1,"type":"set-role","target":"` + gw.Self.ID + `","role":"host"}`)
	if m := guest.next(signal.TypeParticipantJoined); m.Type != signal.TypeParticipantUpdated || m.Participant.Role != signal.RoleHost {
		t.Fatalf("Gina after promotion: got %+v", m)
	}
	guest.sendRaw(`{"v":1,"type":"lock","locked":true}`)
	for {
		m := other.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated)
		if m.Type != signal.TypeRoomState {
			t.Fatalf("Gus after Gina locked: got %+v", m)
		}
		if m.RoomState.Locked {
			break
		}
	}
	// Demoted again, then Hana leaves: no host remains.
	host.sendRaw(`{"v":1,"type":"set-role","target":"` + gw.Self.ID + `","role":"guest"}`)
	host.sendRaw(`{"v":1,"type":"leave"}`)
	if m := other.next(signal.TypeParticipantUpdated, signal.TypeParticipantLeft, signal.TypeRoomState); m.Type != signal.TypeNotice || m.Code != "host-left" {
		t.Fatalf("Gus after the host left: got %+v, want notice host-left", m)
	}
	if n := pendingOf(clk, 2*time.Minute); n != 1 {
		t.Fatalf("%d grace timers armed, want 1", n)
	}
	clk.Advance(2 * time.Minute)
	for _, c := range []*wsClient{guest, other} {
		m := c.next(signal.TypeParticipantUpdated, signal.TypeParticipantLeft, signal.TypeRoomState, signal.TypeNotice)
		if m.Type != signal.TypeBye || m.Reason != "ended" {
			t.Fatalf("after the grace period: got %+v, want bye ended", m)
		}
	}
}
