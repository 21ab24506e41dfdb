package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/netcut"
)

// TestMeeting: three people meet in one room and see and hear each other;
// one shares a screen; one leaves; a fourth person in another room receives
// nothing of the first room.
func TestMeeting(t *testing.T) {
	srv := startServer(t, "alpha", "beta")
	b := browser.Start(t)

	alice := join(t, b, srv.URL(), "alpha", "Alice")
	bob := join(t, b, srv.URL(), "alpha", "Bob")
	carol := join(t, b, srv.URL(), "alpha", "Carol")
	dave := join(t, b, srv.URL(), "beta", "Dave")

	people := []*participant{alice, bob, carol}
	for _, p := range people {
		for _, q := range people {
			if p != q {
				p.waitMedia(q, "camera", true)
			}
		}
	}
	for _, p := range people {
		p.WaitJS(t, p.name+": participant list shows all three",
			`document.querySelectorAll('#participants li[data-participant]').length === 3`, 5*time.Second)
	}

	// Alice shares her screen: the others decode it as its own tile.
	if err := alice.Click("#toggle-screen"); err != nil {
		t.Fatalf("click share screen: %v", err)
	}
	bob.waitMedia(alice, "screen", false)
	carol.waitMedia(alice, "screen", false)

	// She stops, the tile goes; she shares again, it comes back (the
	// client reuses the screen transceiver, so the server must too).
	if err := alice.Click("#toggle-screen"); err != nil {
		t.Fatalf("click stop sharing: %v", err)
	}
	noScreen := fmt.Sprintf(`!document.querySelector('.tile[data-participant=%q][data-source="screen"]')`, alice.id)
	bob.WaitJS(t, "Bob: Alice's screen tile removed", noScreen, 5*time.Second)
	if err := alice.Click("#toggle-screen"); err != nil {
		t.Fatalf("click share screen again: %v", err)
	}
	bob.waitMedia(alice, "screen", false)

	// Carol leaves: her tiles disappear for the others within 2 s.
	if err := carol.Click("#leave"); err != nil {
		t.Fatalf("click leave: %v", err)
	}
	left := time.Now()
	gone := fmt.Sprintf(`!document.querySelector('.tile[data-participant=%q]') && !document.querySelector('#participants li[data-participant=%q]')`, carol.id, carol.id)
	alice.WaitJS(t, "Alice: Carol's tile removed", gone, 2*time.Second)
	bob.WaitJS(t, "Bob: Carol's tile removed", gone, 2*time.Second-time.Since(left))
	t.Logf("Carol's tiles gone for Alice and Bob %v after she clicked leave", time.Since(left).Round(time.Millisecond))
	alice.waitMedia(bob, "camera", true) // the meeting goes on

	// Dave, alone in room beta, has received nothing from room alpha: no
	// tile but his own, nobody else in his list, no inbound media, no name.
	var isolation struct {
		Tiles, Listed int
		Inbound       float64
		Text          string
	}
	err := dave.Eval(`(async () => {
	  let inbound = 0;
	  for (const pc of (window.__pcs || [])) {
	    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp') inbound += s.packetsReceived || 0; });
	  }
	  return {Tiles: document.querySelectorAll('.tile:not([data-self="true"])').length,
	          Listed: document.querySelectorAll('#participants li[data-participant]').length,
	          Inbound: inbound, Text: document.body.innerText};
	})()`, &isolation)
	if err != nil {
		t.Fatalf("read Dave's page: %v", err)
	}
	if isolation.Tiles != 0 || isolation.Listed != 1 || isolation.Inbound != 0 {
		t.Errorf("Dave in room beta sees %d remote tiles, %d listed participants, %v inbound packets; want 0, 1 (himself), 0",
			isolation.Tiles, isolation.Listed, isolation.Inbound)
	}
	for _, name := range []string{"Alice", "Bob", "Carol"} {
		if strings.Contains(isolation.Text, name) {
			t.Errorf("Dave's page mentions %s from room alpha", name)
		}
	}
}

// TestReconnect cuts a participant's connection to the server (the
// WebSocket and every other TCP connection) while media keeps flowing over
// UDP; someone joins while it is cut. When the network comes back the
// client reconnects by itself, without a page reload, and media flows both
// ways, including with the newcomer it could only learn about after the cut.
// Alice is on Chromium, then on Firefox.
func TestReconnect(t *testing.T) {
	for _, name := range []string{"chromium", "firefox"} {
		t.Run(name, func(t *testing.T) { testReconnect(t, name) })
	}
}

func testReconnect(t *testing.T, aliceBrowser string) {
	srv := startServer(t, "alpha")
	b := browser.Start(t)
	ab := b
	if aliceBrowser == "firefox" {
		ab = browser.StartFirefox(t)
	}
	proxy := netcut.Start(t, strings.TrimPrefix(srv.URL(), "https://"))
	viaProxy := "https://" + proxy.Addr()

	alice := join(t, ab, viaProxy, "alpha", "Alice")
	bob := join(t, b, srv.URL(), "alpha", "Bob")
	alice.waitMedia(bob, "camera", true)
	bob.waitMedia(alice, "camera", true)
	if err := alice.Eval(`window.__marker = 'same page'`, nil); err != nil {
		t.Fatal(err)
	}

	proxy.Refuse(true)
	proxy.Cut()
	alice.WaitJS(t, "Alice: shows that she is reconnecting",
		`/reconnect/i.test(document.querySelector('#status')?.textContent || '')`, 10*time.Second)

	carol := join(t, b, srv.URL(), "alpha", "Carol")
	proxy.Refuse(false)

	alice.WaitJS(t, "Alice: reconnected", `!/reconnect/i.test(document.querySelector('#status')?.textContent || '')`, 20*time.Second)
	alice.waitMedia(carol, "camera", true)
	carol.waitMedia(alice, "camera", true)
	alice.waitMedia(bob, "camera", true)
	bob.waitMedia(alice, "camera", true)

	var marker string
	if err := alice.Eval(`window.__marker`, &marker); err != nil || marker != "same page" {
		t.Errorf("Alice's page was reloaded (marker %q, %v)", marker, err)
	}
	if got := alice.selfID(); got != alice.id {
		t.Logf("Alice rejoined as a new participant (%s, was %s)", got, alice.id)
	}
}
