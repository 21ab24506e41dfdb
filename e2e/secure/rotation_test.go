package secure

import (
	"errors"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/server"
	"conclave/internal/testutil/wait"
)

// TestRotationAndLateJoiner: a late joiner cannot decrypt what was sent
// before it joined, and a participant who left cannot decrypt what is sent
// after the rotation, with any key it ever held; the others can.
func TestRotationAndLateJoiner(t *testing.T) {
	tp := &tap{}
	srv := startServer(t, server.Options{Tap: tp}, nil, "board")
	alice := join(t, srv, "board", "Alice", joinOpts{video: &repeatSource{frame: tinyKeyFrame(), codec: client.CodecVP8}})
	bob := join(t, srv, "board", "Bob", joinOpts{})
	carol := join(t, srv, "board", "Carol", joinOpts{})
	waitVerified(t, alice, bob, carol)
	waitDecrypted(t, carol, alice, 10)
	aliceID := alice.Self().ID
	// Frames captured from here on were sent while Alice, Bob and Carol
	// all held Alice's key (Bob's control decryption below needs that).
	allIn := time.Now()

	// A late joiner.
	time.Sleep(time.Second) // some media before Dave
	beforeDave := time.Now()
	dave := join(t, srv, "board", "Dave", joinOpts{})
	waitVerified(t, alice, bob, carol, dave)
	waitDecrypted(t, dave, alice, 10)
	var early []wireFrame
	for _, f := range tp.vp8Frames(aliceID) {
		if f.at.After(allIn) && f.at.Before(beforeDave) {
			early = append(early, f)
		}
	}
	if len(early) < 10 {
		t.Fatalf("%d frames captured before Dave joined", len(early))
	}
	checkUndecryptable(t, "Dave (joined later)", dave, aliceID, early)
	checkDecryptable(t, "Bob", bob, aliceID, early)

	// Carol leaves; after the rotation she cannot read Alice any more.
	if err := carol.Leave(); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	wait.For(t, "Alice to switch to a new generation", 10*time.Second, func() bool {
		for _, e := range alice.keyEvents(secure.Switched) {
			if e.Key.Generation == 1 {
				return true
			}
		}
		return false
	})
	wait.For(t, "Bob and Dave to decrypt the new generation", 10*time.Second, func() bool {
		return decryptedGeneration(bob, aliceID, 1) && decryptedGeneration(dave, aliceID, 1)
	})
	var late []wireFrame
	wait.For(t, "frames of the new generation on the wire", 10*time.Second, func() bool {
		late = late[:0]
		for _, f := range tp.vp8Frames(aliceID) {
			if _, gen, _ := kidOf(t, f.data); f.at.After(left) && gen >= 1 {
				late = append(late, f)
			}
		}
		return len(late) >= 10
	})
	checkUndecryptable(t, "Carol (left)", carol, aliceID, late)
	checkDecryptable(t, "Bob", bob, aliceID, late)
	checkDecryptable(t, "Dave", dave, aliceID, late)
}

// kidOf reads the generation and step of an encrypted VP8 frame.
func kidOf(t *testing.T, frame []byte) (index uint16, gen, step uint8) {
	t.Helper()
	n, err := e2ee.CodecVP8.ClearPrefix(frame)
	if err != nil {
		t.Fatal(err)
	}
	kid, _, _, err := e2ee.ParseHeader(frame[n:])
	if err != nil {
		t.Fatal(err)
	}
	index, gen, step, _ = e2ee.SplitKID(kid)
	return index, gen, step
}

// decryptedGeneration reports whether m decrypted a frame of id under
// generation gen.
func decryptedGeneration(m *member, id string, gen uint8) bool {
	for _, e := range m.keyEvents(secure.FirstDecrypt) {
		if e.Participant == id && e.Key.Generation == gen {
			return true
		}
	}
	return false
}

// heldKeys returns every key of sender id that m ever received, and what
// its key ring still holds of the generations and steps of frames.
func heldKeys(m *member, id string) []e2ee.SenderKey {
	var keys []e2ee.SenderKey
	for _, e := range m.keyEvents(secure.PeerKey) {
		if e.Participant == id {
			keys = append(keys, e.Key)
		}
	}
	return keys
}

// checkUndecryptable: none of frames opens with the keys m holds for id:
// not by its key ring (as the client would try), and not by the keys it
// ever received (see undecryptable).
func checkUndecryptable(t *testing.T, who string, m *member, id string, frames []wireFrame) {
	t.Helper()
	keys := heldKeys(m, id)
	if len(keys) == 0 {
		t.Fatalf("%s never held a key of %s", who, id)
	}
	if ring := m.sec.KeyRing(id); ring != nil {
		for i, f := range frames {
			_, gen, step := kidOf(t, f.data)
			if _, err := ring.Key(gen, step); !errors.Is(err, e2ee.ErrUnknownKey) {
				t.Fatalf("%s: frame %d (generation %d step %d): key ring answers %v", who, i, gen, step, err)
			}
		}
	}
	undecryptable(t, who, keys, frames)
}

// undecryptable: none of frames opens with keys: not by a receiver given
// all of them, and not by any of them or their next 16 ratchet steps tried
// directly under each frame's KID.
func undecryptable(t *testing.T, who string, keys []e2ee.SenderKey, frames []wireFrame) {
	t.Helper()
	r := e2ee.NewReceiver(keys[0].Index, e2ee.KeyRingConfig{})
	for _, k := range keys {
		if err := r.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	var candidates []e2ee.SenderKey
	for _, k := range keys {
		for range e2ee.MaxRatchetAhead + 1 {
			candidates = append(candidates, k)
			next, err := k.Ratchet()
			if err != nil {
				break
			}
			k = next
		}
	}
	for i, f := range frames {
		_, gen, step := kidOf(t, f.data)
		if _, err := r.DecryptFrame(e2ee.CodecVP8, f.data, nil); err == nil {
			t.Fatalf("%s decrypts frame %d (generation %d step %d)", who, i, gen, step)
		}
		n, _ := e2ee.CodecVP8.ClearPrefix(f.data)
		kid, _, _, _ := e2ee.ParseHeader(f.data[n:])
		for _, k := range candidates {
			sf, err := e2ee.DeriveSFrameKey(k.Key[:], kid)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sf.Open(nil, f.data[:n], f.data[n:]); err == nil {
				t.Fatalf("%s opens frame %d with a key it held (generation %d step %d)", who, i, k.Generation, k.Step)
			}
		}
	}
	t.Logf("%s: %d frames, %d keys held (%d candidates tried): none decrypts", who, len(frames), len(keys), len(candidates))
}

// checkDecryptable is the control: a participant entitled to frames opens
// them with the keys it received.
func checkDecryptable(t *testing.T, who string, m *member, id string, frames []wireFrame) {
	t.Helper()
	keys := heldKeys(m, id)
	r := e2ee.NewReceiver(keys[0].Index, e2ee.KeyRingConfig{})
	for _, k := range keys {
		r.AddKey(k)
	}
	for i, f := range frames {
		if _, err := r.DecryptFrame(e2ee.CodecVP8, f.data, nil); err != nil {
			t.Fatalf("%s cannot decrypt frame %d: %v", who, i, err)
		}
	}
}
