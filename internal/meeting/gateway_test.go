package meeting

import (
	"fmt"
	"testing"

	"conclave/internal/conn"
	"conclave/internal/signal"
)

// A gateway (a telephone through the SIP edge) knocks even at an open
// room, is let in only by a host's admit, carries its own media core, is
// never a host, and every member sees what it is.
func TestGatewayNeedsAHostsConsentAndIsShownAsOne(t *testing.T) {
	w := newWorld(t, roleGate{})
	host, _ := w.join("board", "Hannah", hostPIN)
	member, _ := w.join("board", "Max", "")
	phoneMedia := newFakeEngine()
	phone, first := w.joinAs("board", "Alice (phone)", hostPIN, Client{Gateway: signal.GatewaySIP, Media: phoneMedia})
	must(t, first.Type == signal.TypeWaiting && first.Wait == signal.WaitLobby,
		"a gateway with the host PIN was answered %s %q, not sent to the lobby", first.Type, first.Wait)

	knock := host.next(signal.TypeParticipantJoined, signal.TypeRoomState)
	must(t, knock.Type == signal.TypeKnock && knock.Participant.Gateway == signal.GatewaySIP,
		"the host got %s %+v, not a knock that says it is a telephone gateway", knock.Type, knock.Participant)
	member.quiet(signal.TypeParticipantJoined)

	host.send(fmt.Sprintf(`{"v":1,"type":"admit","target":%q}`, knock.Participant.ID))
	welcome := phone.next()
	must(t, welcome.Type == signal.TypeWelcome, "the admitted gateway got %s", welcome.Type)
	must(t, welcome.Self.Gateway == signal.GatewaySIP && welcome.Self.Role != signal.RoleHost,
		"the gateway's own view: %+v (it must be marked, and not be a host)", welcome.Self)
	phone.id = welcome.Self.ID
	joined := member.next()
	must(t, joined.Type == signal.TypeParticipantJoined && joined.Participant.Gateway == signal.GatewaySIP,
		"a member was told %s %+v", joined.Type, joined.Participant)

	// Its media core is its own, not the node's: the others' tracks are
	// handed to it.
	mic := w.media.publisher(t, member.id).start("0", conn.Microphone)
	phoneMedia.publisher(t, phone.id)
	must(t, phoneMedia.sub(0).forwarding(mic), "the gateway's own media core was not given the member's microphone")
	w.media.mu.Lock()
	_, onNode := w.media.pubs[phone.id]
	w.media.mu.Unlock()
	must(t, !onNode, "the gateway's media was made on the node's media core")

	// The gateway cannot run the meeting.
	phone.send(`{"v":1,"type":"lock","locked":true}`)
	m := phone.next()
	must(t, m.Type == signal.TypeError && m.Code == signal.CodeForbidden, "a gateway's lock was answered %s %s", m.Type, m.Code)
}

// Without a host, a gateway waits; when one comes, it knocks instead of
// coming in with the guests who waited for a host; a deny sends it away.
func TestGatewayWaitsForAHostThenKnocksAndCanBeDenied(t *testing.T) {
	w := newWorld(t, roleGate{hostRequired: true})
	guest, first := w.join("board", "Gus", guestPIN)
	must(t, first.Wait == signal.WaitHost, "the guest was answered %s %q", first.Type, first.Wait)
	phone, first := w.joinAs("board", "Alice (phone)", "", Client{Gateway: signal.GatewaySIP, Media: newFakeEngine()})
	must(t, first.Type == signal.TypeWaiting && first.Wait == signal.WaitHost,
		"a gateway without a host present was answered %s %q", first.Type, first.Wait)

	host, welcome := w.join("board", "Hannah", hostPIN)
	must(t, welcome.Type == signal.TypeWelcome, "host got %s", welcome.Type)
	must(t, guest.next().Type == signal.TypeWelcome, "the guest was not admitted when the host came")
	knock := host.next(signal.TypeParticipantJoined, signal.TypeRoomState)
	must(t, knock.Type == signal.TypeKnock && knock.Participant.ID != "" && knock.Participant.Gateway == signal.GatewaySIP,
		"the host got %s %+v instead of the gateway's knock", knock.Type, knock.Participant)
	m := phone.next()
	must(t, m.Type == signal.TypeWaiting && m.Wait == signal.WaitLobby, "the gateway got %s %q once the host came", m.Type, m.Wait)

	host.send(fmt.Sprintf(`{"v":1,"type":"deny","target":%q}`, knock.Participant.ID))
	bye := phone.next()
	must(t, bye.Type == signal.TypeBye && bye.Reason == "denied", "the denied gateway got %s %q", bye.Type, bye.Reason)
}
