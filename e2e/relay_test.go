package e2e

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/e2ee"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/relay"
)

// attacker is the malicious relay's state: what it saw and what it does.
type attacker struct {
	mu        sync.Mutex
	meeting   string // the meeting id Alice was welcomed with
	aliceID   string
	lastKey   relay.Message  // the latest key message toward Alice
	keysTo    map[string]int // key messages Alice sent, by addressee
	rewriteTo map[string]func(relay.Message) relay.Message
	// rewriteAny, when set, picks a rewrite for announcements of any sender.
	rewriteAny func(from string) func(relay.Message) relay.Message
	dropKeys   atomic.Bool
}

func (a *attacker) rewrite(conn *relay.Conn, dir relay.Direction, m relay.Message) []relay.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case dir == relay.ToClient && m.Type() == "welcome":
		a.meeting = m.String("meeting")
		self, _ := m["self"].(map[string]any)
		a.aliceID, _ = self["id"].(string)
	case dir == relay.ToClient && m.Type() == "key":
		if a.dropKeys.Load() {
			return nil
		}
		a.lastKey = m
	case dir == relay.ToClient && m.Type() == "announce":
		if f := a.rewriteTo[m.String("from")]; f != nil {
			return []relay.Message{f(m)}
		}
		if a.rewriteAny != nil {
			if f := a.rewriteAny(m.String("from")); f != nil {
				return []relay.Message{f(m)}
			}
		}
	case dir == relay.ToServer && m.Type() == "key":
		a.keysTo[m.String("to")]++
	}
	return []relay.Message{m}
}

// forge makes an announcement for participant id in Alice's meeting,
// signed by a device key the attacker owns.
func (a *attacker) forge(t *testing.T, id, name string) string {
	t.Helper()
	a.mu.Lock()
	meeting := a.meeting
	a.mu.Unlock()
	device, err := e2ee.GenerateDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e2ee.SignAnnouncement(device, e2ee.Announcement{MeetingID: meeting, ParticipantID: id, DisplayName: name,
		ECDHPublicKey: eph.PublicKey(), DevicePublicKey: &device.PublicKey, SenderIndex: 4242, Timestamp: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// breakSignature keeps an announcement's signature but swaps the ECDH key
// inside it for the attacker's: the server substituting a key.
func breakSignature(t *testing.T, payload string) string {
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := e2ee.ParseAnnouncement(raw)
	if err != nil {
		t.Fatal(err)
	}
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	a := sa.Announcement
	a.ECDHPublicKey = eph.PublicKey()
	body, err := e2ee.EncodeAnnouncementBody(a)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(append(body, sa.Signature...))
}

func (p *participant) decodedFrom(from *participant) float64 {
	return p.media(from, "camera").FramesDecoded
}

// TestMaliciousRelay puts a relay that plays a malicious server between
// Alice and the server. Dropped key messages give no media, and media comes
// back when they flow again; replayed ones are refused; a ghost announcement
// the server does not list gets no key; a ghost that is also listed is shown
// as not certified and makes Alice's meeting code differ from the others'; a
// substituted key breaks the signature (a warning) or, re-signed by the
// attacker, the meeting code.
func TestMaliciousRelay(t *testing.T) {
	srv := startServer(t, "alpha")
	b := browser.Start(t)
	att := &attacker{keysTo: map[string]int{}, rewriteTo: map[string]func(relay.Message) relay.Message{}}
	att.dropKeys.Store(true)
	rl := relay.Start(t, srv.URL(), srv.TLS().Certificate, att.rewrite)

	bob := join(t, b, srv.URL(), "alpha", "Bob")
	alice := join(t, b, rl.URL, "alpha", "Alice")

	// (c) Key messages toward Alice are dropped: she decodes nothing of
	// Bob's, and her page does not claim end-to-end encryption.
	bob.waitMedia(alice, "camera", true)
	alice.WaitJS(t, "Alice: Bob listed but not keyed", fmt.Sprintf(`document.querySelector('#participants li[data-participant=%q]')?.dataset.e2ee !== 'verified' && document.querySelector('#e2ee-state').dataset.state !== 'e2ee'`, bob.id), 10*time.Second)
	if n := alice.decodedFrom(bob); n != 0 {
		t.Fatalf("Alice decoded %v frames of Bob's without his key", n)
	}
	// They flow again: her key requests bring Bob's key; she recovers.
	att.dropKeys.Store(false)
	alice.waitMedia(bob, "camera", true)
	code := sameCode(t, alice, bob)

	// Replays of the last key message are refused and change nothing.
	att.mu.Lock()
	last := att.lastKey
	att.mu.Unlock()
	if last == nil {
		t.Fatal("the relay saw no key message toward Alice")
	}
	conn := rl.Conns()[0]
	for i := 0; i < 3; i++ {
		if err := conn.Inject(context.Background(), relay.ToClient, last); err != nil {
			t.Fatal(err)
		}
	}
	alice.waitMedia(bob, "camera", true)

	// (b) An unlisted ghost: shown as such, given no key.
	ghost := att.forge(t, "ghost0001", "Ghost")
	conn.Inject(context.Background(), relay.ToClient, relay.Message{"v": 1, "type": "announce", "from": "ghost0001", "payload": ghost})
	alice.WaitJS(t, "Alice: ghost shown", `!!document.querySelector('#participants li[data-participant="ghost0001"][data-ghost="true"]')`, 10*time.Second)
	// A listed ghost: not certified, and Alice's code no longer matches.
	conn.Inject(context.Background(), relay.ToClient, relay.Message{"v": 1, "type": "participant-joined",
		"participant": map[string]any{"id": "ghost0002", "name": "Ghost"}})
	conn.Inject(context.Background(), relay.ToClient, relay.Message{"v": 1, "type": "announce", "from": "ghost0002", "payload": att.forge(t, "ghost0002", "Ghost")})
	alice.WaitJS(t, "Alice: listed ghost not certified", `document.querySelector('#participants li[data-participant="ghost0002"] .badge')?.dataset.certified === 'false'`, 10*time.Second)
	// The ghosts are in Alice's view only: no code is agreed (the round
	// waits for commitments the ghosts cannot give), and Bob is told that
	// Alice sees another list of participants.
	alice.WaitJS(t, "Alice: code changed by the ghost", fmt.Sprintf(`document.querySelector('#meeting-code').dataset.code !== %q`, code), 10*time.Second)
	bob.WaitJS(t, "Bob: told that Alice sees another list", `document.querySelector('#e2ee-warning').textContent.includes('sees a different list of participants')`, 15*time.Second)
	if a, b := alice.e2ee().Code, bob.e2ee().Code; a != "" && a == b {
		t.Fatalf("the ghost went unnoticed: Alice and Bob both show %s", a)
	}
	att.mu.Lock()
	unlistedKeys := att.keysTo["ghost0001"]
	att.mu.Unlock()
	if unlistedKeys != 0 {
		t.Errorf("Alice sent %d key messages to a ghost the server never listed", unlistedKeys)
	}

	// (a) Carol's announcement reaches Alice with a substituted key: the
	// signature fails, Alice warns and never verifies Carol.
	subst := func(m relay.Message) relay.Message {
		m["payload"] = breakSignature(t, m.String("payload"))
		return m
	}
	installForNewcomer(att, bob, alice, subst)
	carol := join(t, b, srv.URL(), "alpha", "Carol")
	alice.WaitJS(t, "Alice: warns about Carol's announcement", fmt.Sprintf(`document.querySelector('#e2ee-state').dataset.state === 'warning' && document.querySelector('#participants li[data-participant=%q]')?.dataset.e2ee !== 'verified'`, carol.id), 10*time.Second)
	t.Logf("Alice's warning: %q", alice.text("#e2ee-warning"))
	if n := alice.decodedFrom(carol); n != 0 {
		t.Errorf("Alice decoded %v frames of Carol's whose announcement failed", n)
	}
	carol.waitMedia(bob, "camera", true) // the honest part of the meeting goes on
}

// installForNewcomer makes the attacker rewrite, toward Alice, the
// announcement of the next participant who is neither Alice nor Bob.
func installForNewcomer(att *attacker, bob, alice *participant, f func(relay.Message) relay.Message) {
	att.mu.Lock()
	defer att.mu.Unlock()
	att.rewriteAny = func(from string) func(relay.Message) relay.Message {
		if from == bob.id || from == alice.id || from == "ghost0001" || from == "ghost0002" {
			return nil
		}
		return f
	}
}
