package browser

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"conclave/internal/testutil/netns"
)

// The browsers run in a network namespace that has only lo.
func TestMain(m *testing.M) { netns.Isolate(m) }

// harnessPage has a button that calls getDisplayMedia from its click handler,
// an input that counts input events, and a loopback helper that sends a
// stream's tracks from one peer connection to another in the same page.
const harnessPage = `<!doctype html>
<meta charset="utf-8">
<title>harness</title>
<button id="share" style="width:200px;height:60px">share screen</button>
<input id="name">
<script>
window.nameEvents = 0;
document.getElementById('name').addEventListener('input', () => window.nameEvents++);
window.display = null;
document.getElementById('share').addEventListener('click', async () => {
  window.display = {pending: true};
  try {
    // Without a picker, headless chromium never settles the promise.
    const s = await Promise.race([navigator.mediaDevices.getDisplayMedia({video: true}),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer in 5s')), 5000))]);
    window.displayStream = s;
    const tr = s.getVideoTracks()[0];
    const st = tr.getSettings();
    window.display = {ok: true, label: tr.label, width: st.width || 0, height: st.height || 0,
      surface: st.displaySurface || ''};
  } catch (e) {
    window.display = {ok: false, error: e.name + ': ' + e.message};
  }
});
window.loopback = async (tracks) => {
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => { if (e.candidate) b.addIceCandidate(e.candidate); };
  b.onicecandidate = (e) => { if (e.candidate) a.addIceCandidate(e.candidate); };
  b.ontrack = (e) => {
    const v = document.createElement(e.track.kind);
    v.autoplay = true; v.muted = e.track.kind === "video"; v.srcObject = new MediaStream([e.track]);
    document.body.appendChild(v);
  };
  const s = new MediaStream(tracks);
  for (const tr of tracks) a.addTrack(tr, s);
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  return true;
};
console.log('harness page loaded');
</script>`

// serveHarness serves harnessPage over TLS on 127.0.0.1 with a self-signed
// certificate.
func serveHarness(t *testing.T) string {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(harnessPage))
	}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("test server at %s, want https://127.0.0.1", srv.URL)
	}
	return srv.URL + "/"
}

// displayResult is what the share button's click handler stores.
type displayResult struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Label   string `json:"label"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Surface string `json:"surface"`
}

// shareScreen clicks the share button and returns what getDisplayMedia gave.
func shareScreen(t *testing.T, p *Page) displayResult {
	t.Helper()
	if err := p.Click("#share"); err != nil {
		t.Fatal(err)
	}
	p.WaitJS(t, "getDisplayMedia settles", `window.display !== null && !window.display.pending`, 10*time.Second)
	var d displayResult
	if err := p.Eval(`window.display`, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestHarness checks what the tests rely on, in chromium and in Firefox.
func TestHarness(t *testing.T) {
	for _, name := range []string{"chromium", "firefox"} {
		t.Run(name, func(t *testing.T) {
			b := map[string]func(testing.TB) *Browser{"chromium": Start, "firefox": StartFirefox}[name](t)
			testHarness(t, b)
		})
	}
}

func testHarness(t *testing.T, b *Browser) {
	url := serveHarness(t)
	alice := b.NewPage(t, "alice")
	bob := b.NewPage(t, "bob")
	for _, p := range []*Page{alice, bob} {
		if err := p.Navigate(url); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("instrumentation", func(t *testing.T) {
		var ok bool
		err := alice.Eval(`(() => {
			const pc = new RTCPeerConnection();
			const ok = window.__pcs.length === 1 && window.__pcs[0] === pc &&
				pc instanceof RTCPeerConnection && typeof RTCPeerConnection.generateCertificate === 'function';
			pc.close();
			window.__pcs.length = 0;
			return ok;
		})()`, &ok)
		if err != nil || !ok {
			t.Fatalf("window.__pcs does not track new RTCPeerConnections (ok=%v, err=%v)", ok, err)
		}
	})

	t.Run("separate storage", func(t *testing.T) {
		if err := alice.Eval(`localStorage.setItem('who', 'alice'); document.cookie = 'who=alice'`, nil); err != nil {
			t.Fatal(err)
		}
		var seen string
		if err := bob.Eval(`(localStorage.getItem('who') || '') + '|' + document.cookie`, &seen); err != nil {
			t.Fatal(err)
		}
		if seen != "|" {
			t.Errorf("bob sees alice's storage: %q", seen)
		}
	})

	t.Run("set value", func(t *testing.T) {
		if err := alice.SetValue("#name", "Ada"); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Value  string `json:"value"`
			Events int    `json:"events"`
		}
		if err := alice.Eval(`({value: document.querySelector('#name').value, events: window.nameEvents})`, &got); err != nil {
			t.Fatal(err)
		}
		if got.Value != "Ada" || got.Events != 1 {
			t.Errorf("after SetValue: value %q with %d input events, want \"Ada\" with 1", got.Value, got.Events)
		}
		if err := alice.WaitVisible("#share", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("getUserMedia", func(t *testing.T) {
		var got struct {
			Audio  int `json:"audio"`
			Video  int `json:"video"`
			Width  int `json:"width"`
			Height int `json:"height"`
		}
		err := alice.Eval(`navigator.mediaDevices.getUserMedia({audio: true, video: true}).then((s) => {
			window.cam = s;
			const st = s.getVideoTracks()[0].getSettings();
			return {audio: s.getAudioTracks().length, video: s.getVideoTracks().length, width: st.width, height: st.height};
		})`, &got)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("fake camera: %d audio, %d video track(s), %dx%d", got.Audio, got.Video, got.Width, got.Height)
		if got.Audio != 1 || got.Video != 1 || got.Width == 0 || got.Height == 0 {
			t.Fatalf("getUserMedia gave %+v, want one audio and one sized video track", got)
		}
	})

	t.Run("getDisplayMedia without gesture", func(t *testing.T) {
		// Chromium does not require a user gesture; the fake UI accepts.
		var size string
		err := bob.Eval(`navigator.mediaDevices.getDisplayMedia({video: true}).then((s) => {
			const st = s.getVideoTracks()[0].getSettings();
			s.getTracks().forEach((t) => t.stop());
			return st.width + 'x' + st.height;
		})`, &size)
		t.Logf("getDisplayMedia from Eval (no user gesture): %q, %v", size, err)
		if err != nil {
			t.Errorf("getDisplayMedia without a user gesture failed; the package doc says it succeeds: %v", err)
		}
	})

	t.Run("getDisplayMedia from click", func(t *testing.T) {
		d := shareScreen(t, alice)
		t.Logf("getDisplayMedia from click: %+v", d)
		if !d.OK || d.Width == 0 || d.Height == 0 {
			t.Fatalf("getDisplayMedia from a click failed: %+v", d)
		}
	})

	t.Run("loopback decodes", func(t *testing.T) {
		if err := alice.Eval(`window.loopback([...window.cam.getTracks(), ...window.displayStream.getVideoTracks()])`, nil); err != nil {
			t.Fatal(err)
		}
		alice.WaitJS(t, "both video streams decode and audio arrives", `(async () => {
			const s = await `+StatsJS+`;
			const v = s.filter((x) => x.kind === 'video' && x.framesDecoded > 0 && x.frameWidth > 0);
			const a = s.filter((x) => x.kind === 'audio' && x.packetsReceived > 0 && x.totalAudioEnergy > 0);
			return v.length === 2 && a.length === 1;
		})()`, 20*time.Second)
		stats, err := alice.InboundStats()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stats {
			t.Logf("inbound: %v", s)
		}
		if len(stats) != 3 {
			t.Errorf("got %d inbound streams, want 3", len(stats))
		}
		// Both peer connections connected over loopback, and nothing else.
		pairs := alice.CheckPairs(t)
		if pairs.Connected != 2 || len(pairs.Pairs) < 2 || pairs.Unseen != 0 || pairs.Gone != 0 {
			t.Errorf("selected pairs %+v: want two connected peer connections with a pair each", pairs)
		}
	})
}

// TestAllows: selected pairs may use loopback and what Allow adds, nothing
// else.
func TestAllows(t *testing.T) {
	b := &Browser{name: "test"}
	link := &netns.Link{NearIP: "10.213.7.1", FarIP: "10.213.7.2"}
	for addr, want := range map[string]bool{"127.0.0.1": true, "::1": true, "::ffff:127.0.0.1": true, "10.213.7.2": false, "192.168.1.4": false, "": false} {
		if got := b.allows(addrOf(addr)); got != want {
			t.Errorf("before Allow, %q allowed: %v, want %v", addr, got, want)
		}
	}
	b.Allow(link.Owns)
	for addr, want := range map[string]bool{"127.0.0.1": true, "10.213.7.1": true, "10.213.7.2": true, "10.213.7.5": false, "192.168.1.4": false, "host.local": false} {
		if got := b.allows(addrOf(addr)); got != want {
			t.Errorf("after Allow, %q allowed: %v, want %v", addr, got, want)
		}
	}
}

// TestDisplayMediaFlags checks which chromium flags getDisplayMedia needs in
// headless mode, so that a chromium upgrade that changes what the package
// documentation says fails here.
func TestDisplayMediaFlags(t *testing.T) {
	url := serveHarness(t)
	without := func(names ...string) map[string]any {
		m := DefaultFlags()
		for _, n := range names {
			delete(m, n)
		}
		return m
	}
	tabCapture := without("use-fake-ui-for-media-stream")
	tabCapture["auto-accept-this-tab-capture"] = true
	cases := []struct {
		name      string
		flags     map[string]any
		wantError string // "" when getDisplayMedia from a click succeeds
	}{
		{"without auto-select-desktop-capture-source", without("auto-select-desktop-capture-source"), ""},
		{"without use-fake-ui-for-media-stream", without("use-fake-ui-for-media-stream"), "no answer in 5s"},
		{"without use-fake-device-for-media-stream", without("use-fake-device-for-media-stream"), "NotReadableError"},
		{"auto-accept-this-tab-capture instead of fake ui", tabCapture, "no answer in 5s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := StartWith(t, c.flags)
			p := b.NewPage(t, "p")
			if err := p.Navigate(url); err != nil {
				t.Fatal(err)
			}
			d := shareScreen(t, p)
			t.Logf("getDisplayMedia from click: %+v", d)
			switch {
			case c.wantError == "" && !d.OK:
				t.Errorf("getDisplayMedia failed, want success: %s", d.Error)
			case c.wantError != "" && !strings.Contains(d.Error, c.wantError):
				t.Errorf("getDisplayMedia gave %+v, want error %q", d, c.wantError)
			}
		})
	}
}
