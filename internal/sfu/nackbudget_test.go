package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/packetcache"
	"conclave/internal/testutil/fakeclock"
)

// TestHardening04NACKBudget (docs/hardening.md, finding 4): a subscriber
// that NACKs everything gets at most its budget of retransmissions (a
// burst, then nackRate a second), not the whole cache again and again.
func TestHardening04NACKBudget(t *testing.T) {
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	u := newUpTrack(nil, clk, vp8Codec, webrtc.RTPCodecTypeVideo, "alice", "camera", "1", nil)
	u.layers[0].Store(&upLayer{track: u, index: 0, ssrc: 1000, cache: packetcache.New(videoCacheSize)})
	w := &fakeWriter{keep: true}
	d := testDown(u, w)
	src := &source{l: u.layers[0].Load(), seq: 100, ts: 1000, pid: 1, tl0: 1, w: 320, h: 180}
	for i := 0; i < 60; i++ {
		src.frame(i == 0)
	}
	sent := w.take()
	if len(sent) < 100 {
		t.Fatalf("forwarded %d packets", len(sent))
	}
	all := &rtcp.TransportLayerNack{}
	for _, p := range sent {
		all.Nacks = append(all.Nacks, rtcp.NackPair{PacketID: p.seq})
	}
	resent := 0
	for i := 0; i < 20; i++ { // the whole history, 20 times at once
		d.retransmit(all)
		resent += len(w.take())
	}
	if resent != nackBurst {
		t.Fatalf("20 NACKs of %d packets got %d retransmissions at once, want the burst of %d", len(sent), resent, nackBurst)
	}
	clk.Advance(time.Second)
	d.retransmit(all)
	if got := len(w.take()); got != nackRate {
		t.Fatalf("a second later: %d retransmissions, want %d", got, nackRate)
	}
}
