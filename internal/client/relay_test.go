package client_test

import (
	"strings"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/server"
	"conclave/internal/testutil/wait"
)

// TestRelayedMedia: a native participant that may use only the server's
// TURN relay, over UDP, over TCP, or over TLS on the HTTPS port, sends
// and receives media with one that connects directly; the relay carries
// it (allocations over that transport, bytes both ways).
func TestRelayedMedia(t *testing.T) {
	srv := startServer(t, server.Options{}, "board")
	relay := srv.TURN()
	if relay == nil {
		t.Fatal("the test server runs no TURN server")
	}
	for _, tr := range []string{client.RelayUDP, client.RelayTCP, client.RelayTLS} {
		t.Run(tr, func(t *testing.T) {
			before := relay.Stats()
			alice := join(t, srv, "board", "Alice-"+tr, joinOpts{media: true, noRecord: true, relay: tr})
			bob := join(t, srv, "board", "Bob-"+tr, joinOpts{media: true, noRecord: true})
			waitMedia(t, alice, bob.Self().ID, 25, 80)
			waitMedia(t, bob, alice.Self().ID, 25, 80)
			if st := relay.Stats(); st.AllocationsTotal[tr] == before.AllocationsTotal[tr] {
				t.Errorf("no allocation over %s: %+v", tr, st.AllocationsTotal)
			}
			// Alice's two peer connections go through the relay over tr;
			// Bob's, free to choose, connect directly.
			wait.For(t, "both participants' paths", 5*time.Second, func() bool {
				return len(alice.Paths()) == 2 && len(bob.Paths()) == 2
			})
			for _, p := range alice.Paths() {
				if p.Local != "relay" || p.RelayProtocol != tr {
					t.Errorf("Alice's %s path: %+v, want a relay candidate reached over %s", p.PC, p, tr)
				}
			}
			for _, p := range bob.Paths() {
				if p.Local != "host" || p.Remote != "host" {
					t.Errorf("Bob's %s path: %+v, want host to host", p.PC, p)
				}
			}
			// What Bob received from Alice, and what Alice received,
			// crossed the relay (as RTP, SRTP and TURN framing around
			// the frames counted).
			var fromAlice, toAlice uint64
			for _, kind := range []string{"audio", "video"} {
				fromAlice += received(bob, alice.Self().ID, kind).Bytes
				toAlice += received(alice, bob.Self().ID, kind).Bytes
			}
			after := relay.Stats()
			up, down := after.BytesToPeer-before.BytesToPeer, after.BytesToClient-before.BytesToClient
			t.Logf("relayed over %s: %d bytes to the SFU, %d back; frames: %d bytes from Alice, %d to her", tr, up, down, fromAlice, toAlice)
			if fromAlice == 0 || toAlice == 0 || up < fromAlice || down < toAlice {
				t.Errorf("relayed %d bytes up and %d down over %s; frames: %d bytes from Alice, %d to her", up, down, tr, fromAlice, toAlice)
			}
			for reason, n := range after.Refused {
				if n != before.Refused[reason] {
					t.Errorf("%d TURN refusals (%s) for a participant in the meeting", n-before.Refused[reason], reason)
				}
			}
			alice.Leave()
			bob.Leave()
			wait.For(t, "the relays of Alice to end", 5*time.Second, func() bool {
				return relay.Stats().Allocations[tr] == 0
			})
		})
	}
	if _, err := client.Dial(t.Context(), client.Options{URL: srv.URL() + "/r/board", Name: "x", RelayOver: "quic"}); err == nil ||
		!strings.Contains(err.Error(), "not one of udp, tcp, tls") {
		t.Errorf("relay transport quic: %v", err)
	}
}
