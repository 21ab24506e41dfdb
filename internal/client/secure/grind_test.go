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
	r.settle() // the victim commits once its view is quiet
	view := []*e2ee.VerifiedAnnouncement{victim.own, fake}
	fs := e2ee.NewRoundState(r.meeting, fake.ParticipantID, dev, nil, digits)
	commit, err := fs.Begin(view, e2ee.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	// The victim committed on seeing the fake: the fake joins its round
	// (the round number is public) and commits before the victim reveals.
	feedVictim(t, r, victim, fs, from)
	if p := fs.Pending(); p != nil {
		commit = p
	}
	from = r.sentCount()
	r.send("verify", fake.ParticipantID, victim.self, commit)
	if !feedVictim(t, r, victim, fs, from) {
		t.Fatal("the victim did not reveal after holding the relay's commit")
	}
	reveal := fs.Reveal()
	if reveal == nil {
		t.Fatal("the relay cannot reveal")
	}
	r.send("verify", fake.ParticipantID, victim.self, reveal)
	if fs.Code() != victim.MeetingCode() {
		t.Fatalf("the relay's fake computes %q, the victim shows %q", fs.Code(), victim.MeetingCode())
	}
	return victim.MeetingCode()
}

// feedVictim gives the fake's round state what the victim sent since
// message from; it reports whether the victim revealed.
func feedVictim(t *testing.T, r *relay, victim *Session, fs *e2ee.RoundState, from int) (revealed bool) {
	t.Helper()
	r.mu.Lock()
	sent := append([]delivery(nil), r.out[from:]...)
	r.mu.Unlock()
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
	return revealed
}

// lastReveal returns the nonce of the victim's latest reveal.
func lastReveal(t *testing.T, r *relay, victim *Session) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.out) - 1; i >= 0; i-- {
		d := r.out[i]
		if d.kind == "verify" && d.from == victim.self && e2ee.IsReveal(d.payload) {
			v, err := e2ee.ParseReveal(d.payload)
			if err != nil {
				t.Fatal(err)
			}
			return v.Nonce
		}
	}
	t.Fatal("the victim never revealed")
	return nil
}

// TestRelayCannotRecommitAfterReveal: the relay of TestRelayCannotGrindCode
// goes further. Once each victim revealed its nonce, it searches two
// nonces of its own that give both victims one code, commits its fakes
// again in a higher round, and reveals them. The victims move to that
// round with fresh nonces (they send a new commit and a new reveal), so
// the relay's search is worthless: in every attempt their codes differ.
func TestRelayCannotRecommitAfterReveal(t *testing.T) {
	const attempts = 20
	const digits = 7
	ra, rb := newRelay(t), newRelay(t)
	alice := ra.join("p-alice", Config{Name: "Alice", CodeDigits: digits})
	bob := rb.join("p-bob", Config{Name: "Bob", CodeDigits: digits})
	relayDev := mustDevice(t)
	for n := range attempts {
		fakeB, fakeA, _ := birthdayPair(t, alice.own, bob.own, relayDev, digits)
		if fakeB == nil {
			t.Fatalf("attempt %d: no collision", n)
		}
		playFake(t, ra, alice, fakeB, relayDev, digits)
		playFake(t, rb, bob, fakeA, relayDev, digits)
		fb, _ := e2ee.VerifyAnnouncement(fakeB, e2ee.VerifyOptions{MeetingID: ra.meeting})
		fa, _ := e2ee.VerifyAnnouncement(fakeA, e2ee.VerifyOptions{MeetingID: rb.meeting})
		viewA := e2ee.ViewHash([]*e2ee.VerifiedAnnouncement{alice.own, fb})
		viewB := e2ee.ViewHash([]*e2ee.VerifiedAnnouncement{fa, bob.own})
		nA, nB := lastReveal(t, ra, alice), lastReveal(t, rb, bob)
		seen := map[string][]byte{}
		var x, y []byte
		for i := 0; i < 1<<14 && x == nil; i++ {
			c := sha256.Sum256(fmt.Appendf(nil, "x %d %d", n, i))
			seen[e2ee.MeetingCodeV2(viewA, e2ee.Checkpoint{}, []e2ee.RoundNonce{{ParticipantID: "p-alice", Nonce: nA}, {ParticipantID: "p-bob", Nonce: c[:]}}, digits)] = c[:]
		}
		for j := 0; j < 1<<14 && x == nil; j++ {
			c := sha256.Sum256(fmt.Appendf(nil, "y %d %d", n, j))
			if hit, ok := seen[e2ee.MeetingCodeV2(viewB, e2ee.Checkpoint{}, []e2ee.RoundNonce{{ParticipantID: "p-alice", Nonce: c[:]}, {ParticipantID: "p-bob", Nonce: nB}}, digits)]; ok {
				x, y = hit, c[:]
			}
		}
		if x == nil {
			t.Fatalf("attempt %d: the nonce search found no collision", n)
		}
		recommit := func(r *relay, victim *Session, fake *e2ee.VerifiedAnnouncement, view [32]byte, nonce []byte) string {
			round := uint32(1 << 20 * (n + 1))
			c, err := e2ee.SignCommit(relayDev, e2ee.Commit{MeetingID: r.meeting, ParticipantID: fake.ParticipantID, Round: round, View: view}, nonce)
			if err != nil {
				t.Fatal(err)
			}
			rev, _ := e2ee.EncodeReveal(e2ee.Reveal{MeetingID: r.meeting, ParticipantID: fake.ParticipantID, Round: round, Nonce: nonce})
			from := r.sentCount()
			r.send("verify", fake.ParticipantID, victim.self, c)
			r.send("verify", fake.ParticipantID, victim.self, rev)
			r.settle() // a move waits for a token when the victim committed often
			moved := false
			r.mu.Lock()
			for _, d := range r.out[from:] {
				if d.kind == "verify" && d.from == victim.self && e2ee.IsCommit(d.payload) {
					if pc, _ := e2ee.ParseCommit(d.payload); pc != nil && pc.Round == round {
						moved = true
					}
				}
			}
			r.mu.Unlock()
			if !moved {
				t.Errorf("attempt %d: %s did not move to the relay's round with a new commit", n, victim.self)
			}
			return victim.MeetingCode()
		}
		codeA := recommit(ra, alice, fb, viewA, x)
		codeB := recommit(rb, bob, fa, viewB, y)
		if codeA != "" && codeA == codeB {
			t.Fatalf("attempt %d: the relay chose its nonces after the victims revealed: both read %s", n, codeA)
		}
		alice.onLeft("p-bob")
		bob.onLeft("p-alice")
		ra.pump()
		rb.pump()
	}
}

// sentCount is how many messages the sessions sent so far.
func (r *relay) sentCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.out)
}

// send delivers one message of the relay's making and pumps.
func (r *relay) send(kind, from, to string, payload []byte) {
	r.mu.Lock()
	r.queue = append(r.queue, delivery{kind, from, to, payload})
	r.mu.Unlock()
	r.pump()
}
