package client_test

import (
	"sync"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/loadtest/clips"
	"conclave/internal/server"
	"conclave/internal/testutil/wait"
)

// sizeSink notes the widths of the key frames of a participant's camera.
type sizeSink struct {
	mu     sync.Mutex
	widths map[int]int // width -> key frames
	frames int
	last   []byte // the latest key frame
}

func (k *sizeSink) newSink(t client.TrackInfo) (client.FrameSink, error) {
	if t.Source != "camera" {
		return nil, nil
	}
	return k, nil
}

func (k *sizeSink) WriteFrame(f client.RemoteFrame) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.frames++
	if f.KeyFrame && len(f.Data) >= 10 {
		w := int(f.Data[6]) | int(f.Data[7]&0x3f)<<8
		if k.widths == nil {
			k.widths = map[int]int{}
		}
		k.widths[w]++
		k.last = append(k.last[:0], f.Data...)
	}
	return nil
}

func (k *sizeSink) Close() error { return nil }

func (k *sizeSink) saw(width int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.widths[width] > 0
}

func (k *sizeSink) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.frames
}

// cameraAt is a layout that shows every camera at one size.
func cameraAt(w, h int) func([]client.TrackInfo) map[string]client.Size {
	return func(tracks []client.TrackInfo) map[string]client.Size {
		out := map[string]client.Size{}
		for _, t := range tracks {
			if t.Kind == "video" {
				out[t.Mid] = client.Size{Width: w, Height: h}
			}
		}
		return out
	}
}

// TestSimulcast: a native publisher sends its camera as three encodings,
// each through the send transform; subscribers that render it large,
// small or not at all get the top layer, the bottom layer or nothing, and
// the layer nobody needs is paused at the publisher. SetLayout changes a
// size later.
func TestSimulcast(t *testing.T) {
	srv := startServer(t, server.Options{}, "board")
	alice := join(t, srv, "board", "Alice", joinOpts{layers: clips.Sources(), send: xorTransform{}, noRecord: true})
	var big, small, hidden sizeSink
	bob := join(t, srv, "board", "Bob", joinOpts{receive: xorTransform{inverse: true}, layout: cameraAt(1280, 720), newSink: big.newSink})
	join(t, srv, "board", "Carol", joinOpts{receive: xorTransform{inverse: true}, layout: cameraAt(320, 180), newSink: small.newSink})
	dave := join(t, srv, "board", "Dave", joinOpts{receive: xorTransform{inverse: true}, layout: cameraAt(0, 0), newSink: hidden.newSink})

	wait.For(t, "Bob to receive the 1280x720 layer", 30*time.Second, func() bool { return big.saw(1280) })
	wait.For(t, "Carol to receive the 320x180 layer", 10*time.Second, func() bool { return small.saw(320) && small.count() > 30 })
	big.mu.Lock()
	img, err := decodeVP8(big.last)
	big.mu.Unlock()
	if err != nil {
		t.Fatalf("Bob's key frame does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 720 {
		t.Errorf("Bob decoded %v, want 1280x720", b)
	}
	if small.saw(1280) {
		t.Error("Carol, who shows Alice at 320x180, got the 1280x720 layer")
	}
	if n := hidden.count(); n != 0 {
		t.Errorf("Dave, who hides Alice's camera, received %d of its frames", n)
	}
	// Nobody needs the middle layer: the server pauses it at Alice.
	wait.For(t, "the middle layer to pause", 10*time.Second, func() bool {
		st := sent(alice, "camera")
		return len(st.Encodings) == 3 && st.Encodings[1].Paused && !st.Encodings[0].Paused && !st.Encodings[2].Paused
	})
	if st := sent(alice, "camera"); st.Encodings[0].RID != "q" || st.Encodings[2].RID != "f" || st.Encodings[0].Frames == 0 || st.Encodings[2].Frames == 0 {
		t.Errorf("Alice sent %+v", st)
	}
	for _, st := range bob.Stats() {
		if st.Source == "camera" && (st.PacketBytes == 0 || st.PacketsExpected < st.Packets/2) {
			t.Errorf("Bob's packet counts: %+v", st)
		}
	}

	// Dave shows the camera at 640x360 now: the middle layer resumes.
	var mid string
	for _, st := range dave.Stats() {
		if st.Source == "camera" {
			mid = st.Mid
		}
	}
	if err := dave.SetLayout(map[string]client.Size{mid: {Width: 640, Height: 360}}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "Dave to receive the 640x360 layer", 20*time.Second, func() bool { return hidden.saw(640) })
	if err := dave.SetLayout(map[string]client.Size{mid: {Width: -1}}); err == nil {
		t.Error("a negative size was accepted")
	}
}

func sent(p *participant, source string) client.SendStats {
	for _, s := range p.Sent() {
		if s.Source == source {
			return s
		}
	}
	return client.SendStats{}
}
