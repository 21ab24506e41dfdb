package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"conclave/internal/server"
	"conclave/internal/testutil/browser"
)

// layerTap records, per SSRC of one publisher's camera, when the SFU last
// received a packet: which simulcast layers reach the server.
type layerTap struct {
	mu          sync.Mutex
	participant string
	last        map[uint32]time.Time
}

func (l *layerTap) Packet(participant, source, codec string, pkt *rtp.Packet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if participant == l.participant && source == "camera" {
		l.last[pkt.SSRC] = time.Now()
	}
}

func (l *layerTap) watch(participant string) {
	l.mu.Lock()
	l.participant, l.last = participant, map[uint32]time.Time{}
	l.mu.Unlock()
}

// active returns the SSRCs that delivered a packet within the last second.
func (l *layerTap) active() map[uint32]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint32]bool{}
	for ssrc, t := range l.last {
		if time.Since(t) < time.Second {
			out[ssrc] = true
		}
	}
	return out
}

// waitLayers waits until the set of layers arriving at the server satisfies ok.
func (l *layerTap) waitLayers(t *testing.T, desc string, ok func(map[uint32]bool) bool, timeout time.Duration) map[uint32]bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a := l.active()
		if ok(a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: layers arriving at the server: %v", desc, a)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type videoIn struct {
	FramesDecoded, Width, Freezes, Packets float64
}

// videoFrom reads the inbound video of from's camera tile.
func (p *participant) videoFrom(from *participant) videoIn {
	var v videoIn
	err := p.Eval(fmt.Sprintf(`(async () => {
	  const v = document.querySelector('.tile[data-participant=%q][data-source="camera"] video');
	  const out = {FramesDecoded: 0, Width: 0, Freezes: 0, Packets: 0};
	  const id = v?.srcObject?.getVideoTracks()[0]?.id;
	  if (!id) return out;
	  for (const pc of (window.__pcs || [])) {
	    if (pc.connectionState === 'closed') continue;
	    (await pc.getStats()).forEach(s => {
	      if (s.type === 'inbound-rtp' && s.trackIdentifier === id) {
	        out.FramesDecoded += s.framesDecoded || 0; out.Width = s.frameWidth || 0;
	        out.Freezes += s.freezeCount || 0; out.Packets += s.packetsReceived || 0;
	      }
	    });
	  }
	  return out;
	})()`, from.id), &v)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

// TestLayersOnDemand: a small tile gets the low layer; layers nobody watches
// stop arriving at the server (dynacast); a hidden tile is not forwarded.
// (Climbing to the top layer in full screen needs bandwidth probing, which
// the SFU does not do yet: without it the estimate stays near twice what the
// subscriber already receives.)
func TestLayersOnDemand(t *testing.T) {
	tap := &layerTap{last: map[uint32]time.Time{}}
	srv := startServerWith(t, server.Options{Tap: tap}, "alpha")
	b := browser.Start(t)
	alice := join(t, b, srv.URL(), "alpha", "Alice")
	tap.watch(alice.id)
	bob := join(t, b, srv.URL(), "alpha", "Bob")
	bob.waitMedia(alice, "camera", false)

	// Bob shows Alice as a thumbnail (speaker view, his own tile pinned).
	bob.click("#toggle-layout")
	bob.click(`.tile[data-self="true"] button.pin`)
	bob.WaitJS(t, "Bob: Alice in the strip", fmt.Sprintf(`document.querySelector('.tile[data-participant=%q][data-source="camera"]')?.dataset.slot === 'strip'`, alice.id), 5*time.Second)
	waitVideo(t, bob, alice, "low layer", func(v videoIn) bool { return v.Width > 0 && v.Width <= 320 }, 15*time.Second)
	// Only one layer of Alice's is needed: the others stop arriving.
	tap.waitLayers(t, "dynacast: only the low layer", func(a map[uint32]bool) bool { return len(a) == 1 }, 15*time.Second)

	// Hidden: Bob puts his own tile in full screen; Alice's is hidden and
	// no longer forwarded.
	bob.click(`.tile[data-self="true"] button.fullscreen`)
	deadline := time.Now().Add(10 * time.Second)
	last := bob.videoFrom(alice).Packets
	for {
		time.Sleep(time.Second)
		now := bob.videoFrom(alice).Packets
		if now == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Alice's video still forwarded to Bob while hidden (%v -> %v packets)", last, now)
		}
		last = now
	}
	alice.waitMedia(bob, "camera", true) // the other direction is untouched
}

func waitVideo(t *testing.T, p, from *participant, desc string, ok func(videoIn) bool, timeout time.Duration) videoIn {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := p.videoFrom(from)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s of %s not reached within %v: %+v", p.name, desc, from.name, timeout, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
