package e2e

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"conclave/internal/codecs"
	"conclave/internal/server"
	"conclave/internal/testutil/browser"
)

// layerTap records, per SSRC of one publisher's camera (one simulcast
// layer each), when the SFU last received a packet and the width of the
// layer's latest key frame (from the VP8 key frame header, which stays in
// the clear under E2EE): which layers reach the server, and how large.
type layerTap struct {
	mu          sync.Mutex
	participant string
	last        map[uint32]time.Time
	width       map[uint32]int
	vp8         codecs.VP8
}

func newLayerTap() *layerTap {
	return &layerTap{last: map[uint32]time.Time{}, width: map[uint32]int{}}
}

func (l *layerTap) Packet(participant, source, codec string, pkt *rtp.Packet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if participant != l.participant || source != "camera" || len(pkt.Payload) == 0 {
		return
	}
	l.last[pkt.SSRC] = time.Now()
	if l.vp8.Unmarshal(pkt.Payload) == nil && l.vp8.KeyFrame && l.vp8.Start && l.vp8.Partition == 0 {
		if w, _, ok := codecs.VP8FrameSize(pkt.Payload[l.vp8.HeaderSize:]); ok {
			l.width[pkt.SSRC] = w
		}
	}
}

func (l *layerTap) watch(participant string) {
	l.mu.Lock()
	l.participant, l.last, l.width = participant, map[uint32]time.Time{}, map[uint32]int{}
	l.mu.Unlock()
}

// arriving maps the SSRCs that delivered a packet within the last second
// to the width of their latest key frame (0 before the first).
func (l *layerTap) arriving() map[uint32]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint32]int{}
	for ssrc, t := range l.last {
		if time.Since(t) < time.Second {
			out[ssrc] = l.width[ssrc]
		}
	}
	return out
}

// topWidth is the width of the largest layer arriving at the server.
func (l *layerTap) topWidth() int {
	top := 0
	for _, w := range l.arriving() {
		top = max(top, w)
	}
	return top
}

// waitLayers waits until the set of layers arriving at the server satisfies ok.
func (l *layerTap) waitLayers(t *testing.T, desc string, ok func(map[uint32]int) bool, timeout time.Duration) map[uint32]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a := l.arriving()
		if ok(a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: layers arriving at the server (SSRC: key frame width): %v", desc, a)
		}
		time.Sleep(100 * time.Millisecond)
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
// stop arriving at the server (dynacast); full screen gives the top layer
// within 3 s without a freeze; a hidden tile is not forwarded. Alice's
// page keeps an upload estimate of at least 1 Mbit/s (uplinkFloorJS): the
// 3 s are the server's (probe, resume, switch at a key frame), and in CI,
// with the race detector on two busy cores, Chromium's own estimate of the
// loopback link was once 266 kbit/s, too little for any top layer.
func TestLayersOnDemand(t *testing.T) {
	tap, srv, b, alice := tappedPublisher(t)
	bob := join(t, b, srv.URL(), "alpha", "Bob")
	bob.waitMedia(alice, "camera", false)

	// Bob shows Alice as a thumbnail (speaker view, his own tile pinned).
	bob.showAsThumbnail(alice)
	low := waitVideo(t, bob, alice, "low layer", func(v videoIn) bool { return v.Width > 0 && v.Width <= 320 }, 15*time.Second)
	// Only one layer of Alice's is needed: the others stop arriving.
	tap.waitLayers(t, "dynacast: only the low layer", func(a map[uint32]int) bool { return len(a) == 1 }, 15*time.Second)

	// Full screen: Bob's view of Alice goes from the thumbnail to the
	// whole window, which wants the top layer. The SFU probes Bob's link,
	// Alice resumes her top layer, and Bob switches to it at its first
	// key frame, without a freeze.
	aliceTile := fmt.Sprintf(`.tile[data-participant=%q][data-source="camera"]`, alice.id)
	took := bob.switchToTop(tap, alice, aliceTile+" button.fullscreen", int(low.Width), 3*time.Second)
	t.Logf("full screen: the top layer after %v", took.Round(time.Millisecond))
	// Alice's frames of several packets (Chromium's, evened out by the
	// server's RTP padding) went to Bob several datagrams per call, and
	// he decoded them.
	if st := srv.SendStats(); runtime.GOOS == "linux" && (!st.GSO || st.GSOSends == 0 || st.GSODatagrams < 2*st.GSOSends) {
		t.Errorf("server sends %+v: want a browser's frames sent several datagrams per call", st)
	} else {
		t.Logf("server sends: %d datagrams in %d GSO calls", st.GSODatagrams, st.GSOSends)
	}
	bob.click(aliceTile + " button.fullscreen") // leave full screen

	// Hidden: Bob puts his own tile in full screen; Alice's is hidden and
	// no longer forwarded.
	bob.click(`.tile[data-self="true"] button.fullscreen`)
	bob.waitNotForwarded(alice)
	alice.waitMedia(bob, "camera", true) // the other direction is untouched
}

// TestDynacast: while every subscriber (Bob, Carol) shows Alice as a
// thumbnail, only her low layer arrives at the server; when Carol puts her
// in full screen, her top layer arrives again and Carol decodes it within
// 3 s without a freeze, while Bob keeps the low layer; when Carol leaves
// full screen, the top layer stops again.
func TestDynacast(t *testing.T) {
	tap, srv, b, alice := tappedPublisher(t)
	bob := join(t, b, srv.URL(), "alpha", "Bob")
	carol := join(t, b, srv.URL(), "alpha", "Carol")
	bob.waitMedia(alice, "camera", false)
	carol.waitMedia(alice, "camera", false)
	// Only Alice's camera matters here: Bob's and Carol's go off, which
	// spares the machine two encoders and four decoders.
	bob.click("#toggle-cam")
	carol.click("#toggle-cam")

	bob.showAsThumbnail(alice)
	carol.showAsThumbnail(alice)
	lowOnly := func(a map[uint32]int) bool {
		for _, w := range a {
			return len(a) == 1 && w > 0 && w <= 320
		}
		return false
	}
	start := time.Now()
	low := tap.waitLayers(t, "everyone shows Alice small: only her low layer arrives", lowOnly, 20*time.Second)
	t.Logf("only the low layer arrives %v after both thumbnails were shown: %v", time.Since(start).Round(time.Millisecond), low)
	lowWidth := waitVideo(t, carol, alice, "low layer", func(v videoIn) bool { return v.Width > 0 && v.Width <= 320 }, 10*time.Second).Width

	// Carol puts Alice in full screen: the top layer comes back.
	aliceTile := fmt.Sprintf(`.tile[data-participant=%q][data-source="camera"]`, alice.id)
	carol.switchToTop(tap, alice, aliceTile+" button.fullscreen", int(lowWidth), 3*time.Second)
	up := tap.waitLayers(t, "the top layer arrives again", func(a map[uint32]int) bool {
		for ssrc, w := range a {
			if _, old := low[ssrc]; !old && w > int(lowWidth) {
				return true
			}
		}
		return false
	}, 5*time.Second)
	t.Logf("with Carol in full screen, arriving at the server: %v", up)
	if v := bob.videoFrom(alice); v.Width > 320 {
		t.Errorf("Bob, with Alice as a thumbnail, gets %v px wide", v.Width)
	}

	// Carol leaves full screen: only the low layer again, after the
	// pause debounce.
	carol.click(aliceTile + " button.fullscreen")
	left := time.Now()
	tap.waitLayers(t, "Alice small everywhere again: only her low layer arrives", lowOnly, 10*time.Second)
	t.Logf("only the low layer again %v after Carol left full screen", time.Since(left).Round(time.Millisecond))
}

// tappedPublisher starts a server whose tap watches Alice's camera, a
// browser, and Alice in room alpha with a 1 Mbit/s uplink floor
// (uplinkFloorJS).
func tappedPublisher(t *testing.T) (*layerTap, *server.Server, *browser.Browser, *participant) {
	t.Helper()
	tap := newLayerTap()
	srv := startServerWith(t, server.Options{Tap: tap}, "alpha")
	b := browser.Start(t)
	alice := joinPage(t, uplinkFloorPage(t, b, "Alice"), srv.URL(), "alpha", "Alice")
	tap.watch(alice.id)
	return tap, srv, b, alice
}

// uplinkFloorJS gives the page's sending peer connections a bandwidth
// estimate of at least 1 Mbit/s (x-google-min-bitrate in the answer's
// video formats). Chromium sends a 640x480 camera's top layer next to its
// low one only when its estimate covers both; on a machine starved of CPU
// (two cores, the server under the race detector) its estimate of a
// loopback link can sink to 300 kbit/s, from packets that the server
// reads late, and the top layer would then not come for reasons that
// have nothing to do with the server's choice of layers.
const uplinkFloorJS = `(() => {
  const set = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (d, ...rest) {
    if (d && d.type === 'answer' && typeof d.sdp === 'string') {
      const pts = [...d.sdp.matchAll(/^a=rtpmap:(\d+) (VP8|VP9)\/90000/gm)].map((m) => m[1]);
      let sdp = d.sdp;
      for (const pt of pts) {
        const re = new RegExp('^a=fmtp:' + pt + ' (.*)$', 'm');
        sdp = re.test(sdp) ? sdp.replace(re, (l) => l + ';x-google-min-bitrate=1000')
          : sdp.replace(new RegExp('^(a=rtpmap:' + pt + ' .*)$', 'm'), '$1\r\na=fmtp:' + pt + ' x-google-min-bitrate=1000');
      }
      d = {type: d.type, sdp};
    }
    return set.call(this, d, ...rest);
  };
})();`

// uplinkFloorPage opens a page whose sending estimate stays at or above
// 1 Mbit/s (uplinkFloorJS).
func uplinkFloorPage(t *testing.T, b *browser.Browser, name string) *browser.Page {
	t.Helper()
	p := b.NewPage(t, name)
	if err := p.AddScript(uplinkFloorJS); err != nil {
		t.Fatalf("%s: instrument setRemoteDescription: %v", name, err)
	}
	return p
}

// showAsThumbnail puts from's camera in p's strip of thumbnails: speaker
// view, with p's own tile pinned large.
func (p *participant) showAsThumbnail(from *participant) {
	p.t.Helper()
	p.click("#toggle-layout")
	p.click(`.tile[data-self="true"] button.pin`)
	p.WaitJS(p.t, p.name+": "+from.name+" in the strip", fmt.Sprintf(`document.querySelector('.tile[data-participant=%q][data-source="camera"]')?.dataset.slot === 'strip'`, from.id), 5*time.Second)
}

// switchToTop clicks sel (which makes from's camera tile large) and waits
// until p decodes the top layer of from's camera: wider than lowWidth
// (the low layer's) and as wide as the widest layer arriving at the
// server (tap). It fails the test if that takes longer than within, or if
// decoding stops for more than a second on the way (sampled in the page
// every 50 ms), and returns the time it took.
func (p *participant) switchToTop(tap *layerTap, from *participant, sel string, lowWidth int, within time.Duration) time.Duration {
	p.t.Helper()
	p.startTimeline(from)
	clicked := time.Now()
	p.click(sel)
	var v videoIn
	var took time.Duration
	for {
		v = p.videoFrom(from)
		if top := tap.topWidth(); int(v.Width) > lowWidth && int(v.Width) >= top {
			took = time.Since(clicked)
			break
		}
		if time.Since(clicked) > within+5*time.Second {
			p.t.Fatalf("%s: %s's top layer not decoded %v after the click: %+v; arriving at the server: %v; timeline %s; %s's camera: %s",
				p.name, from.name, time.Since(clicked).Round(time.Millisecond), v, tap.arriving(), p.timeline(from), from.name, from.cameraOut())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A second more of decoding, for the gap after the switch.
	p.waitTimeline(from, 1000)
	tl := p.timeline(from)
	gap := tl.longestGap(0)
	p.t.Logf("%s: %s's top layer (%d px wide) decoded %v after the click; longest gap in decoding %v; timeline %s",
		p.name, from.name, int(v.Width), took.Round(time.Millisecond), gap, tl)
	if took > within {
		p.t.Errorf("%s: %s's top layer after %v, want within %v; %s's camera: %s", p.name, from.name, took.Round(time.Millisecond), within, from.name, from.cameraOut())
	}
	if gap > time.Second {
		p.t.Errorf("%s: %s's video froze for %v during the switch", p.name, from.name, gap)
	}
	return took
}

// waitNotForwarded waits until p receives no more video packets of from's
// camera.
func (p *participant) waitNotForwarded(from *participant) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := p.videoFrom(from).Packets
	for {
		time.Sleep(time.Second)
		now := p.videoFrom(from).Packets
		if now == last {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s's video still forwarded to %s while hidden (%v -> %v packets)", from.name, p.name, last, now)
		}
		last = now
	}
}

// cameraOut describes what p's camera sender encodes, per simulcast
// layer, and the publisher's own bandwidth estimate.
func (p *participant) cameraOut() string {
	var s string
	err := p.Eval(`(async () => {
	  const out = [];
	  for (const pc of (window.__pcs || [])) {
	    (await pc.getStats()).forEach(s => {
	      if (s.type === 'outbound-rtp' && s.kind === 'video') out.push((s.rid || '-') + (s.active === false ? ' (paused)' : '') + ': ' + (s.frameWidth || 0) + ' px, ' + (s.framesEncoded || 0) + ' frames, target ' + Math.round((s.targetBitrate || 0) / 1000) + ' kbit/s, limited by ' + s.qualityLimitationReason);
	      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.push('estimate ' + Math.round(s.availableOutgoingBitrate / 1000) + ' kbit/s');
	    });
	  }
	  return out.join('; ');
	})()`, &s)
	if err != nil {
		return err.Error()
	}
	return s
}

// timelineJS starts sampling, in the page, the decoded frames and width of
// participant %q's camera every 50 ms, into window.__timeline[pid] (from
// a fresh start at each call).
const timelineJS = `((pid) => {
  window.__timeline = window.__timeline || {};
  window.__timelineGen = (window.__timelineGen || 0) + 1;
  const gen = window.__timelineGen;
  const samples = window.__timeline[pid] = [];
  const t0 = performance.now();
  const tick = async () => {
    if (window.__timelineGen !== gen) return;
    const v = document.querySelector('.tile[data-participant="' + pid + '"][data-source="camera"] video');
    const id = v?.srcObject?.getVideoTracks()[0]?.id;
    let frames = 0, width = 0;
    if (id) for (const pc of (window.__pcs || [])) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach(s => {
        if (s.type === 'inbound-rtp' && s.trackIdentifier === id) { frames += s.framesDecoded || 0; width = s.frameWidth || 0; }
      });
    }
    samples.push([Math.round(performance.now() - t0), frames, width]);
    setTimeout(tick, 50);
  };
  tick();
  return true;
})(%q)`

// sample is one point of a page's timeline: milliseconds since it
// started, frames decoded so far, decoded width.
type sample [3]float64

type timeline []sample

func (p *participant) startTimeline(from *participant) {
	if err := p.Eval(fmt.Sprintf(timelineJS, from.id), nil); err != nil {
		p.t.Fatal(err)
	}
}

func (p *participant) timeline(from *participant) timeline {
	var tl timeline
	if err := p.Eval(fmt.Sprintf(`window.__timeline[%q]`, from.id), &tl); err != nil {
		p.t.Fatal(err)
	}
	return tl
}

// waitTimeline waits until p's timeline of from covers ms more
// milliseconds than now (page time).
func (p *participant) waitTimeline(from *participant, ms int) {
	p.t.Helper()
	p.WaitJS(p.t, p.name+": timeline", fmt.Sprintf(`(() => { const s = window.__timeline[%q]; window.__until = window.__until || {}; const end = s.length ? s[s.length-1][0] : 0; if (!(%q in window.__until)) window.__until[%q] = end + %d; if (end < window.__until[%q]) return false; delete window.__until[%q]; return true; })()`,
		from.id, from.id, from.id, ms, from.id, from.id), time.Duration(ms)*time.Millisecond+10*time.Second)
}

// longestGap is the longest time without a newly decoded frame, in the
// samples from ms on (page time of the timeline).
func (tl timeline) longestGap(from float64) time.Duration {
	var gap float64
	last := -1
	for i, s := range tl {
		if s[0] < from {
			continue
		}
		if last < 0 || s[1] > tl[last][1] {
			last = i
			continue
		}
		gap = max(gap, s[0]-tl[last][0])
	}
	return time.Duration(gap) * time.Millisecond
}

// String shows when the decoded width changed: "ms:frames@width".
func (tl timeline) String() string {
	var b strings.Builder
	prevW := -1.0
	for i, s := range tl {
		if s[2] != prevW || i == len(tl)-1 {
			fmt.Fprintf(&b, "%.0fms:%.0f@%.0f ", s[0], s[1], s[2])
			prevW = s[2]
		}
	}
	return strings.TrimSpace(b.String())
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
