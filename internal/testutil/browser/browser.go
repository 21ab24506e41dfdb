// Package browser drives Debian's headless chromium for end-to-end tests.
//
// A test starts one browser with [Start] and opens one [Page] per participant
// with [Browser.NewPage]. Each page has its own browser context (cookies,
// storage, IndexedDB), so pages behave like separate people. Every page gets an
// instrumentation script before its first navigation: it wraps
// RTCPeerConnection so that every peer connection the page creates is kept in
// window.__pcs, and [StatsJS] / [Page.InboundStats] summarise their inbound
// RTP. Console messages and uncaught exceptions of each page go to the test log,
// prefixed with the page's name.
//
// The browser runs with fake media devices and a fake permission prompt, so
// getUserMedia returns a synthetic camera (640x480 test pattern) and microphone
// (a beep) without asking. Pages must be served from http(s)://127.0.0.1 (a
// secure context): on about:blank navigator.mediaDevices is undefined.
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
//   - Host ICE candidates use the machine's real interface address (not mDNS
//     names) once getUserMedia permission is granted, so peer connections
//     connect within one machine.
//
// TestDisplayMediaFlags re-checks the flag findings, so a chromium upgrade that
// changes them fails there.
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// DefaultChromium is where Debian's chromium package installs the browser.
// The environment variable CONCLAVE_CHROMIUM overrides it.
const DefaultChromium = "/usr/bin/chromium"

// ActionTimeout bounds the page actions that take no explicit timeout
// (Navigate, Eval, Click, SetValue), so that a broken page fails the test
// instead of hanging until the go test deadline.
const ActionTimeout = 30 * time.Second

// DefaultFlags returns the chromium command-line switches that [Start] gives
// every test browser, on top of --headless, --no-sandbox, --disable-gpu,
// --no-first-run and a fresh --user-data-dir. The map is a fresh copy the
// caller may change and pass to [StartWith]. See the package documentation for
// what the switches do to getUserMedia and getDisplayMedia.
func DefaultFlags() map[string]any {
	return map[string]any{
		"disable-background-networking":      true,
		"disable-component-update":           true,
		"disable-sync":                       true,
		"disable-quic":                       true,
		"disable-dev-shm-usage":              true,
		"disable-extensions":                 true,
		"disable-default-apps":               true,
		"no-default-browser-check":           true,
		"password-store":                     "basic",
		"use-mock-keychain":                  true,
		"use-fake-ui-for-media-stream":       true,
		"use-fake-device-for-media-stream":   true,
		"autoplay-policy":                    "no-user-gesture-required",
		"ignore-certificate-errors":          true,
		"auto-select-desktop-capture-source": "Entire screen",
	}
}

// Browser is one running headless chromium shared by the pages of a test.
type Browser struct {
	ctx context.Context // chromedp context that owns the browser process
	log *testLog
}

// Start launches a headless chromium for the test and stops it when the test
// ends. The binary is $CONCLAVE_CHROMIUM or /usr/bin/chromium; if it is
// missing the test fails (it is never skipped): scripts/test installs it.
func Start(t testing.TB) *Browser {
	t.Helper()
	return StartWith(t, DefaultFlags())
}

// StartWith is [Start] with the given switches instead of [DefaultFlags]
// (name without the leading dashes; value true for a bare switch, false to
// leave it out, or a string for --name=value).
func StartWith(t testing.TB, flags map[string]any) *Browser {
	t.Helper()
	return StartExec(t, Chromium(t), flags)
}

// Chromium returns the chromium binary the tests use: $CONCLAVE_CHROMIUM
// or /usr/bin/chromium. It fails the test if it is missing.
func Chromium(t testing.TB) string {
	t.Helper()
	path := os.Getenv("CONCLAVE_CHROMIUM")
	if path == "" {
		path = DefaultChromium
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		t.Fatalf("browser: chromium not found at %s (set CONCLAVE_CHROMIUM to another path): "+
			"run the suite with scripts/test, which installs the Debian chromium package", path)
	}
	return path
}

// StartExec is [StartWith] with the browser started by the program at
// path instead of [Chromium]: a wrapper that runs chromium elsewhere
// (inside a network namespace, see internal/testutil/netns) and passes
// its arguments and file descriptors on; chromedp talks to the browser
// over a pipe.
func StartExec(t testing.TB, path string, flags map[string]any) *Browser {
	t.Helper()
	tl := &testLog{t: t}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 800),
	}
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		opts = append(opts, chromedp.Flag(name, flags[name]))
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx,
		chromedp.WithErrorf(func(format string, args ...any) {
			tl.logf("chromedp: "+format, args...)
		}))

	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	var err error
	select {
	case err = <-started:
	case <-time.After(60 * time.Second):
		err = errors.New("no answer from chromium within 60s")
	}
	if err != nil {
		cancel()
		allocCancel()
		t.Fatalf("browser: start %s: %v", path, err)
	}

	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			tl.logf("browser: close: %v", err)
		}
		cancel()
		allocCancel()
		tl.stop()
	})
	return &Browser{ctx: ctx, log: tl}
}

// Page is one tab in its own browser context, standing for one participant.
// A Page's methods must not be called from several goroutines at once.
type Page struct {
	name    string
	t       testing.TB
	ctx     context.Context
	cancel  context.CancelFunc
	log     *testLog
	done    chan struct{} // closed when the console reader has returned
	closeMu sync.Mutex
	closed  bool
}

// instrumentJS runs in every frame of every page before the page's own
// scripts. It records each RTCPeerConnection in window.__pcs and each
// dedicated Worker in window.__workers ({url, worker}); subclassing keeps
// instanceof and the static methods working.
const instrumentJS = `(() => {
  if (window.__pcs) return;
  window.__pcs = [];
  window.__workers = [];
  const OrigWorker = window.Worker;
  if (OrigWorker) {
    window.Worker = class Worker extends OrigWorker {
      constructor(url, ...rest) {
        super(url, ...rest);
        window.__workers.push({url: String(url), worker: this});
      }
    };
  }
  const Orig = window.RTCPeerConnection;
  if (!Orig) return;
  const Tracked = class RTCPeerConnection extends Orig {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
  window.RTCPeerConnection = Tracked;
  if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = Tracked;
})();`

// NewPage opens a tab in a new browser context (its own cookies and storage)
// and installs the peer-connection instrumentation before any navigation.
// The page's console messages and uncaught exceptions are logged as
// "[name] type: text". The page closes when the test ends.
func (b *Browser) NewPage(t testing.TB, name string) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	p := &Page{name: name, t: t, ctx: ctx, cancel: cancel, log: &testLog{t: t}, done: make(chan struct{})}

	// Console creates the tab; subscribing before the first navigation
	// means no message of the page is lost.
	messages := chromedp.Console(ctx)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: instrumentJS}); err != nil {
		cancel()
		t.Fatalf("browser: new page %s: install instrumentation: %v", name, err)
	}
	go func() {
		defer close(p.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			where := ""
			if m.URL != "" {
				where = fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
			}
			p.log.logf("[%s] %s: %s%s", name, m.Type, m.Text, where)
			if m.IsException() && m.Stack != nil {
				for _, f := range m.Stack.CallFrames {
					p.log.logf("[%s]     at %s (%s:%d:%d)", name, f.FunctionName, f.URL, f.LineNumber+1, f.ColumnNumber+1)
				}
			}
		}
	}()
	t.Cleanup(p.Close)
	return p
}

// Name returns the participant name given to NewPage.
func (p *Page) Name() string { return p.name }

// Context returns the chromedp context of the page's tab, for actions this
// package does not wrap. It is canceled when the page closes.
func (p *Page) Context() context.Context { return p.ctx }

// Close closes the tab and its browser context. It is safe to call more than
// once; NewPage registers it with t.Cleanup.
func (p *Page) Close() {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.cancel()
	<-p.done
	p.log.stop()
}

// Navigate loads url in the page and waits for the load event.
func (p *Page) Navigate(url string) error {
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("%s: navigate %s: %w", p.name, url, err)
	}
	return nil
}

// Eval evaluates the JavaScript expression js in the page, awaits it if it is
// a promise, and decodes its JSON value into out. out may be nil to discard
// the value. A thrown exception or a rejected promise is returned as an error.
func (p *Page) Eval(js string, out any) error {
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
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
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("%s: click %s: %w", p.name, selector, err)
	}
	return nil
}

// setValueJS sets the value of the element matching the selector (argument
// 0) to argument 1 and fires the input and change events typing would fire.
const setValueJS = `((sel, v) => {
  const e = document.querySelector(sel);
  if (!e) throw new Error('no element matches ' + sel);
  e.value = v;
  e.dispatchEvent(new Event('input', {bubbles: true}));
  e.dispatchEvent(new Event('change', {bubbles: true}));
})`

// SetValue waits for the element matching the CSS selector, sets its value
// and dispatches input and change events, as typing would.
func (p *Page) SetValue(selector, value string) error {
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	js := fmt.Sprintf("%s(%s, %s)", setValueJS, jsString(selector), jsString(value))
	err := chromedp.Do(ctx,
		chromedp.WaitReady(chromedp.CSS(selector)),
		chromedp.Evaluate[chromedp.Void](js))
	if err != nil {
		return fmt.Errorf("%s: set value of %s: %w", p.name, selector, err)
	}
	return nil
}

// WaitVisible waits up to timeout until the element matching the CSS selector
// is present and visible.
func (p *Page) WaitVisible(selector string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(selector))); err != nil {
		return fmt.Errorf("%s: wait %v for %s to be visible: %w", p.name, timeout, selector, err)
	}
	return nil
}

// WaitJS evaluates the JavaScript expression js every 100 ms (awaiting it if
// it is a promise) until it yields true, and fails the test with desc and the
// last value or error if that does not happen within timeout.
func (p *Page) WaitJS(t testing.TB, desc string, js string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := "nothing (not evaluated)"
	for {
		ctx, cancel := context.WithDeadline(p.ctx, deadline)
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
		cancel()
		switch {
		case err != nil:
			last = "error: " + err.Error()
		case bytes.Equal(bytes.TrimSpace(raw), []byte("true")):
			return
		case len(raw) == 0:
			last = "undefined"
		default:
			last = abbrev(string(raw))
		}
		if p.ctx.Err() != nil {
			t.Fatalf("%s: %s: page closed; last value %s", p.name, desc, last)
		}
		if !time.Now().Add(100 * time.Millisecond).Before(deadline) {
			t.Fatalf("%s: %s: not true after %v; last value %s\n  expression: %s", p.name, desc, timeout, last, js)
		}
		time.Sleep(100 * time.Millisecond)
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
