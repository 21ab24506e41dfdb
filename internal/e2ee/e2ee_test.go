package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

func newTestSender(t *testing.T, index uint16) *Sender {
	t.Helper()
	k, err := NewSenderKey(index, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSender(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, c := range []struct{ kid, ctr uint64 }{{0, 0}, {7, 7}, {8, 8}, {0x30000, 0}, {0xffff_ff_ff, 1<<48 - 1}, {^uint64(0), ^uint64(0)}} {
		h := AppendHeader(nil, c.kid, c.ctr)
		k, r, n, err := ParseHeader(h)
		if err != nil || k != c.kid || r != c.ctr || n != len(h) {
			t.Errorf("%#x/%#x: %#x %#x %d %v", c.kid, c.ctr, k, r, n, err)
		}
	}
}

func TestParseHeaderRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":           {},
		"short kid":       {0x90},
		"short ctr":       {0x09, 0x01},
		"non-minimal kid": {0x80, 0x05},
		"padded ctr":      {0x09, 0x00, 0x10},
	} {
		if _, _, _, err := ParseHeader(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestClearPrefix(t *testing.T) {
	for _, c := range []struct {
		codec Codec
		frame []byte
		want  int
		ok    bool
	}{
		{CodecVP8, make([]byte, 20), 10, true},
		{CodecVP8, []byte{1, 2, 3}, 1, true},
		{CodecVP8, make([]byte, 5), 0, false},
		{CodecVP8, nil, 0, false},
		{CodecVP9, nil, 0, true},
		{CodecOpus, []byte{1}, 0, true},
		{CodecH264, []byte{0, 0, 1, 0x65}, 0, false},
	} {
		n, err := c.codec.ClearPrefix(c.frame)
		if (err == nil) != c.ok || n != c.want {
			t.Errorf("%v %x: %d %v", c.codec, c.frame, n, err)
		}
	}
}

func TestFrameRoundTripAndTamper(t *testing.T) {
	s := newTestSender(t, 9)
	r := NewReceiver(9, KeyRingConfig{})
	if err := r.AddKey(s.Key()); err != nil {
		t.Fatal(err)
	}
	frames := map[Codec][]byte{
		CodecVP8:  append([]byte{0x90, 1, 2, 3, 4, 5, 6, 7, 8, 9}, bytes.Repeat([]byte{0xab}, 100)...),
		CodecVP9:  bytes.Repeat([]byte{0x82}, 50),
		CodecOpus: bytes.Repeat([]byte{0xfc}, 60),
	}
	for codec, frame := range frames {
		enc, err := s.EncryptFrame(codec, frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := s.EncryptFrame(codec, frame, nil)
		if bytes.Equal(enc, again) {
			t.Errorf("%v: identical frames gave identical ciphertexts", codec)
		}
		n, _ := codec.ClearPrefix(frame)
		if !bytes.Equal(enc[:n], frame[:n]) || bytes.Contains(enc, frame[n:n+16]) {
			t.Errorf("%v: prefix not clear or payload not encrypted", codec)
		}
		pt, err := r.DecryptFrame(codec, enc, nil)
		if err != nil || !bytes.Equal(pt, frame) {
			t.Fatalf("%v: %v", codec, err)
		}
		for i := range enc {
			bad := append([]byte{}, enc...)
			bad[i] ^= 0x04
			if _, err := r.DecryptFrame(codec, bad, nil); err == nil {
				t.Fatalf("%v: flip of byte %d accepted", codec, i)
			}
		}
		if _, err := r.DecryptFrame(codec, enc[:len(enc)-1], nil); err == nil {
			t.Errorf("%v: truncated frame accepted", codec)
		}
	}
	other := NewReceiver(10, KeyRingConfig{})
	other.AddKey(SenderKey{Index: 10, Key: s.Key().Key})
	enc, _ := s.EncryptFrame(CodecOpus, []byte("x"), nil)
	if _, err := other.DecryptFrame(CodecOpus, enc, nil); err == nil {
		t.Error("frame of sender 9 accepted by the receiver of sender 10")
	}
}

func TestRatchetAndRotation(t *testing.T) {
	clock := fakeclock.New(time.Unix(1000, 0))
	s := newTestSender(t, 4)
	old := NewReceiver(4, KeyRingConfig{Retention: 3 * time.Second, Clock: clock})
	old.AddKey(s.Key())
	before, _ := s.EncryptFrame(CodecOpus, []byte("before join"), nil)

	// A participant joins: the sender ratchets; the newcomer gets the new
	// key, the existing receiver follows by itself.
	k, fresh, err := s.Ratchet()
	if err != nil || fresh || k.Step != 1 {
		t.Fatalf("ratchet: %+v %v %v", k, fresh, err)
	}
	newcomer := NewReceiver(4, KeyRingConfig{Clock: clock})
	newcomer.AddKey(k)
	after, _ := s.EncryptFrame(CodecOpus, []byte("after join"), nil)
	if _, err := newcomer.DecryptFrame(CodecOpus, before, nil); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("newcomer decrypted media from before it joined: %v", err)
	}
	for _, r := range []*Receiver{old, newcomer} {
		if pt, err := r.DecryptFrame(CodecOpus, after, nil); err != nil || string(pt) != "after join" {
			t.Fatalf("after join: %q %v", pt, err)
		}
	}
	// A late frame under the previous step still decrypts within retention.
	if _, err := old.DecryptFrame(CodecOpus, before, nil); err != nil {
		t.Errorf("late frame: %v", err)
	}
	clock.Advance(4 * time.Second)
	if _, err := old.DecryptFrame(CodecOpus, before, nil); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old step kept past retention: %v", err)
	}

	// The newcomer leaves: the sender rotates and sends the fresh key to the
	// old receiver only.
	fk, err := s.Rotate()
	if err != nil || fk.Generation != 1 || fk.Step != 0 {
		t.Fatalf("rotate: %+v %v", fk, err)
	}
	rotated, _ := s.EncryptFrame(CodecOpus, []byte("after leave"), nil)
	if _, err := newcomer.DecryptFrame(CodecOpus, rotated, nil); err == nil {
		t.Error("removed participant decrypted after rotation")
	}
	if _, err := old.DecryptFrame(CodecOpus, rotated, nil); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("before the key message: %v", err)
	}
	if !old.Ring().Awaits(1) || old.Ring().Awaits(0) {
		t.Error("before the key message: want generation 1 awaited, 0 held")
	}
	old.AddKey(fk)
	if old.Ring().Awaits(1) {
		t.Error("generation 1 still awaited after its key message")
	}
	if pt, err := old.DecryptFrame(CodecOpus, rotated, nil); err != nil || string(pt) != "after leave" {
		t.Errorf("after leave: %v", err)
	}
}

// TestAwaits: which generations a receiver may still get a key for.
func TestAwaits(t *testing.T) {
	r := NewKeyRing(3, KeyRingConfig{})
	if !r.Awaits(0) || !r.Awaits(200) {
		t.Error("an empty ring awaits any generation")
	}
	k := newTestSender(t, 3).Key()
	k.Generation = 255
	if err := r.Add(k); err != nil {
		t.Fatal(err)
	}
	for gen, want := range map[uint8]bool{255: false, 0: true, 1: true, 126: true, 127: false, 254: false, 200: false} {
		if got := r.Awaits(gen); got != want {
			t.Errorf("holding generation 255: Awaits(%d) = %v, want %v", gen, got, want)
		}
	}
}

func TestRatchetLimits(t *testing.T) {
	s := newTestSender(t, 1)
	r := NewReceiver(1, KeyRingConfig{})
	r.AddKey(s.Key())
	for range MaxRatchetAhead + 1 {
		s.Ratchet()
	}
	enc, _ := s.EncryptFrame(CodecOpus, []byte("far"), nil)
	if _, err := r.DecryptFrame(CodecOpus, enc, nil); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("derived more than MaxRatchetAhead steps: %v", err)
	}
	if r.Ring().Awaits(0) {
		t.Error("a frame too far ahead in a held generation would wait for a key message that never comes")
	}
	k := s.Key()
	k.Step = 254
	s.setKey(k)
	if k, fresh, _ := s.Ratchet(); fresh || k.Step != 255 {
		t.Errorf("step 254 -> %+v %v", k, fresh)
	}
	if k, fresh, _ := s.Ratchet(); !fresh || k.Step != 0 || k.Generation != 1 {
		t.Errorf("step 255 -> %+v %v", k, fresh)
	}
	s.ctr = MaxCounter + 1
	if _, err := s.EncryptFrame(CodecOpus, nil, nil); !errors.Is(err, ErrCounterExhausted) {
		t.Errorf("counter: %v", err)
	}
}

// A forged frame under a derivable step must not be stored by the ring.
func TestRingDoesNotStoreUnauthenticatedDerivation(t *testing.T) {
	s := newTestSender(t, 2)
	r := NewReceiver(2, KeyRingConfig{})
	r.AddKey(s.Key())
	k1, _ := s.Key().Ratchet()
	forged := AppendHeader([]byte{}, k1.KID(), 0)
	forged = append(forged, make([]byte, 40)...)
	if _, err := r.DecryptFrame(CodecOpus, forged, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged: %v", err)
	}
	if r.Ring().Len() != 1 {
		t.Errorf("ring holds %d keys", r.Ring().Len())
	}
}

func testDevice(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := GenerateDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCredential(t *testing.T) {
	ca := testDevice(t)
	dev := testDevice(t)
	now := time.Unix(1_800_000_000, 0)
	f := CredentialFields{OrgID: "org", UserID: "u1", Account: "ada", DisplayName: "Ada", DevicePublicKey: &dev.PublicKey, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), Serial: 9}
	cred, err := IssueCredential(ca, f)
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyCredential(&ca.PublicKey, cred, now)
	if err != nil || c.UserID != "u1" || !c.DevicePublicKey.Equal(&dev.PublicKey) {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := VerifyCredential(&ca.PublicKey, cred, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	if _, err := VerifyCredential(&ca.PublicKey, cred, now.Add(-2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("not yet valid: %v", err)
	}
	if _, err := VerifyCredential(&dev.PublicKey, cred, now); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong CA: %v", err)
	}
	for i := range cred {
		bad := append([]byte{}, cred...)
		bad[i] ^= 1
		if _, err := VerifyCredential(&ca.PublicKey, bad, now); err == nil {
			t.Fatalf("flip at %d accepted", i)
		}
	}
}

func TestAnnouncements(t *testing.T) {
	ca := testDevice(t)
	now := time.Unix(1_800_000_000, 0)
	opts := VerifyOptions{MeetingID: "m1", OrgKey: &ca.PublicKey, Now: now}
	dev := testDevice(t)
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	cred, _ := IssueCredential(ca, CredentialFields{OrgID: "org", UserID: "u1", Account: "ada", DevicePublicKey: &dev.PublicKey, NotBefore: now, NotAfter: now.Add(time.Hour)})
	base := Announcement{MeetingID: "m1", ParticipantID: "p1", UserID: "u1", DisplayName: "Ada", ECDHPublicKey: eph.PublicKey(), Credential: cred, SenderIndex: 5, Timestamp: now}
	good, err := SignAnnouncement(dev, base)
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifyAnnouncement(good, opts)
	if err != nil || !v.Certified || v.UserID != "u1" || v.SenderIndex != 5 {
		t.Fatalf("%+v %v", v, err)
	}
	guest := base
	guest.UserID, guest.Credential = "", nil
	g, _ := SignAnnouncement(dev, guest)
	if v, err := VerifyAnnouncement(g, opts); err != nil || v.Certified {
		t.Errorf("guest: %v", err)
	}
	if v, err := VerifyAnnouncement(good, VerifyOptions{MeetingID: "m1", Now: now}); err != nil || v.Certified {
		t.Errorf("no org key: %v", err)
	}

	other := testDevice(t)
	cases := map[string][]byte{}
	ghost := append([]byte{}, good...)
	ghost[len(ghost)-1] ^= 1
	cases["ghost with a bad signature"] = ghost
	cases["other meeting"] = mustSign(t, dev, func(a *Announcement) { a.MeetingID = "m2" }, base)
	cases["guest claiming a user id"] = mustSign(t, dev, func(a *Announcement) { a.Credential = nil }, base)
	cases["credential of another device"] = mustSign(t, other, func(*Announcement) {}, base)
	cases["credential of another user"] = mustSign(t, dev, func(a *Announcement) { a.UserID = "u2" }, base)
	expired, _ := IssueCredential(ca, CredentialFields{OrgID: "org", UserID: "u1", Account: "ada", DevicePublicKey: &dev.PublicKey, NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})
	cases["expired credential"] = mustSign(t, dev, func(a *Announcement) { a.Credential = expired }, base)
	wrongCA, _ := IssueCredential(other, CredentialFields{OrgID: "org", UserID: "u1", Account: "ada", DevicePublicKey: &dev.PublicKey, NotBefore: now, NotAfter: now.Add(time.Hour)})
	cases["credential from another CA"] = mustSign(t, dev, func(a *Announcement) { a.Credential = wrongCA }, base)
	for name, b := range cases {
		if _, err := VerifyAnnouncement(b, opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustSign(t *testing.T, dev *ecdsa.PrivateKey, edit func(*Announcement), a Announcement) []byte {
	t.Helper()
	edit(&a)
	b, err := SignAnnouncement(dev, a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestViewHashChangesWithMembership(t *testing.T) {
	file, _ := loadVectors(t)
	var all []*VerifiedAnnouncement
	ca, _ := ParsePublicKey(file.Keys.CA.Public)
	for _, a := range file.Announcement {
		v, err := VerifyAnnouncement(a.Announcement, VerifyOptions{MeetingID: vecMeeting, OrgKey: ca, Now: time.Unix(vecNow, 0)})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, v)
	}
	views := map[[32]byte]bool{}
	for i := 1; i <= len(all); i++ {
		views[ViewHash(all[:i])] = true
	}
	if len(views) != len(all) {
		t.Errorf("%d distinct views of %d sets", len(views), len(all))
	}
	if ViewHash([]*VerifiedAnnouncement{all[2], all[0], all[1]}) != ViewHash(all) {
		t.Error("the view hash depends on order")
	}
}

func TestChannel(t *testing.T) {
	a, _ := ecdh.P256().GenerateKey(rand.Reader)
	b, _ := ecdh.P256().GenerateKey(rand.Reader)
	ab, _ := NewChannel("m", "pa", a, "pb", b.PublicKey())
	ba, _ := NewChannel("m", "pb", b, "pa", a.PublicKey())
	k, _ := NewSenderKey(7, 3)
	m1, m2 := ab.Seal(k), ab.Seal(k)
	if got, err := ba.Open(m1); err != nil || got != k {
		t.Fatalf("%v", err)
	}
	if _, err := ba.Open(m1); !errors.Is(err, ErrReplay) {
		t.Errorf("replay: %v", err)
	}
	if _, err := ba.Open(m2); err != nil {
		t.Errorf("second: %v", err)
	}
	// A message to someone else, from another meeting, or reflected back.
	c, _ := ecdh.P256().GenerateKey(rand.Reader)
	ca, _ := NewChannel("m", "pc", c, "pa", a.PublicKey())
	if _, err := ca.Open(ab.Seal(k)); err == nil {
		t.Error("message for pb opened by pc")
	}
	bOther, _ := NewChannel("m2", "pb", b, "pa", a.PublicKey())
	if _, err := bOther.Open(ab.Seal(k)); err == nil {
		t.Error("message opened in another meeting")
	}
	if _, err := ab.Open(ab.Seal(k)); err == nil {
		t.Error("own message reflected back accepted")
	}
	if _, err := NewChannel("m", "pa", a, "pa", a.PublicKey()); err == nil {
		t.Error("channel with oneself")
	}
}

func TestChat(t *testing.T) {
	dev := testDevice(t)
	s := newTestSender(t, 6)
	r := NewReceiver(6, KeyRingConfig{})
	r.AddKey(s.Key())
	now := time.UnixMilli(1_800_000_000_123)
	p1, err := s.SealChat("m", "p6", dev, ChatMessage{Kind: ChatText, Text: "hello", Timestamp: now})
	if err != nil {
		t.Fatal(err)
	}
	s.Ratchet() // the receiver follows the ratchet for chat too
	d, blob, _ := EncryptFile("a.txt", "text/plain", []byte("file body"))
	p2, _ := s.SealChat("m", "p6", dev, ChatMessage{Kind: ChatFile, File: d, Timestamp: now})
	m, err := r.OpenChat("m", "p6", &dev.PublicKey, p1)
	if err != nil || m.Text != "hello" || !m.Timestamp.Equal(now) {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := r.OpenChat("m", "p6", &dev.PublicKey, p1); !errors.Is(err, ErrReplay) {
		t.Errorf("replay: %v", err)
	}
	m, err = r.OpenChat("m", "p6", &dev.PublicKey, p2)
	if err != nil || m.File == nil || *m.File != *d {
		t.Fatalf("file: %v", err)
	}
	if got, err := DecryptFile(m.File, blob); err != nil || string(got) != "file body" {
		t.Errorf("file: %q %v", got, err)
	}
	// Forgery by another member who knows the chat key but not the device key.
	r2 := NewReceiver(6, KeyRingConfig{})
	r2.AddKey(s.Key())
	p3, _ := s.SealChat("m", "p6", testDevice(t), ChatMessage{Kind: ChatText, Text: "forged"})
	if _, err := r2.OpenChat("m", "p6", &dev.PublicKey, p3); !errors.Is(err, ErrSignature) {
		t.Errorf("forged signature: %v", err)
	}
	p4, _ := s.SealChat("m", "p6", dev, ChatMessage{Kind: ChatText, Text: "x"})
	if _, err := r2.OpenChat("m", "p7", &dev.PublicKey, p4); err == nil {
		t.Error("chat attributed to another participant")
	}
}

func TestFiles(t *testing.T) {
	for _, n := range []int{0, 1, FileChunkSize - 1, FileChunkSize, FileChunkSize + 1, 3*FileChunkSize + 7} {
		data := filePattern(n)
		d, blob, err := EncryptFile("f", "", data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecryptFile(d, blob)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d: %v", n, err)
		}
		if n > FileChunkSize {
			// Truncation at a chunk boundary, and swapped chunks.
			if _, err := DecryptFile(d, blob[:FileChunkSize+TagLen]); err == nil {
				t.Errorf("%d: truncated blob accepted", n)
			}
		}
		if n > 2*FileChunkSize {
			sw := append(append([]byte{}, blob[FileChunkSize+TagLen:2*(FileChunkSize+TagLen)]...), blob[:FileChunkSize+TagLen]...)
			sw = append(sw, blob[2*(FileChunkSize+TagLen):]...)
			if _, err := DecryptFile(d, sw); err == nil {
				t.Errorf("%d: reordered blob accepted", n)
			}
		}
		other := *d
		other.ID[0] ^= 1
		if _, err := DecryptFile(&other, blob); err == nil {
			t.Errorf("%d: blob accepted under another file id", n)
		}
	}
}

func BenchmarkEncryptFrame(b *testing.B) {
	k, _ := NewSenderKey(1, 0)
	s, _ := NewSender(k)
	frame := make([]byte, 1200)
	dst := make([]byte, 0, 1400)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := s.EncryptFrame(CodecVP8, frame, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptFrame(b *testing.B) {
	k, _ := NewSenderKey(1, 0)
	s, _ := NewSender(k)
	r := NewReceiver(1, KeyRingConfig{})
	r.AddKey(k)
	enc, _ := s.EncryptFrame(CodecVP8, make([]byte, 1200), nil)
	dst := make([]byte, 0, 1400)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := r.DecryptFrame(CodecVP8, enc, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
