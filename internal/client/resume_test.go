package client_test

import (
	"strings"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/server"
	"conclave/internal/testutil/netcut"
	"conclave/internal/testutil/wait"
)

// TestReconnect: a client whose signaling connection is cut resumes as
// the same participant with its media untouched; one that stays away
// longer than the resume window joins afresh and gets media again.
func TestReconnect(t *testing.T) {
	srv := startServer(t, server.Options{ResumeWindow: 1500 * time.Millisecond}, "board")
	proxy := netcut.Start(t, strings.TrimPrefix(srv.URL(), "https://"))

	alice := join(t, srv, "board", "Alice", joinOpts{media: true, url: "https://" + proxy.Addr(), noRecord: true})
	bob := join(t, srv, "board", "Bob", joinOpts{media: true, noRecord: true})
	aliceID, bobID := alice.Self().ID, bob.Self().ID
	waitMedia(t, alice, bobID, 10, 30)

	// A short cut: resumed, same id, media keeps flowing both ways.
	proxy.Cut()
	wait.For(t, "Alice to resume", 10*time.Second, func() bool {
		return alice.saw(client.Rejoined, func(e client.Event) bool { return e.Resumed })
	})
	if !alice.saw(client.Reconnecting, nil) || alice.Self().ID != aliceID {
		t.Fatalf("after the cut Alice is %s (was %s)", alice.Self().ID, aliceID)
	}
	if proxy.Accepted() < 2 {
		t.Fatalf("the proxy forwarded %d connections, want a reconnection", proxy.Accepted())
	}
	waitMoreMedia(t, alice, bobID, 15, 50)
	waitMoreMedia(t, bob, aliceID, 15, 50)
	if bob.saw(client.ParticipantLeft, nil) {
		t.Error("Bob saw Alice leave during a resumed cut")
	}

	// A long outage: the server forgets Alice, who joins again as someone
	// new, with new peer connections, and publishes again.
	proxy.Refuse(true)
	proxy.Cut()
	time.Sleep(2200 * time.Millisecond)
	proxy.Refuse(false)
	wait.For(t, "Alice to join afresh", 15*time.Second, func() bool {
		return alice.saw(client.Rejoined, func(e client.Event) bool { return !e.Resumed })
	})
	newID := alice.Self().ID
	if newID == aliceID || newID == "" {
		t.Fatalf("Alice rejoined with id %q, want a new one", newID)
	}
	wait.For(t, "Bob to see the old Alice leave", 5*time.Second, func() bool {
		return bob.saw(client.ParticipantLeft, func(e client.Event) bool { return e.Participant.ID == aliceID })
	})
	waitMoreMedia(t, alice, bobID, 15, 50)
	waitMedia(t, bob, newID, 15, 50)
}
