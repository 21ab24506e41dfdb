package meeting

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"conclave/internal/e2ee"
	"conclave/internal/signal"
)

// ticketGate admits a join with a ticket as the account and meeting it
// names (what internal/access does with a valid ticket); other joins as
// roleGate.
type ticketGate struct {
	roleGate
	meeting string
}

func (g *ticketGate) Enter(ctx context.Context, e Entry) (Admission, error) {
	if e.Ticket == "" {
		return g.roleGate.Enter(ctx, e)
	}
	if e.Ticket == "refused" {
		return Admission{}, &TicketRefused{Reason: "replayed", Message: "This sign-in pass was used already."}
	}
	return Admission{Alias: e.Room, Name: "Room " + e.Room, Role: RoleParticipant, Meeting: g.meeting,
		Account: &Account{ID: 42, Username: "mia"}}, nil
}

// TestTicketAdmission: a ticket's account becomes the participant's (shown
// as signed in), a refused ticket is the fatal ticket-refused with the
// gate's sentence, and a ticket for a meeting that has ended (another
// meeting of the room is in progress) is refused.
func TestTicketAdmission(t *testing.T) {
	gate := &ticketGate{}
	w := newWorld(t, gate)
	_, first := w.join("staff", "Olga", hostPIN)
	withTicket := func(tk string) signal.Message {
		t.Helper()
		c := &client{t: t, name: "Mia", c: newPipeConn(), done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			defer close(c.done)
			w.m.Serve(ctx, c.c, Client{})
		}()
		t.Cleanup(func() { cancel(); <-c.done })
		c.send(fmt.Sprintf(`{"v":1,"type":"join","room":"staff","name":"Mia","redirected":true,"ticket":%q}`, tk))
		return c.next(signal.TypeRoomState)
	}
	if m := withTicket("refused"); m.Type != signal.TypeError || m.Code != signal.CodeTicketRefused || !m.Fatal || m.Text != "This sign-in pass was used already." {
		t.Errorf("a refused ticket: %+v", m)
	}
	gate.meeting = "an-ended-meeting"
	if m := withTicket("t1"); m.Type != signal.TypeError || m.Code != signal.CodeTicketRefused || !m.Fatal {
		t.Errorf("a ticket for an ended meeting: %+v", m)
	}
	gate.meeting = first.Meeting
	m := withTicket("t2")
	if m.Type != signal.TypeWelcome || !m.Self.Account || m.Meeting != first.Meeting {
		t.Fatalf("a ticket for the meeting in progress: %+v", m)
	}
	if ids := w.m.AccountIDs(); len(ids) != 1 || ids[0] != 42 {
		t.Errorf("accounts in meetings: %v, want the ticket's", ids)
	}
}

// TestAccountAndDeviceAcrossNodes: the management node (a) disables an
// account and revokes a device whose participants are on another node
// (b): node b sends them away (account-disabled, revoked) and refuses the
// revoked device's later announcements; participants without an account
// stay.
func TestAccountAndDeviceAcrossNodes(t *testing.T) {
	net := newFakeNet()
	a, b := newWorld(t, roleGate{}), newWorld(t, roleGate{})
	net.add(t, "a", a)
	net.add(t, "b", b)
	ann, w := a.join("board", "Ann", hostPIN)
	must(t, w.Type == signal.TypeWelcome, "Ann: %+v", w)
	net.settle()
	mia, w := b.joinAs("board", "Mia", "", Client{Account: &Account{ID: 42, Username: "mia"}})
	must(t, w.Type == signal.TypeWelcome, "Mia: %+v", w)
	guest, _ := b.join("board", "Gus", guestPIN)
	cat, w := b.join("board", "Cat", "")
	catID, meetingID := w.Self.ID, w.Meeting
	device, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&device.PublicKey)
	announce := func(c *client, id string) {
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		payload, err := e2ee.SignAnnouncement(device, e2ee.Announcement{MeetingID: meetingID, ParticipantID: id,
			DisplayName: "Cat", ECDHPublicKey: eph.PublicKey(), SenderIndex: 1, Timestamp: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		c.send(fmt.Sprintf(`{"v":1,"type":"announce","payload":%q}`, base64.StdEncoding.EncodeToString(payload)))
		c.sync()
	}
	announce(cat, catID)
	net.settle()
	_ = ann

	skip := []string{signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeParticipantLeft,
		signal.TypeAnnounce, signal.TypeSpeaker, signal.TypeNotice}
	must(t, a.m.DisconnectUser(42, "account-disabled") == 1, "management counts Mia on node b")
	net.settle()
	m := mia.next(skip...)
	must(t, m.Type == signal.TypeBye && m.Reason == "account-disabled", "Mia got %+v", m)

	must(t, a.m.RevokeDevice(pub) == 1, "management counts Cat's device on node b")
	net.settle()
	m = cat.next(skip...)
	must(t, m.Type == signal.TypeBye && m.Reason == "revoked", "Cat got %+v", m)
	// Back on node b with the revoked device: sent away at its announcement.
	cat2, w := b.join("board", "Cat again", "")
	announce(cat2, w.Self.ID)
	m = cat2.next(skip...)
	must(t, m.Type == signal.TypeBye && m.Reason == "revoked", "Cat again got %+v", m)
	// The guest, who has neither, is still in.
	guest.send(`{"v":1,"type":"ping","id":"still"}`)
	m = guest.next(skip...)
	must(t, m.Type == signal.TypePong, "the guest got %+v", m)
}
