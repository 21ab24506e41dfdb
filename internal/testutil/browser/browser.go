// Package browser drives real browsers for end-to-end tests: Debian's
// headless chromium over the DevTools protocol (chromedp), and Debian's
// firefox-esr over WebDriver BiDi (puppeteer-core, in a small node process:
// bidi/driver.mjs).
//
// A test starts one browser with [Start] (chromium) or [StartFirefox] and
// opens one [Page] per participant with [Browser.NewPage]. Each page has its
// own browser context (cookies, storage, IndexedDB), so pages behave like
// separate people. Every page gets an instrumentation script before its
// first navigation: it wraps RTCPeerConnection so that every peer
// connection the page creates is kept in window.__pcs, and [StatsJS] /
// [Page.InboundStats] summarise their inbound RTP. Console messages and
// uncaught exceptions of each page go to the test log, prefixed with the
// page's name.
//
// Both browsers run with fake media devices and no permission prompt, so
// getUserMedia returns a synthetic camera and microphone without asking.
// Pages must be served from http(s)://127.0.0.1 (a secure context): on
// about:blank navigator.mediaDevices is undefined.
//
// # Loopback only
//
// Test traffic stays on loopback. Both browsers gather ICE candidates on
// every interface they see, so outside a network namespace a server on
// 127.0.0.1 gets pairs from the machine's own non-loopback address. A
// package with browser tests therefore runs its tests in a network
// namespace that has only lo (netns.Isolate from TestMain); [Start] and
// [StartFirefox] fail the test anywhere else. Chromium gets
// --allow-loopback-in-peer-connection and Firefox
// media.peerconnection.ice.loopback, so that they offer 127.0.0.1 at all.
// A browser started in another namespace of the test's own ([StartExec],
// [FirefoxOptions.Wrapper]) says which addresses are the test's with
// [Browser.Allow].
//
// Every page checks this when it closes: each peer connection that
// connected must have a selected candidate pair, and both ends of every
// selected pair must be allowed (loopback unless widened): otherwise the
// test fails. [Page.SelectedPairs] gives them to tests that want to look.
//
// # Findings on Debian chromium 156 (headless, with [DefaultFlags])
//
// Measured by TestHarness and TestDisplayMediaFlags on a page served by
// httptest.NewTLSServer (https://127.0.0.1, self-signed certificate accepted
// through --ignore-certificate-errors), 2026-11-22:
//
//   - getUserMedia({audio: true, video: true}) succeeds without a prompt: one
//     audio track (a periodic beep) and one 640x480 video track (a moving test
//     pattern).
//   - getDisplayMedia({video: true}) succeeds, from a click handler triggered
//     by [Page.Click] and also without any user gesture (from [Page.Eval]):
//     chromium does not demand transient activation for it. The track is a
//     synthetic fake screen, label "screen:-3:0", displaySurface "monitor",
//     800x600 at 30 fps by default; it honours size constraints by scaling
//     ({width: 1280, height: 720} gives 1280x720, 1920x1080 works too), and
//     {audio: true} adds an audio track. Its frames encode, cross a loopback
//     peer connection and decode like the camera's.
//   - The flag that makes it work is --use-fake-ui-for-media-stream together
//     with --use-fake-device-for-media-stream.
//     --auto-select-desktop-capture-source is not needed (kept, harmless).
//     Without the fake UI the promise never settles (headless chromium has no
//     picker to show), also with --auto-accept-this-tab-capture and
//     preferCurrentTab. Without the fake device it fails with
//     "NotReadableError: Could not start video source" (no display to
//     capture). --enable-usermedia-screen-capturing changes nothing.
//   - totalAudioEnergy of an inbound audio stream grows only while the
//     received track plays in an unmuted <audio> element (autoplay is allowed
//     by --autoplay-policy=no-user-gesture-required); packetsReceived grows
//     regardless.
//   - The first decoded frames of a stream can be smaller than the source (the
//     encoder starts low while bandwidth estimation ramps up: 800x450 for an
//     800x600 screen), so tests that check sizes should poll with
//     [Page.WaitJS] rather than read once.
//   - Host ICE candidates use the interfaces' real addresses (not mDNS
//     names) once getUserMedia permission is granted. Outside a network
//     namespace that includes the machine's own non-loopback address, and
//     a loopback server then gets pairs from it; in the loopback-only
//     namespace of the tests, --allow-loopback-in-peer-connection gives
//     127.0.0.1.
//
// TestDisplayMediaFlags re-checks the flag findings, so a chromium upgrade that
// changes them fails there.
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"conclave/internal/testutil/netns"
)

// ActionTimeout bounds the page actions that take no explicit timeout
// (Navigate, Eval, Click, SetValue), so that a broken page fails the test
// instead of hanging until the go test deadline.
const ActionTimeout = 30 * time.Second

// Browser is one running browser shared by the pages of a test.
type Browser struct {
	name    string // "chromium" or "firefox"
	log     *testLog
	open    func(t testing.TB, name string) (engine, error)
	mu      sync.Mutex
	allowed []func(netip.Addr) bool
}

// engine is what a page needs from its browser: chromium's (chromedp) or
// Firefox's (WebDriver BiDi).
type engine interface {
	navigate(ctx context.Context, url string) error
	// eval returns the JSON text of the value of js (awaited if it is a
	// promise), or nothing when it is undefined.
	eval(ctx context.Context, js string) ([]byte, error)
	// click clicks the centre of the element matching selector with real
	// pointer events, once it is visible.
	click(ctx context.Context, selector string) error
	// addScript runs src in every new document before the page's own.
	addScript(ctx context.Context, src string) error
	// context is canceled when the page closes.
	context() context.Context
	close()
}

// Name returns "chromium" or "firefox".
func (b *Browser) Name() string { return b.name }

// Allow adds to the addresses that the selected candidate pairs of this
// browser's pages may use: loopback always, and every address for which
// one of the given functions is true (netns.Link.Owns, for a browser run
// in a test's own namespaces).
func (b *Browser) Allow(owns func(netip.Addr) bool) {
	b.mu.Lock()
	b.allowed = append(b.allowed, owns)
	b.mu.Unlock()
}

func (b *Browser) allows(a netip.Addr) bool {
	if a = a.Unmap(); a.IsLoopback() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.allowed {
		if f(a) {
			return true
		}
	}
	return false
}

// requireLoopbackOnly fails the test unless it runs in a network namespace
// with only loopback interfaces (netns.Isolate).
func requireLoopbackOnly(t testing.TB, what string) {
	t.Helper()
	ok, err := netns.LoopbackOnly()
	if err != nil {
		t.Fatalf("browser: list network interfaces: %v", err)
	}
	if !ok {
		t.Fatalf("browser: %s would see this machine's network interfaces and gather candidates on them: "+
			"browser tests run in a loopback-only network namespace (call netns.Isolate from the package's TestMain), "+
			"or in a namespace of the test's own through a wrapper (StartExec, FirefoxOptions.Wrapper)", what)
	}
}

// Page is one tab in its own browser context, standing for one participant.
// A Page's methods must not be called from several goroutines at once.
type Page struct {
	name    string
	t       testing.TB
	b       *Browser
	e       engine
	log     *testLog
	closeMu sync.Mutex
	closed  bool
}

// instrumentJS runs in every frame of every page before the page's own
// scripts. It records each RTCPeerConnection in window.__pcs and each
// dedicated Worker in window.__workers ({url, worker}); subclassing keeps
// instanceof and the static methods working. It also records the selected
// candidate pair of every peer connection that connects (pairsJS).
const instrumentJS = `(() => {
  if (window.__pcs) return;
  window.__pcs = [];
  window.__workers = [];
  window.__pairs = {};
  window.__connected = 0;
  const OrigWorker = window.Worker;
  if (OrigWorker) {
    window.Worker = class Worker extends OrigWorker {
      constructor(url, ...rest) {
        super(url, ...rest);
        window.__workers.push({url: String(url), worker: this});
      }
    };
  }
  // The selected pair of a peer connection: the transport's selected pair
  // (Chromium), or the pair Firefox marks selected, or a nominated pair
  // that succeeded.
  window.__selectedPairs = async (pc) => {
    const stats = await pc.getStats();
    const ids = new Set();
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) ids.add(s.selectedCandidatePairId); });
    if (ids.size === 0) stats.forEach((s) => { if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) ids.add(s.id); });
    const out = [];
    const end = (c) => c ? {address: String(c.address ?? c.ip ?? ''), port: c.port || 0, type: c.candidateType || '', protocol: c.protocol || '', relayProtocol: c.relayProtocol || ''} : {address: '', port: 0, type: '', protocol: '', relayProtocol: ''};
    for (const id of ids) {
      const p = stats.get(id);
      if (!p) continue;
      out.push({local: end(stats.get(p.localCandidateId)), remote: end(stats.get(p.remoteCandidateId))});
    }
    return out;
  };
  const record = async (pc) => {
    try {
      for (const p of await window.__selectedPairs(pc)) {
        window.__pairs[JSON.stringify(p)] = p;
        pc.__pairSeen = true;
      }
    } catch (e) { /* closed meanwhile */ }
  };
  const Orig = window.RTCPeerConnection;
  if (!Orig) return;
  const Tracked = class RTCPeerConnection extends Orig {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
      let counted = false;
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState !== 'connected') return;
        if (!counted) { counted = true; this.__connectedOnce = true; window.__connected++; }
        record(this);
        setTimeout(() => record(this), 1000);
      });
    }
  };
  window.RTCPeerConnection = Tracked;
  if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = Tracked;
})();`

// NewPage opens a tab in a new browser context (its own cookies and storage)
// and installs the peer-connection instrumentation before any navigation.
// The page's console messages and uncaught exceptions are logged as
// "[name] type: text". The page closes when the test ends, after checking
// its selected candidate pairs (see the package documentation).
func (b *Browser) NewPage(t testing.TB, name string) *Page {
	t.Helper()
	e, err := b.open(t, name)
	if err != nil {
		t.Fatalf("browser: new %s page %s: %v", b.name, name, err)
	}
	p := &Page{name: name, t: t, b: b, e: e, log: &testLog{t: t}}
	if err := p.AddScript(instrumentJS); err != nil {
		e.close()
		t.Fatalf("browser: new page %s: install instrumentation: %v", name, err)
	}
	t.Cleanup(p.Close)
	return p
}

// Name returns the participant name given to NewPage.
func (p *Page) Name() string { return p.name }

// Browser returns the browser the page belongs to.
func (p *Page) Browser() *Browser { return p.b }

// Context returns a context that is canceled when the page closes. For a
// chromium page it is the chromedp context of the page's tab, for actions
// this package does not wrap.
func (p *Page) Context() context.Context { return p.e.context() }

// Close checks the page's selected candidate pairs (CheckPairs), then closes
// the tab and its browser context. It is safe to call more than once;
// NewPage registers it with t.Cleanup.
func (p *Page) Close() {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.e.context().Err() == nil {
		p.checkPairs(p.t)
	}
	p.e.close()
	p.log.stop()
}

// AddScript makes src run in every new document of the page, before the
// page's own scripts (from the next navigation on).
func (p *Page) AddScript(src string) error {
	ctx, cancel := context.WithTimeout(p.e.context(), ActionTimeout)
	defer cancel()
	if err := p.e.addScript(ctx, src); err != nil {
		return fmt.Errorf("%s: add script: %w", p.name, err)
	}
	return nil
}

// Navigate loads url in the page and waits for the load event.
func (p *Page) Navigate(url string) error {
	ctx, cancel := context.WithTimeout(p.e.context(), ActionTimeout)
	defer cancel()
	if err := p.e.navigate(ctx, url); err != nil {
		return fmt.Errorf("%s: navigate %s: %w", p.name, url, err)
	}
	return nil
}

// Eval evaluates the JavaScript expression js in the page, awaits it if it is
// a promise, and decodes its JSON value into out. out may be nil to discard
// the value. A thrown exception or a rejected promise is returned as an error.
func (p *Page) Eval(js string, out any) error {
	ctx, cancel := context.WithTimeout(p.e.context(), ActionTimeout)
	defer cancel()
	raw, err := p.e.eval(ctx, js)
	if err != nil {
		return fmt.Errorf("%s: eval %s: %w", p.name, abbrev(js), err)
	}
	if out == nil {
		return nil
	}
	if len(raw) == 0 {
		return fmt.Errorf("%s: eval %s: result is undefined", p.name, abbrev(js))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: eval %s: decode %s: %w", p.name, abbrev(js), abbrev(string(raw)), err)
	}
	return nil
}

// Click waits until the element matching the CSS selector is visible and
// clicks its centre with real mouse events, which gives the page the user
// activation that APIs such as getDisplayMedia require.
func (p *Page) Click(selector string) error {
	ctx, cancel := context.WithTimeout(p.e.context(), ActionTimeout)
	defer cancel()
	if err := p.e.click(ctx, selector); err != nil {
		return fmt.Errorf("%s: click %s: %w", p.name, selector, err)
	}
	return nil
}

// setValueJS sets the value of the element matching the selector (argument
// 0) to argument 1 and fires the input and change events typing would fire.
// It returns false while no element matches.
const setValueJS = `((sel, v) => {
  const e = document.querySelector(sel);
  if (!e) return false;
  e.value = v;
  e.dispatchEvent(new Event('input', {bubbles: true}));
  e.dispatchEvent(new Event('change', {bubbles: true}));
  return true;
})`

// SetValue waits for the element matching the CSS selector, sets its value
// and dispatches input and change events, as typing would.
func (p *Page) SetValue(selector, value string) error {
	js := fmt.Sprintf("%s(%s, %s)", setValueJS, jsString(selector), jsString(value))
	if err := p.poll(js, ActionTimeout); err != nil {
		return fmt.Errorf("%s: set value of %s: %w", p.name, selector, err)
	}
	return nil
}

// visibleJS is true when the element matching the selector (argument 0)
// takes up space on the page and is not hidden.
const visibleJS = `((sel) => {
  const e = document.querySelector(sel);
  if (!e) return false;
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden';
})`

// WaitVisible waits up to timeout until the element matching the CSS selector
// is present and visible.
func (p *Page) WaitVisible(selector string, timeout time.Duration) error {
	if err := p.poll(fmt.Sprintf("%s(%s)", visibleJS, jsString(selector)), timeout); err != nil {
		return fmt.Errorf("%s: wait %v for %s to be visible: %w", p.name, timeout, selector, err)
	}
	return nil
}

// poll evaluates js every 100 ms until it yields true or timeout passes.
func (p *Page) poll(js string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "nothing (not evaluated)"
	for {
		ctx, cancel := context.WithDeadline(p.e.context(), deadline)
		raw, err := p.e.eval(ctx, js)
		cancel()
		switch {
		case err != nil:
			last = "error: " + err.Error()
		case string(bytes.TrimSpace(raw)) == "true":
			return nil
		case len(raw) == 0:
			last = "undefined"
		default:
			last = abbrev(string(raw))
		}
		if p.e.context().Err() != nil {
			return fmt.Errorf("page closed; last value %s", last)
		}
		if !time.Now().Add(100 * time.Millisecond).Before(deadline) {
			return fmt.Errorf("not true after %v; last value %s", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitJS evaluates the JavaScript expression js every 100 ms (awaiting it if
// it is a promise) until it yields true, and fails the test with desc and the
// last value or error if that does not happen within timeout.
func (p *Page) WaitJS(t testing.TB, desc string, js string, timeout time.Duration) {
	t.Helper()
	if err := p.poll(js, timeout); err != nil {
		t.Fatalf("%s: %s: %v\n  expression: %s", p.name, desc, err, js)
	}
}

// testLog forwards to t.Logf until stop is called, so that goroutines reading
// browser events cannot log after the test has finished (which panics).
type testLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf(format, args...)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// jsString returns s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// abbrev shortens s for error messages.
func abbrev(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
