package e2e

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"conclave/internal/server"
	"conclave/internal/sfu"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/netns"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
)

// startServerOn is startServer listening on host (HTTPS and media)
// instead of loopback, with a tap. The tap may be nil.
func startServerOn(t *testing.T, host string, tap sfu.Tap, rooms ...string) *server.Server {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("CONCLAVE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := testlog.Logger(t, level)
	return testserver.Start(t, testserver.Options{Server: server.Options{Tap: tap}, Logger: log, Host: host}, rooms...).Server
}

// TestConstrainedLink: the server and Alice's browser are in one network
// namespace, Bob's browser in another, and the link from the first to
// the second is capped at 600 kbit/s for a while (tbf, as on a slow
// access line), with Alice's camera in full screen on Bob's screen. Under
// the cap Bob moves to a lower layer and keeps decoding (no freeze over a
// second); when the cap lifts, he is back on the top layer within 10 s.
func TestConstrainedLink(t *testing.T) {
	link := netns.New(t)
	tap := newLayerTap()
	var srv *server.Server
	link.Do(t, func() { srv = startServerOn(t, link.NearIP, tap, "alpha") })
	chromium := browser.Chromium(t)
	near := browser.StartExec(t, link.Wrapper(t, link.Near, chromium), browser.DefaultFlags())
	far := browser.StartExec(t, link.Wrapper(t, link.Far, chromium), browser.DefaultFlags())
	// Their pairs run over the link, between addresses of the test's own
	// namespaces.
	near.Allow(link.Owns)
	far.Allow(link.Owns)
	// Alice's camera captures 1280x720, as a laptop's would: three
	// layers, the top one well above the cap (the fake camera's 640x480
	// top layer is about 500 kbit/s).
	alice := joinPage(t, hdCameraPage(t, near, "Alice"), srv.URL(), "alpha", "Alice")
	tap.watch(alice.id)
	bob := join(t, far, srv.URL(), "alpha", "Bob")
	bob.waitMedia(alice, "camera", false)

	aliceTile := fmt.Sprintf(`.tile[data-participant=%q][data-source="camera"]`, alice.id)
	bob.click(aliceTile + " button.fullscreen")
	// The top layer of a 1280x720 capture (wider than any layer of the
	// fake camera's usual 640x480).
	top := bob.waitTop(tap, alice, 640, 20*time.Second)
	t.Logf("Bob: Alice's top layer in full screen, %d px wide; Alice's camera: %s", int(top.Width), alice.cameraOut())
	bob.startTimeline(alice)
	bob.waitTimeline(alice, 500)

	// The cap: a lower layer, and decoding goes on.
	capAt := bob.timelineEnd(alice)
	link.Cap(t, "600kbit")
	capped := time.Now()
	lower := waitVideo(t, bob, alice, "a lower layer under the cap", func(v videoIn) bool { return v.Width > 0 && v.Width < top.Width }, 15*time.Second)
	t.Logf("under the cap: %d px wide after %v", int(lower.Width), time.Since(capped).Round(time.Millisecond))
	bob.waitTimeline(alice, 5000)
	tl := bob.timeline(alice)
	gap := tl.longestGap(capAt)
	t.Logf("under the cap: longest gap in decoding %v; timeline %s; Alice's camera: %s", gap, tl, alice.cameraOut())
	if gap > time.Second {
		t.Errorf("Bob's video of Alice froze for %v under the cap", gap)
	}
	if last := tl[len(tl)-1]; last[2] >= top.Width {
		t.Errorf("back to %v px wide under the cap", last[2])
	}

	// The cap lifts: back to the top layer (of a 1280x720 capture) within
	// 10 s.
	liftAt := bob.timelineEnd(alice)
	link.Uncap(t)
	lifted := time.Now()
	back := bob.waitTop(tap, alice, 640, 20*time.Second)
	took := time.Since(lifted)
	tl = bob.timeline(alice)
	t.Logf("cap lifted: %d px wide again after %v; longest gap in decoding %v; timeline %s", int(back.Width), took.Round(time.Millisecond), tl.longestGap(liftAt), tl)
	if took > 10*time.Second {
		t.Errorf("back on the top layer %v after the cap lifted, want within 10 s", took.Round(time.Millisecond))
	}
}

// hdCameraJS makes the page's getUserMedia ask for 1280x720 video (the
// fake camera's default is 640x480).
const hdCameraJS = `(() => {
  const md = navigator.mediaDevices;
  if (!md || md.__hd) return;
  const gum = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => {
    if (c && c.video) c = {...c, video: {...(c.video === true ? {} : c.video), width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 15}}};
    return gum(c);
  };
  md.__hd = true;
})();`

// hdCameraPage opens a page whose camera captures 1280x720 and whose
// sending estimate stays at or above 1 Mbit/s (uplinkFloorJS): what the
// test caps is the other side's link.
func hdCameraPage(t *testing.T, b *browser.Browser, name string) *browser.Page {
	t.Helper()
	p := b.NewPage(t, name)
	for _, js := range []string{hdCameraJS, uplinkFloorJS} {
		if err := p.AddScript(js); err != nil {
			t.Fatalf("%s: instrument the page: %v", name, err)
		}
	}
	return p
}

// waitTop waits until p decodes the top layer of from's camera: wider
// than lowWidth and as wide as the widest layer arriving at the server.
func (p *participant) waitTop(tap *layerTap, from *participant, lowWidth int, timeout time.Duration) videoIn {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := p.videoFrom(from)
		if top := tap.topWidth(); int(v.Width) > lowWidth && int(v.Width) >= top {
			return v
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s's top layer not decoded within %v: %+v; arriving at the server: %v; %s's camera: %s",
				p.name, from.name, timeout, v, tap.arriving(), from.name, from.cameraOut())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timelineEnd is the page time (ms) of the latest sample of p's timeline
// of from.
func (p *participant) timelineEnd(from *participant) float64 {
	var end float64
	if err := p.Eval(fmt.Sprintf(`(() => { const s = window.__timeline[%q]; return s.length ? s[s.length-1][0] : 0; })()`, from.id), &end); err != nil {
		p.t.Fatal(err)
	}
	return end
}
