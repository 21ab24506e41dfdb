package client_test

import (
	"bytes"
	"errors"
	"image"
	"testing"

	"conclave/internal/client"
	"conclave/internal/client/ivf"
	"conclave/internal/client/media"
	"conclave/internal/server"
)

// xorTransform stands in for SFrame: it keeps the clear prefix of
// docs/e2ee.md (VP8: 10 bytes of a key frame, 1 of others; Opus: none),
// scrambles the rest and appends a trailer, which the inverse checks and
// strips, so frames change size on the way like real ciphertext.
type xorTransform struct{ inverse bool }

var trailer = []byte{0xde, 0xad, 0xbe, 0xef}

func clearPrefix(info client.FrameInfo) int {
	if info.Codec != client.CodecVP8 {
		return 0
	}
	if info.KeyFrame {
		return 10
	}
	return 1
}

func (x xorTransform) TransformFrame(info client.FrameInfo, frame, dst []byte) ([]byte, error) {
	if x.inverse {
		if !bytes.HasSuffix(frame, trailer) {
			return nil, errors.New("not a transformed frame")
		}
		frame = frame[:len(frame)-len(trailer)]
	}
	dst = append(dst, frame...)
	for i := min(clearPrefix(info), len(dst)); i < len(dst); i++ {
		dst[i] ^= 0x5a
	}
	if !x.inverse {
		dst = append(dst, trailer...)
	}
	return dst, nil
}

// clipKeyFrames returns the key frames of the test clip.
func clipKeyFrames(t *testing.T) [][]byte {
	t.Helper()
	r, err := ivf.NewReader(bytes.NewReader(media.VideoIVF))
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for {
		f, _, err := r.ReadFrame(nil)
		if err != nil {
			return keys
		}
		if f[0]&1 == 0 {
			keys = append(keys, f)
		}
	}
}

// TestTransform: frames are transformed before packetization and after
// reassembly. A receiver with the inverse transform gets the publisher's
// exact frames and decodes them; one without it gets frames it cannot
// decode, although the clear prefix still shows key frames.
func TestTransform(t *testing.T) {
	srv := startServer(t, server.Options{}, "board")
	alice := join(t, srv, "board", "Alice", joinOpts{media: true, send: xorTransform{}})
	bob := join(t, srv, "board", "Bob", joinOpts{receive: xorTransform{inverse: true}})
	carol := join(t, srv, "board", "Carol", joinOpts{})
	id := alice.Self().ID
	waitMedia(t, bob, id, 25, 50)
	waitMedia(t, carol, id, 25, 50)
	for _, s := range alice.Sent() {
		if s.Frames == 0 {
			t.Fatalf("Alice sent nothing on %s", s.Source)
		}
	}
	for _, p := range []*participant{bob, carol} {
		if v := received(p, id, "video"); v.KeyFrames == 0 || v.TransformErrors != 0 {
			t.Errorf("%s: %+v, want key frames and no transform errors", p.name, v)
		}
		if err := p.Leave(); err != nil {
			t.Fatal(err)
		}
	}

	keys := clipKeyFrames(t)
	isClipKey := func(f []byte) int {
		for i, k := range keys {
			if bytes.Equal(f, k) {
				return i
			}
		}
		return -1
	}
	_, bobKey, _ := firstIVFFrame(t, recordings(t, bob, ".ivf")[0])
	if isClipKey(bobKey) < 0 {
		t.Fatal("Bob's first frame is not one of the clip's key frames")
	}
	img, err := decodeVP8(bobKey)
	if err != nil || img.Bounds() != image.Rect(0, 0, media.VideoWidth, media.VideoHeight) {
		t.Fatalf("Bob's key frame: %v, %v", img, err)
	}

	_, carolKey, _ := firstIVFFrame(t, recordings(t, carol, ".ivf")[0])
	if isClipKey(carolKey) >= 0 {
		t.Fatal("Carol, without the transform, recorded a clear key frame")
	}
	// Carol's frame has a clear prefix: find the original and show that
	// what she has does not decode to it.
	for _, k := range keys {
		if len(carolKey) == len(k)+len(trailer) && bytes.Equal(carolKey[:10], k[:10]) {
			want, err := decodeVP8(k)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeVP8(carolKey)
			if err == nil && samePicture(got, want) {
				t.Fatal("Carol decoded the picture without the transform")
			}
			return
		}
	}
	t.Fatal("Carol's key frame matches no clip key frame's clear prefix")
}

func samePicture(a, b image.Image) bool {
	ya, ok1 := a.(*image.YCbCr)
	yb, ok2 := b.(*image.YCbCr)
	return ok1 && ok2 && bytes.Equal(ya.Y, yb.Y)
}
