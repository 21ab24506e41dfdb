package secure

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"conclave/internal/e2ee"
)

// TestRelayCannotGrindCode is the malicious relay of issue 11 against two
// native sessions: Alice and Bob are each alone with the relay, which
// shows Alice a fake Bob and Bob a fake Alice (same participant ids, the
// relay's keys). For each attempt it runs the birthday search that breaks
// the version-1 code (varying its fakes' time stamps until the two views
// hash alike), announces the pair, and plays its fakes' side of the
// round as well as it can: it commits first and reveals after the victim.
// Each attempt is a visible epoch: the fakes leave and come back. With a
// 7-digit code, the two victims' codes differ in all N attempts, and each
// shows its own code.
func TestRelayCannotGrindCode(t *testing.T) {
	const attempts = 20
	const digits = 7
	ra, rb := newRelay(t), newRelay(t)
	var na, nb notices
	alice := ra.join("p-alice", Config{Name: "Alice", OnNotice: na.add, CodeDigits: digits})
	bob := rb.join("p-bob", Config{Name: "Bob", OnNotice: nb.add, CodeDigits: digits})
	relayDev := mustDevice(t)
	for n := range attempts {
		fakeB, fakeA, tries := birthdayPair(t, alice.own, bob.own, relayDev, digits)
		if fakeB == nil {
			t.Fatalf("attempt %d: the search found no collision in %d tries", n, tries)
		}
		codeA := playFake(t, ra, alice, fakeB, relayDev, digits)
		codeB := playFake(t, rb, bob, fakeA, relayDev, digits)
		if codeA == "" || codeB == "" {
			t.Fatalf("attempt %d: a victim shows no code (%q, %q)", n, codeA, codeB)
		}
		if codeA == codeB {
			t.Fatalf("attempt %d: Alice and Bob both read %s with different views", n, codeA)
		}
		// The next attempt needs a new epoch on both sides: the fakes go.
		alice.onLeft("p-bob")
		bob.onLeft("p-alice")
		ra.pump()
		rb.pump()
	}
	gone := 0
	for _, x := range na.all() {
		if x.Kind == Gone {
			gone++
		}
	}
	if gone != attempts {
		t.Errorf("Alice saw %d leaves, want one per attempt (%d)", gone, attempts)
	}
	t.Logf("%d attempts, each with a version-1 collision: Alice's and Bob's codes differed every time", attempts)
}

// legacyCode is the version-1 derivation (the regression fixture of
// internal/e2ee/grind_test.go), for the relay's search.
func legacyCode(anns []*e2ee.VerifiedAnnouncement, digits int) string {
	sorted := slices.Clone(anns)
	slices.SortFunc(sorted, func(a, b *e2ee.VerifiedAnnouncement) int {
		if c := strings.Compare(a.ParticipantID, b.ParticipantID); c != 0 {
			return c
		}
		return bytes.Compare(a.Body, b.Body)
	})
	h := sha256.New()
	h.Write([]byte("Conclave E2EE v1 meeting code"))
	var n [4]byte
	for _, a := range sorted {
		binary.BigEndian.PutUint32(n[:], uint32(len(a.Body)))
		h.Write(n[:])
		h.Write(a.Body)
	}
	mod := uint64(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprint(binary.BigEndian.Uint64(h.Sum(nil)[:8]) % mod)
}

// birthdayPair searches fake announcements (a fake Bob for Alice, a fake
// Alice for Bob, signed by the relay) whose version-1 codes collide.
func birthdayPair(t *testing.T, alice, bob *e2ee.VerifiedAnnouncement, dev *ecdsa.PrivateKey, digits int) (fakeB, fakeA []byte, tries int) {
	t.Helper()
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	tmpl := func(pid, name string, ts int64) e2ee.Announcement {
		return e2ee.Announcement{MeetingID: alice.MeetingID, ParticipantID: pid, DisplayName: name, ECDHPublicKey: eph.PublicKey(),
			DevicePublicKey: &dev.PublicKey, SenderIndex: 7, Timestamp: time.UnixMilli(ts)}
	}
	body := func(a e2ee.Announcement) *e2ee.VerifiedAnnouncement {
		b, err := e2ee.EncodeAnnouncementBody(a)
		if err != nil {
			t.Fatal(err)
		}
		v := &e2ee.VerifiedAnnouncement{}
		v.Announcement, v.Body = a, b
		return v
	}
	start := time.Now().UnixMilli()
	seen := map[string]int64{}
	const n = 1 << 14
	for i := range int64(n) {
		seen[legacyCode([]*e2ee.VerifiedAnnouncement{alice, body(tmpl("p-bob", "Bob", start+i))}, digits)] = start + i
	}
	for j := range int64(n) {
		fa := tmpl("p-alice", "Alice", start+j)
		if ts, ok := seen[legacyCode([]*e2ee.VerifiedAnnouncement{body(fa), bob}, digits)]; ok {
			pb, _ := e2ee.SignAnnouncement(dev, tmpl("p-bob", "Bob", ts))
			pa, _ := e2ee.SignAnnouncement(dev, fa)
			return pb, pa, n + int(j) + 1
		}
	}
	return nil, nil, 2 * n
}

// playFake announces the relay's fake to the victim and plays the fake's
// side of the round: it commits as soon as the victim's commit names the
// view with the fake, and reveals after the victim did. It returns the
// code the victim shows.
func playFake(t *testing.T, r *relay, victim *Session, fakePayload []byte, dev *ecdsa.PrivateKey, digits int) string {
	t.Helper()
	fake, err := e2ee.VerifyAnnouncement(fakePayload, e2ee.VerifyOptions{MeetingID: r.meeting})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	from := len(r.out)
	r.queue = append(r.queue, delivery{"announce", fake.ParticipantID, victim.self, fakePayload})
	r.mu.Unlock()
	r.pump()
	view := []*e2ee.VerifiedAnnouncement{victim.own, fake}
	fs := e2ee.NewRoundState(r.meeting, fake.ParticipantID, dev, nil, digits)
	commit, err := fs.Begin(view, e2ee.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	// The relay's commit goes first: its nonce is fixed before it sees the victim's.
	r.mu.Lock()
	r.queue = append(r.queue, delivery{"verify", fake.ParticipantID, victim.self, commit})
	r.mu.Unlock()
	r.pump()
	r.mu.Lock()
	sent := append([]delivery(nil), r.out[from:]...)
	r.mu.Unlock()
	var revealed bool
	for _, d := range sent {
		if d.kind != "verify" || d.from != victim.self {
			continue
		}
		switch {
		case e2ee.IsCommit(d.payload):
			if _, err := fs.OnCommit(victim.self, d.payload); err != nil {
				t.Fatalf("the victim's commit: %v", err)
			}
		case e2ee.IsReveal(d.payload):
			revealed = true
			if err := fs.OnReveal(victim.self, d.payload); err != nil {
				t.Fatalf("the victim's reveal: %v", err)
			}
		}
	}
	if !revealed {
		t.Fatal("the victim did not reveal after holding the relay's commit")
	}
	reveal := fs.Reveal()
	if reveal == nil {
		t.Fatal("the relay cannot reveal")
	}
	r.mu.Lock()
	r.queue = append(r.queue, delivery{"verify", fake.ParticipantID, victim.self, reveal})
	r.mu.Unlock()
	r.pump()
	if fs.Code() != victim.MeetingCode() {
		t.Fatalf("the relay's fake computes %q, the victim shows %q", fs.Code(), victim.MeetingCode())
	}
	return victim.MeetingCode()
}
