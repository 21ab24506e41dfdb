package secure

import (
	"bytes"
	"path/filepath"
	"testing"

	"conclave/internal/client"
	"conclave/internal/server"
)

// TestTap: what the SFU forwards is not the picture. Alice sends the
// clip's first key frame over and over; the tap rebuilds the frames the
// SFU forwarded: each keeps the 10-byte clear VP8 prefix (key frame, size)
// but its picture does not decode, or decodes to something else; no two
// are alike, although the plaintext is the same every time, and none holds
// a stretch of the plaintext. Bob, with the keys, records exactly the
// plaintext frame, which decodes to the clip's picture.
func TestTap(t *testing.T) {
	tp := &tap{}
	srv := startServer(t, server.Options{Tap: tp}, nil, "board")
	plain := clipKeyFrame(t)
	want, err := decodeVP8(plain)
	if err != nil {
		t.Fatalf("the clip's key frame does not decode: %v", err)
	}
	alice := join(t, srv, "board", "Alice", joinOpts{video: &repeatSource{frame: plain, codec: client.CodecVP8}})
	bob := join(t, srv, "board", "Bob", joinOpts{record: true})
	waitVerified(t, alice, bob)
	waitDecrypted(t, bob, alice, 20)
	bob.Leave()

	wire := tp.vp8Frames(alice.Self().ID)
	if len(wire) < 20 {
		t.Fatalf("the tap rebuilt %d frames", len(wire))
	}
	seen := map[string]bool{}
	undecodable := 0
	for i, f := range wire {
		if !bytes.Equal(f.data[:10], plain[:10]) {
			t.Fatalf("wire frame %d: clear prefix %x, want %x", i, f.data[:10], plain[:10])
		}
		if bytes.Equal(f.data, plain) || containsStretch(f.data, plain[10:], 16) {
			t.Fatalf("wire frame %d holds the plaintext", i)
		}
		if seen[string(f.data)] {
			t.Fatalf("wire frame %d repeats an earlier ciphertext", i)
		}
		seen[string(f.data)] = true
		img, err := decodeVP8(f.data)
		if err != nil {
			undecodable++
		} else if samePicture(img, want) {
			t.Fatalf("wire frame %d decodes to the clip's picture", i)
		}
	}
	t.Logf("%d frames on the wire, all different; %d fail to decode, the rest decode to noise", len(wire), undecodable)

	videos, _ := filepath.Glob(filepath.Join(bob.dir, "*.ivf"))
	if len(videos) != 1 {
		t.Fatalf("Bob recorded %v", videos)
	}
	frames := ivfFrames(t, videos[0])
	if len(frames) < 10 {
		t.Fatalf("Bob recorded %d frames", len(frames))
	}
	for i, f := range frames {
		if !bytes.Equal(f, plain) {
			t.Fatalf("Bob's frame %d differs from what Alice sent", i)
		}
	}
	got, err := decodeVP8(frames[0])
	if err != nil || !samePicture(got, want) {
		t.Fatalf("Bob's frame does not decode to the clip's picture: %v", err)
	}
}

// containsStretch reports whether data holds any n-byte stretch of
// secret.
func containsStretch(data, secret []byte, n int) bool {
	for i := 0; i+n <= len(secret); i += n / 2 {
		if bytes.Contains(data, secret[i:i+n]) {
			return true
		}
	}
	return false
}
