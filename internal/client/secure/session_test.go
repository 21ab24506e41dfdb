package secure

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/e2ee"
	"conclave/internal/testutil/wait"
)

// notices records a session's notices.
type notices struct {
	mu   sync.Mutex
	list []Notice
}

func (n *notices) add(x Notice) {
	n.mu.Lock()
	n.list = append(n.list, x)
	n.mu.Unlock()
}

func (n *notices) warnings() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, x := range n.list {
		if x.Kind == Warning {
			out = append(out, x.Text)
		}
	}
	return out
}

func sameCodes(t *testing.T, ss ...*Session) {
	t.Helper()
	for _, s := range ss[1:] {
		if s.MeetingCode() != ss[0].MeetingCode() || s.MeetingCode() == "" {
			t.Fatalf("meeting codes differ: %q vs %q", s.MeetingCode(), ss[0].MeetingCode())
		}
	}
}

func mustDecrypt(t *testing.T, at *Session, from string, frame []byte) {
	t.Helper()
	if err := decrypt(at, from, frame); err != nil {
		t.Fatalf("%s cannot decrypt a frame of %s: %v", at.self, from, err)
	}
}

// TestJoinSchedule: participants joining one by one all list each other
// verified, show one meeting code and decrypt each other; a newcomer gets
// a ratcheted key only, so it cannot decrypt an earlier frame.
func TestJoinSchedule(t *testing.T) {
	r := newRelay(t)
	a := r.join("a", Config{})
	b := r.join("b", Config{})
	r.pump()
	early := encrypt(t, a)
	c := r.join("c", Config{})
	r.pump()
	r.settle()
	sameCodes(t, a, b, c)
	for _, s := range []*Session{a, b, c} {
		ps := s.Participants()
		if len(ps) != 3 {
			t.Fatalf("%s lists %d participants", s.self, len(ps))
		}
		for _, p := range ps {
			if !p.Verified || p.Certified {
				t.Errorf("%s sees %+v, want verified, not certified", s.self, p)
			}
		}
	}
	for _, from := range []*Session{a, b, c} {
		f := encrypt(t, from)
		for _, to := range []*Session{a, b, c} {
			if to != from {
				mustDecrypt(t, to, from.self, f)
			}
		}
	}
	if err := decrypt(c, "a", early); !errors.Is(err, e2ee.ErrUnknownKey) {
		t.Errorf("newcomer decrypted a frame from before it joined: %v", err)
	}
	// a ratcheted twice (for b and c); b once (for c); c never.
	if k := a.active.Load().Key(); k.Step != 2 || k.Generation != 0 {
		t.Errorf("a's key is at %d/%d, want generation 0 step 2", k.Generation, k.Step)
	}
	if k := c.active.Load().Key(); k.Step != 0 {
		t.Errorf("c's key is at step %d, want 0", k.Step)
	}
	// The newcomer's key messages: one from each, nothing else.
	if n := len(r.keysTo("c")); n != 2 {
		t.Errorf("c got %d key messages, want 2", n)
	}
}

// TestLeaveRotation: after a leave and the debounce, each remaining sender
// sends a fresh generation to the others, switches after the delay, and
// the participant who left cannot decrypt it; two leaves in the debounce
// cost one rotation.
func TestLeaveRotation(t *testing.T) {
	r := newRelay(t)
	a := r.join("a", Config{})
	b := r.join("b", Config{})
	c := r.join("c", Config{})
	d := r.join("d", Config{})
	r.pump()
	r.leave("c")
	r.clock.Advance(DefaultRotationDebounce / 2)
	r.leave("d")
	r.clock.Advance(DefaultRotationDebounce/2 - time.Millisecond)
	if a.pending != nil {
		t.Fatal("rotated before the debounce")
	}
	r.clock.Advance(2 * time.Millisecond) // just past the debounce after the first leave
	if a.pending == nil || b.pending == nil {
		t.Fatal("no rotation after the debounce")
	}
	r.pump()
	old := encrypt(t, a)
	mustDecrypt(t, b, "a", old) // still the old key until the switch
	r.clock.Advance(DefaultSwitchDelay)
	f := encrypt(t, a)
	if k := a.active.Load().Key(); k.Generation != 1 {
		t.Fatalf("a's generation is %d, want 1 (one rotation for two leaves)", k.Generation)
	}
	mustDecrypt(t, b, "a", f)
	for _, gone := range []*Session{c, d} {
		if err := decrypt(gone, "a", f); !errors.Is(err, e2ee.ErrUnknownKey) {
			t.Errorf("%s decrypts after leaving: %v", gone.self, err)
		}
	}
	r.settle()
	sameCodes(t, a, b)
}

// TestFramesWaitForTheirKey: a frame of a rotated generation that comes
// before its key message waits for it and then decrypts; when the key
// message does not come, the frame is dropped after KeyWait, and the
// frames after it are dropped at once until a key message comes.
func TestFramesWaitForTheirKey(t *testing.T) {
	const wait = 400 * time.Millisecond
	r := newRelay(t)
	a := r.join("a", Config{})
	b := r.join("b", Config{KeyWait: wait})
	r.join("c", Config{})
	r.join("d", Config{})
	r.pump()
	var held []delivery
	r.filter = func(d delivery) bool {
		if d.kind == "key" && d.to == "b" {
			held = append(held, d)
			return false
		}
		return true
	}
	rotate := func(gone string) []byte {
		t.Helper()
		r.leave(gone)
		r.clock.Advance(DefaultRotationDebounce + DefaultSwitchDelay)
		r.pump()
		if len(held) == 0 {
			t.Fatal("no key message to b was held back")
		}
		return encrypt(t, a)
	}
	// decryptAt decrypts f at b on a goroutine. When a wait is expected,
	// it returns once the frame waits (a timer of that length is armed);
	// otherwise it checks that the frame fails at once.
	decryptAt := func(f []byte, wait time.Duration) <-chan error {
		t.Helper()
		armed := make(chan time.Duration, 1)
		r.clock.NotifyArmed(armed)
		defer r.clock.NotifyArmed(nil)
		done := make(chan error, 1)
		go func() { done <- decrypt(b, "a", f) }()
		select {
		case d := <-armed:
			if wait == 0 || d != wait {
				t.Fatalf("the frame waits %v, want %v", d, wait)
			}
		case err := <-done:
			if wait != 0 {
				t.Fatalf("the frame did not wait for its key: %v", err)
			}
			done <- err
		}
		return done
	}

	// The key message comes while the frame waits.
	done := decryptAt(rotate("c"), wait)
	r.clock.Advance(wait / 2)
	r.filter = nil
	r.queue = append(r.queue, held...)
	held = nil
	r.pump()
	if err := <-done; err != nil {
		t.Fatalf("the waiting frame did not decrypt once its key came: %v", err)
	}

	// The key message is lost: the first frame waits KeyWait, one on
	// another track shares the rest of that wait, later ones do not wait.
	r.filter = func(d delivery) bool {
		if d.kind == "key" && d.to == "b" {
			held = append(held, d)
			return false
		}
		return true
	}
	f := rotate("d")
	first := decryptAt(f, wait)
	r.clock.Advance(wait / 4)
	second := decryptAt(f, wait-wait/4)
	r.clock.Advance(wait - wait/4)
	for _, c := range []<-chan error{first, second, decryptAt(f, 0)} {
		if err := <-c; !errors.Is(err, e2ee.ErrUnknownKey) {
			t.Fatalf("after the wait: %v, want ErrUnknownKey", err)
		}
	}
	var noKey uint64
	for _, st := range b.Stats() {
		if st.Participant == "a" {
			noKey = st.NoKey
		}
	}
	if noKey != 3 {
		t.Errorf("b counts %d frames of a without a key, want 3", noKey)
	}
}

// TestKeyRecovery: key messages to b are lost; b's frames from a fail;
// after KeyRequestAfter b asks, a answers, b decrypts. Replays are
// refused and counted.
func TestKeyRecovery(t *testing.T) {
	r := newRelay(t)
	a := r.join("a", Config{})
	r.pump()
	drop := true
	var replay []delivery
	r.filter = func(d delivery) bool {
		if d.kind == "key" && d.from == "a" && d.to == "b" {
			if !isKeyRequest(d.payload) {
				replay = append(replay, d)
				return !drop
			}
		}
		return true
	}
	b := r.join("b", Config{})
	r.settle()
	if err := decrypt(b, "a", encrypt(t, a)); !errors.Is(err, e2ee.ErrUnknownKey) {
		t.Fatalf("decrypted without the key message: %v", err)
	}
	r.clock.Advance(DefaultKeyRequestAfter)
	if err := decrypt(b, "a", encrypt(t, a)); err == nil {
		t.Fatal("decrypted without the key message")
	}
	wait.For(t, "the condition", 5*time.Second, func() bool { return r.queued() > 0 }) // the request goes out on a goroutine
	drop = false
	r.pump()
	mustDecrypt(t, b, "a", encrypt(t, a))
	st := stats(b, "a")
	if st.KeyRequestsSent != 1 || st.NoKey != 2 || st.Decrypted != 1 {
		t.Errorf("b's counts of a: %+v", st)
	}
	if st := stats(a, "b"); st.KeyRequestsReceived != 1 {
		t.Errorf("a's counts of b: %+v", st)
	}
	// The relay replays every key message it saw: all refused.
	for _, d := range replay {
		b.onKey(d.from, d.payload)
	}
	if st := stats(b, "a"); st.Replays != uint64(len(replay)) {
		t.Errorf("replays counted %d, want %d", st.Replays, len(replay))
	}
}

func stats(s *Session, id string) Stats {
	for _, st := range s.Stats() {
		if st.Participant == id {
			return st
		}
	}
	return Stats{}
}

// TestRefusedAnnouncements: forged, misdirected or foreign announcements
// are refused with a warning; the sender is not listed and gets no key.
func TestRefusedAnnouncements(t *testing.T) {
	r := newRelay(t)
	var n notices
	a := r.join("a", Config{OnNotice: n.add})
	r.pump()
	ghost, _ := e2ee.GenerateDeviceKey()
	eph := mustECDH(t)
	sign := func(meeting, pid string) []byte {
		p, err := e2ee.SignAnnouncement(ghost, e2ee.Announcement{MeetingID: meeting, ParticipantID: pid,
			DisplayName: "Ghost", ECDHPublicKey: eph.PublicKey(), SenderIndex: 7, Timestamp: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := sign(r.meeting, "g")
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-70] ^= 1 // inside the body
	cases := []struct {
		name, from string
		payload    []byte
		want       string
	}{
		{"other meeting", "g", sign("m-0", "g"), "meeting"},
		{"from is not the participant", "h", good, "relayed as participant h"},
		{"bad signature", "g", tampered, "signature"},
		{"garbage", "g", []byte("not an announcement"), "malformed"},
	}
	for _, c := range cases {
		a.onAnnounce(c.from, c.payload)
		w := n.warnings()
		if len(w) == 0 || !strings.Contains(w[len(w)-1], c.want) {
			t.Errorf("%s: warnings %q, want one about %q", c.name, w, c.want)
		}
	}
	if len(a.Participants()) != 1 || r.queued() != 0 {
		t.Errorf("a lists %+v and sent %d messages", a.Participants(), len(r.queue))
	}
	// With RequireCertified, a valid but uncertified announcement is
	// listed (and in the code), but gets no key.
	r2 := newRelay(t)
	var n2 notices
	strict := r2.join("s", Config{RequireCertified: true, OnNotice: n2.add})
	guest := r2.join("guest", Config{})
	r2.pump()
	if p, ok := strict.Participant("guest"); !ok || p.Certified {
		t.Errorf("strict sees the guest as %+v", p)
	}
	if len(r2.keysTo("guest")) != 0 {
		t.Error("a strict participant sent a key to a guest")
	}
	if err := decrypt(guest, "s", encrypt(t, strict)); err == nil {
		t.Error("the guest decrypts the strict participant")
	}
}

// TestNewcomerDuringRotation: a participant verified while a rotated key
// is pending gets the next step of the pending key; the others derive it,
// and after the switch everyone decrypts.
func TestNewcomerDuringRotation(t *testing.T) {
	r := newRelay(t)
	a := r.join("a", Config{})
	b := r.join("b", Config{})
	r.join("c", Config{})
	r.pump()
	r.leave("c")
	r.clock.Advance(DefaultRotationDebounce)
	if a.pending == nil {
		t.Fatal("no pending key after the debounce")
	}
	d := r.join("d", Config{})
	r.pump()
	if k := a.pending.Key(); k.Generation != 1 || k.Step != 1 {
		t.Fatalf("a's pending key is %d/%d, want generation 1 step 1", k.Generation, k.Step)
	}
	mustDecrypt(t, b, "a", encrypt(t, a)) // old generation until the switch
	r.clock.Advance(DefaultSwitchDelay)
	f := encrypt(t, a)
	mustDecrypt(t, b, "a", f)
	mustDecrypt(t, d, "a", f)
	r.settle()
	sameCodes(t, a, b, d)
}

// TestChangedAnnouncement: a participant whose announcement changes
// (other keys under the same id) is warned about, treated as a newcomer
// (ratchet), and the holder of the old keys is rotated out.
func TestChangedAnnouncement(t *testing.T) {
	r := newRelay(t)
	var n notices
	a := r.join("a", Config{OnNotice: n.add})
	b := r.join("b", Config{})
	r.pump()
	before := a.active.Load().Key()
	// b starts over under the same id (as a server could make it seem).
	b2, _ := New(Config{Device: mustDevice(t), Name: "b", Clock: r.clock})
	b2.Attach(relayTransport{r, "b"})
	r.mu.Lock()
	r.members["b"] = b2
	r.mu.Unlock()
	b2.onWelcome("b", r.meeting, []string{"a"})
	r.mu.Lock()
	r.queue = append(r.queue, delivery{"announce", "a", "b", r.anns["a"]})
	r.mu.Unlock()
	r.pump()
	if w := n.warnings(); len(w) != 1 || !strings.Contains(w[0], "announced new keys") {
		t.Fatalf("warnings %q", w)
	}
	if k := a.active.Load().Key(); k.Step != before.Step+1 {
		t.Errorf("a did not ratchet for the new keys: %d -> %d", before.Step, k.Step)
	}
	r.clock.Advance(DefaultRotationDebounce + DefaultSwitchDelay)
	r.pump()
	f := encrypt(t, a)
	if k := a.active.Load().Key(); k.Generation != 1 {
		t.Errorf("a did not rotate the old keys out: generation %d", k.Generation)
	}
	mustDecrypt(t, b2, "a", f)
	if err := decrypt(b, "a", f); err == nil {
		t.Error("the holder of b's old keys still decrypts a")
	}
}

func (n *notices) all() []Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Notice(nil), n.list...)
}
