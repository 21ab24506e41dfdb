package browser

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// DefaultChromium is where Debian's chromium package installs the browser.
// The environment variable CONCLAVE_CHROMIUM overrides it.
const DefaultChromium = "/usr/bin/chromium"

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
		// Without it chromium gathers no candidate on lo, and a browser
		// in a loopback-only namespace has no other interface.
		"allow-loopback-in-peer-connection": true,
	}
}

// Start launches a headless chromium for the test and stops it when the test
// ends. The binary is $CONCLAVE_CHROMIUM or /usr/bin/chromium; if it is
// missing the test fails (it is never skipped): scripts/test installs it.
// The test must run in a loopback-only network namespace (netns.Isolate).
func Start(t testing.TB) *Browser {
	t.Helper()
	return StartWith(t, DefaultFlags())
}

// StartWith is [Start] with the given switches instead of [DefaultFlags]
// (name without the leading dashes; value true for a bare switch, false to
// leave it out, or a string for --name=value).
func StartWith(t testing.TB, flags map[string]any) *Browser {
	t.Helper()
	requireLoopbackOnly(t, "chromium")
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
// over a pipe. Its pages' selected candidate pairs must still be on
// loopback unless [Browser.Allow] says otherwise.
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
	b := &Browser{name: "chromium", log: tl}
	b.open = func(t testing.TB, name string) (engine, error) { return openChromiumTab(ctx, t, name) }
	return b
}

// chromiumTab is a page in chromium: a tab in a browser context of its own.
type chromiumTab struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the console reader has returned
	log    *testLog
}

func openChromiumTab(browserCtx context.Context, t testing.TB, name string) (*chromiumTab, error) {
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	c := &chromiumTab{ctx: ctx, cancel: cancel, done: make(chan struct{}), log: &testLog{t: t}}
	// Console creates the tab; subscribing before the first navigation
	// means no message of the page is lost.
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(c.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			where := ""
			if m.URL != "" {
				where = fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
			}
			c.log.logf("[%s] %s: %s%s", name, m.Type, m.Text, where)
			if m.IsException() && m.Stack != nil {
				for _, f := range m.Stack.CallFrames {
					c.log.logf("[%s]     at %s (%s:%d:%d)", name, f.FunctionName, f.URL, f.LineNumber+1, f.ColumnNumber+1)
				}
			}
		}
	}()
	return c, nil
}

func (c *chromiumTab) context() context.Context { return c.ctx }

func (c *chromiumTab) close() {
	c.cancel()
	<-c.done
	c.log.stop()
}

func (c *chromiumTab) addScript(ctx context.Context, src string) error {
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
	return err
}

func (c *chromiumTab) navigate(ctx context.Context, url string) error {
	return chromedp.Do(ctx, chromedp.Navigate(url))
}

func (c *chromiumTab) eval(ctx context.Context, js string) ([]byte, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
}

func (c *chromiumTab) click(ctx context.Context, selector string) error {
	return chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector)))
}
