package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"golang.org/x/image/vp8"

	"conclave/internal/codecs"
	"conclave/internal/e2ee"
	"conclave/internal/server"
	"conclave/internal/testutil/browser"
)

// keyFrameTap rebuilds the VP8 key frames of one participant's camera as
// the SFU received them, one simulcast layer (SSRC) at a time: the packets
// of one RTP timestamp, in order, from the start of partition 0 to the
// marker, with the payload descriptors stripped.
type keyFrameTap struct {
	mu          sync.Mutex
	participant string
	building    map[uint32]*tapFrame // by SSRC
	frames      [][]byte             // complete key frames
}

type tapFrame struct {
	ts   uint32
	next uint16
	data []byte
}

func (k *keyFrameTap) watch(participant string) {
	k.mu.Lock()
	k.participant, k.building, k.frames = participant, map[uint32]*tapFrame{}, nil
	k.mu.Unlock()
}

// Packet implements sfu.Tap.
func (k *keyFrameTap) Packet(participant, source, codec string, pkt *rtp.Packet) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if participant != k.participant || source != "camera" || len(pkt.Payload) == 0 {
		return
	}
	var d codecs.VP8
	if d.Unmarshal(pkt.Payload) != nil {
		return
	}
	body := pkt.Payload[d.HeaderSize:]
	f := k.building[pkt.SSRC]
	switch {
	case d.Start && d.Partition == 0:
		f = nil
		if len(body) > 0 && body[0]&1 == 0 { // a key frame starts
			f = &tapFrame{ts: pkt.Timestamp}
		}
	case f == nil || f.ts != pkt.Timestamp || f.next != pkt.SequenceNumber:
		f = nil // a lost or reordered packet: this frame is not rebuilt
	}
	if f == nil {
		delete(k.building, pkt.SSRC)
		return
	}
	f.data = append(f.data, body...)
	f.next = pkt.SequenceNumber + 1
	k.building[pkt.SSRC] = f
	if pkt.Marker {
		k.frames = append(k.frames, f.data)
		delete(k.building, pkt.SSRC)
	}
}

func (k *keyFrameTap) keyFrames() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.frames)
}

// TestFirefoxE2EETap: what the SFU receives from a Firefox publisher with
// E2EE on is SFrame ciphertext: each key frame of its camera keeps the
// 10-byte clear VP8 header the SFU reads (key frame, size), followed by an
// SFrame header and ciphertext that do not decode as VP8, and no two are
// alike. The Chromium subscriber decrypts the same frames and decodes
// them: key frames decoded, frames rising at the camera's size.
func TestFirefoxE2EETap(t *testing.T) {
	tap := &keyFrameTap{}
	srv := startServerWith(t, server.Options{Tap: tap}, "alpha")
	ff := browser.StartFirefox(t)
	cr := browser.Start(t)
	alice := join(t, ff, srv.URL(), "alpha", "Alice")
	tap.watch(alice.id)
	carol := join(t, cr, srv.URL(), "alpha", "Carol")
	sameCode(t, alice, carol)
	carol.waitMedia(alice, "camera", true)

	// Carol's browser decoded Alice's key frames after decrypting them.
	var keyFrames float64
	if err := carol.Eval(fmt.Sprintf(`(async () => {
	  const id = document.querySelector('.tile[data-participant=%q][data-source="camera"] video')?.srcObject?.getVideoTracks()[0]?.id;
	  let n = 0;
	  for (const pc of window.__pcs) (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.trackIdentifier === id) n += s.keyFramesDecoded || 0; });
	  return n;
	})()`, alice.id), &keyFrames); err != nil {
		t.Fatal(err)
	}
	if keyFrames < 1 {
		t.Fatalf("Carol decoded %v key frames of Alice's camera", keyFrames)
	}

	// Alice's first key frame of each simulcast layer, and those Carol's
	// arrival asked for.
	deadline := time.Now().Add(15 * time.Second)
	for len(tap.keyFrames()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the tap rebuilt %d key frames of Alice's camera", len(tap.keyFrames()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	frames := tap.keyFrames()
	seen := map[string]bool{}
	decoded := 0
	for i, f := range frames {
		w, h, ok := codecs.VP8FrameSize(f)
		if !ok || w == 0 || h == 0 {
			t.Fatalf("key frame %d at the SFU: the clear VP8 header is not readable (%x)", i, f[:min(len(f), 10)])
		}
		kid, ctr, n, err := e2ee.ParseHeader(f[10:])
		if err != nil {
			t.Fatalf("key frame %d (%dx%d) at the SFU: no SFrame header after the clear prefix: %v", i, w, h, err)
		}
		if len(f) < 10+n+16 {
			t.Fatalf("key frame %d: %d bytes, too short for an SFrame tag", i, len(f))
		}
		if seen[string(f[10:])] {
			t.Fatalf("key frame %d repeats an earlier ciphertext", i)
		}
		seen[string(f[10:])] = true
		d := vp8.NewDecoder()
		d.Init(bytes.NewReader(f), len(f))
		if _, err := d.DecodeFrameHeader(); err == nil {
			if _, err := d.DecodeFrame(); err == nil {
				decoded++
			}
		}
		t.Logf("key frame %d at the SFU: %dx%d, %d bytes, SFrame KID %d CTR %d", i, w, h, len(f), kid, ctr)
	}
	if decoded > 0 {
		t.Errorf("%d of %d key frames from Firefox decode as VP8 at the SFU", decoded, len(frames))
	}
	t.Logf("%d key frames from Firefox at the SFU, none decodes as VP8; Carol (Chromium) decoded %v key frames", len(frames), keyFrames)
}

// TestLayersFirefoxPublisher: a Chromium subscriber that shows a Firefox
// publisher as a thumbnail gets its low simulcast layer (and only that
// layer arrives at the server), and in full screen its top layer, without
// a freeze on the way.
func TestLayersFirefoxPublisher(t *testing.T) {
	tap := newLayerTap()
	srv := startServerWith(t, server.Options{Tap: tap}, "alpha")
	ff := browser.StartFirefox(t)
	cr := browser.Start(t)
	alice := join(t, ff, srv.URL(), "alpha", "Alice")
	tap.watch(alice.id)
	bob := join(t, cr, srv.URL(), "alpha", "Bob")
	bob.waitMedia(alice, "camera", false)

	bob.showAsThumbnail(alice)
	low := waitVideo(t, bob, alice, "low layer", func(v videoIn) bool { return v.Width > 0 && v.Width <= 320 }, 15*time.Second)
	tap.waitLayers(t, "dynacast: only Firefox's low layer", func(a map[uint32]int) bool { return len(a) == 1 }, 15*time.Second)
	t.Logf("thumbnail: Firefox's low layer, %d px wide", int(low.Width))

	aliceTile := fmt.Sprintf(`.tile[data-participant=%q][data-source="camera"]`, alice.id)
	took := bob.switchToTop(tap, alice, aliceTile+" button.fullscreen", int(low.Width), 3*time.Second)
	t.Logf("full screen: Firefox's top layer after %v", took.Round(time.Millisecond))
}
