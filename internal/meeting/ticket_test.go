package meeting

import (
	"context"
	"fmt"
	"testing"

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
