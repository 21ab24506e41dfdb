package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultFirefox is where Debian's firefox-esr package installs the browser.
// The environment variable CONCLAVE_FIREFOX overrides it.
const DefaultFirefox = "/usr/bin/firefox-esr"

// FirefoxPrefs returns the preferences that [StartFirefox] gives every
// test Firefox, on top of those puppeteer-core sets for automation. The
// map is a fresh copy the caller may change and put in
// [FirefoxOptions.Prefs].
//
// Findings on Debian firefox-esr 153 (headless), 2026-12:
//   - media.navigator.streams.fake gives a synthetic camera and microphone;
//     media.navigator.permission.disabled skips the prompt. Without
//     media.navigator.permission.fake Firefox does not count the fake
//     devices as capturing, and then gathers only its default route's
//     address (none in a loopback-only namespace).
//   - media.peerconnection.ice.loopback lets it gather 127.0.0.1 at all;
//     media.peerconnection.ice.force_interface is ignored.
//   - Host candidates are mDNS names unless
//     media.peerconnection.ice.obfuscate_host_addresses is off.
//   - The fake devices are a camera (640x480) and a microphone only:
//     headless, getDisplayMedia fails with NotFoundError. On an X server
//     (Xvfb) it captures the screen ("Primary Monitor", the size of the
//     X screen), with or without a user gesture, and without a picker
//     (media.navigator.permission.disabled).
func FirefoxPrefs() map[string]any {
	return map[string]any{
		"media.navigator.streams.fake":        true,
		"media.navigator.permission.disabled": true,
		"media.navigator.permission.fake":     true,
		"media.peerconnection.ice.loopback":   true,
		// The fake camera at Chromium's fake rate (20 fps) rather than 30:
		// two cores carry three browsers and a server under -race.
		"media.navigator.video.default_fps":                 20,
		"media.peerconnection.ice.obfuscate_host_addresses": false,
		"media.autoplay.default":                            0, // allowed
		"media.autoplay.blocking_policy":                    0,
		"media.getusermedia.window.focus_source.enabled":    false,
		"media.setsinkid.enabled":                           true,
		"network.captive-portal-service.enabled":            false,
		"network.connectivity-service.enabled":              false,
		"browser.safebrowsing.malware.enabled":              false,
		"browser.safebrowsing.phishing.enabled":             false,
		"privacy.resistFingerprinting":                      false,
	}
}

// FirefoxOptions adjust [StartFirefoxWith].
type FirefoxOptions struct {
	// Prefs replaces [FirefoxPrefs] when not nil.
	Prefs map[string]any
	// Wrapper, when set, is a program that runs node (with the
	// wrapper's arguments) elsewhere: inside a network namespace of the
	// test (netns.Link.Wrapper). The driver and Firefox then run there.
	Wrapper string
}

// Firefox returns the firefox-esr binary the tests use: $CONCLAVE_FIREFOX
// or /usr/bin/firefox-esr. It fails the test if it is missing.
func Firefox(t testing.TB) string {
	t.Helper()
	path := os.Getenv("CONCLAVE_FIREFOX")
	if path == "" {
		path = DefaultFirefox
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		t.Fatalf("browser: firefox not found at %s (set CONCLAVE_FIREFOX to another path): "+
			"run the suite with scripts/test, which installs the Debian firefox-esr package", path)
	}
	return path
}

// driverDir is the directory of the node driver (bidi/driver.mjs and its
// node_modules, which scripts/test installs with npm ci).
func driverDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("browser: cannot locate the package source for the BiDi driver")
	}
	dir := filepath.Join(filepath.Dir(file), "bidi")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "puppeteer-core", "package.json")); err != nil {
		t.Fatalf("browser: puppeteer-core is not installed in %s: run the suite with scripts/test, "+
			"which runs `npm ci` there (or run it yourself: cd %s && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts)", dir, dir)
	}
	return dir
}

// StartFirefox launches a firefox-esr for the test, driven over WebDriver
// BiDi, and stops it when the test ends. It draws on an X server of its
// own (Xvfb) rather than run headless: Firefox's fake devices are a camera
// and a microphone only, and getDisplayMedia needs a screen to capture. The binary is
// $CONCLAVE_FIREFOX or /usr/bin/firefox-esr; the test fails if it or the
// driver's node modules are missing. The test must run in a loopback-only
// network namespace (netns.Isolate).
func StartFirefox(t testing.TB) *Browser {
	t.Helper()
	return StartFirefoxWith(t, FirefoxOptions{})
}

// StartFirefoxWith is [StartFirefox] with options.
func StartFirefoxWith(t testing.TB, opts FirefoxOptions) *Browser {
	t.Helper()
	if opts.Wrapper == "" {
		requireLoopbackOnly(t, "firefox")
	}
	exe := Firefox(t)
	dir := driverDir(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("browser: node not found (the Firefox driver runs on it): scripts/test installs Debian's nodejs")
	}
	prefs := opts.Prefs
	if prefs == nil {
		prefs = FirefoxPrefs()
	}
	tl := &testLog{t: t}
	var cmd *exec.Cmd
	if opts.Wrapper != "" {
		cmd = exec.Command(opts.Wrapper, filepath.Join(dir, "driver.mjs"))
	} else {
		cmd = exec.Command(node, filepath.Join(dir, "driver.mjs"))
	}
	cmd.Dir = dir
	home := t.TempDir()
	// Firefox keeps its profile in a temporary directory puppeteer makes;
	// HOME and TMPDIR keep everything else it writes inside the test's.
	cmd.Env = append(os.Environ(), "HOME="+home, "TMPDIR="+home, "MOZ_CRASHREPORTER_DISABLE=1",
		"DISPLAY="+startXvfb(t, tl))
	d, err := startDriver(cmd, tl)
	if err != nil {
		t.Fatalf("browser: start the Firefox driver: %v", err)
	}
	t.Cleanup(func() {
		d.stop()
		tl.stop()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var version string
	launch := map[string]any{"op": "launch", "executablePath": exe, "prefs": prefs, "timeout": 60000, "headless": false}
	if err := d.call(ctx, launch, &version); err != nil {
		t.Fatalf("browser: launch %s: %v", exe, err)
	}
	tl.logf("browser: %s over WebDriver BiDi", version)
	b := &Browser{name: "firefox", log: tl}
	b.open = func(t testing.TB, name string) (engine, error) { return d.openTab(t, name) }
	return b
}

// bidiDriver is the node process that drives Firefox (bidi/driver.mjs).
type bidiDriver struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	log   *testLog
	done  chan struct{} // closed when the driver's output ends
	mu    sync.Mutex
	next  int
	calls map[int]chan driverReply
	tabs  map[string]*firefoxTab
	// stderr keeps the last lines Firefox and the driver wrote, shown if
	// Firefox goes away during the test; closing is set once the harness
	// closes it.
	stderr  []string
	closing bool
}

// stderrKept is how many lines of Firefox's output are kept.
const stderrKept = 60

type driverReply struct {
	ID    int    `json:"id"`
	OK    bool   `json:"ok"`
	Value string `json:"value"`
	Error string `json:"error"`
	// Events.
	Event  string `json:"event"`
	Page   string `json:"page"`
	Type   string `json:"type"`
	Text   string `json:"text"`
	URL    string `json:"url"`
	Line   int    `json:"line"`
	Reason string `json:"reason"`
	has    bool   // Value was present
}

func startDriver(cmd *exec.Cmd, tl *testLog) (*bidiDriver, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &bidiDriver{cmd: cmd, in: in, log: tl, done: make(chan struct{}),
		calls: map[int]chan driverReply{}, tabs: map[string]*firefoxTab{}}
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 64<<10), 4<<20)
		for s.Scan() {
			d.mu.Lock()
			d.stderr = append(d.stderr, s.Text())
			if len(d.stderr) > stderrKept {
				d.stderr = d.stderr[len(d.stderr)-stderrKept:]
			}
			d.mu.Unlock()
		}
	}()
	go d.read(out)
	return d, nil
}

func (d *bidiDriver) read(out io.Reader) {
	defer func() {
		d.mu.Lock()
		for id, c := range d.calls {
			c <- driverReply{ID: id, Error: "the Firefox driver exited"}
			delete(d.calls, id)
		}
		d.mu.Unlock()
		close(d.done)
	}()
	s := bufio.NewScanner(out)
	s.Buffer(make([]byte, 64<<10), 64<<20)
	for s.Scan() {
		var r driverReply
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			d.log.logf("firefox driver: %s", s.Text())
			continue
		}
		var probe struct {
			Value *string `json:"value"`
		}
		if json.Unmarshal(s.Bytes(), &probe) == nil && probe.Value != nil {
			r.has = true
		}
		switch r.Event {
		case "":
			d.mu.Lock()
			c := d.calls[r.ID]
			delete(d.calls, r.ID)
			d.mu.Unlock()
			if c != nil {
				c <- r
			}
		case "console":
			d.mu.Lock()
			tab := d.tabs[r.Page]
			d.mu.Unlock()
			where := ""
			if r.URL != "" {
				where = fmt.Sprintf(" (%s:%d)", r.URL, r.Line+1)
			}
			if tab != nil {
				tab.log.logf("[%s] %s: %s%s", r.Page, r.Type, r.Text, where)
			} else {
				d.log.logf("firefox [%s] %s: %s%s", r.Page, r.Type, r.Text, where)
			}
		case "exit":
			d.mu.Lock()
			closing, last := d.closing, slices.Clone(d.stderr)
			d.mu.Unlock()
			if closing {
				continue
			}
			// Firefox went away in the middle of the test: what it said
			// last is the best clue.
			d.log.logf("firefox driver: %s during the test; Firefox's and the driver's last output:\n  %s", r.Reason, strings.Join(last, "\n  "))
		}
	}
}

// call sends a request and waits for its reply; out (if not nil) receives
// the decoded value.
func (d *bidiDriver) call(ctx context.Context, req map[string]any, out any) error {
	raw, has, err := d.callRaw(ctx, req)
	if err != nil || out == nil {
		return err
	}
	if !has {
		return errors.New("no value")
	}
	return json.Unmarshal(raw, out)
}

func (d *bidiDriver) callRaw(ctx context.Context, req map[string]any) ([]byte, bool, error) {
	c := make(chan driverReply, 1)
	d.mu.Lock()
	d.next++
	id := d.next
	d.calls[id] = c
	d.mu.Unlock()
	req["id"] = id
	if dl, ok := ctx.Deadline(); ok {
		if _, set := req["timeout"]; !set {
			req["timeout"] = max(1, time.Until(dl).Milliseconds())
		}
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, false, err
	}
	select {
	case <-d.done:
		return nil, false, errors.New("the Firefox driver exited")
	default:
	}
	d.mu.Lock()
	_, err = d.in.Write(append(line, '\n'))
	d.mu.Unlock()
	if err != nil {
		return nil, false, fmt.Errorf("write to the Firefox driver: %w", err)
	}
	select {
	case r := <-c:
		if !r.OK {
			return nil, false, errors.New(r.Error)
		}
		return []byte(r.Value), r.has, nil
	case <-ctx.Done():
		d.mu.Lock()
		delete(d.calls, id)
		d.mu.Unlock()
		return nil, false, fmt.Errorf("%s: %w", req["op"], ctx.Err())
	}
}

// stop closes Firefox and ends the driver.
func (d *bidiDriver) stop() {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := d.call(ctx, map[string]any{"op": "close"}, nil); err != nil {
		d.log.logf("browser: close firefox: %v", err)
	}
	d.in.Close()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.log.logf("browser: the Firefox driver did not exit; killing it")
		d.cmd.Process.Kill()
		<-d.done
	}
	d.cmd.Wait()
}

// firefoxTab is a page in Firefox: a tab in a browser context (a BiDi
// user context) of its own.
type firefoxTab struct {
	d      *bidiDriver
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	log    *testLog
}

func (d *bidiDriver) openTab(t testing.TB, name string) (*firefoxTab, error) {
	ctx, cancel := context.WithCancel(context.Background())
	tab := &firefoxTab{d: d, name: name, ctx: ctx, cancel: cancel, log: &testLog{t: t}}
	d.mu.Lock()
	if d.tabs[name] != nil {
		d.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("a page named %s is open", name)
	}
	d.tabs[name] = tab
	d.mu.Unlock()
	cctx, ccancel := context.WithTimeout(ctx, ActionTimeout)
	defer ccancel()
	if err := d.call(cctx, map[string]any{"op": "newPage", "page": name}, nil); err != nil {
		tab.close()
		return nil, err
	}
	return tab, nil
}

func (f *firefoxTab) context() context.Context { return f.ctx }

func (f *firefoxTab) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.d.call(ctx, map[string]any{"op": "closePage", "page": f.name}, nil); err != nil {
		f.log.logf("browser: close firefox page %s: %v", f.name, err)
	}
	f.cancel()
	f.d.mu.Lock()
	if f.d.tabs[f.name] == f {
		delete(f.d.tabs, f.name)
	}
	f.d.mu.Unlock()
	f.log.stop()
}

func (f *firefoxTab) addScript(ctx context.Context, src string) error {
	return f.d.call(ctx, map[string]any{"op": "addScript", "page": f.name, "source": src}, nil)
}

func (f *firefoxTab) navigate(ctx context.Context, url string) error {
	return f.d.call(ctx, map[string]any{"op": "navigate", "page": f.name, "url": url}, nil)
}

func (f *firefoxTab) eval(ctx context.Context, js string) ([]byte, error) {
	raw, _, err := f.d.callRaw(ctx, map[string]any{"op": "eval", "page": f.name, "js": js})
	return raw, err
}

func (f *firefoxTab) click(ctx context.Context, selector string) error {
	return f.d.call(ctx, map[string]any{"op": "click", "page": f.name, "selector": selector}, nil)
}

// startXvfb starts an X server for one Firefox, stopped when the test
// ends, and returns its display (":N"). Xvfb picks a free display number
// itself (-displayfd) and listens on no network socket.
func startXvfb(t testing.TB, tl *testLog) string {
	t.Helper()
	path, err := exec.LookPath("Xvfb")
	if err != nil {
		t.Fatalf("browser: Xvfb not found (Firefox draws on it): scripts/test installs Debian's xvfb")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(path, "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-nolisten", "local", "-noreset")
	cmd.ExtraFiles = []*os.File{w}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatalf("browser: start Xvfb: %v", err)
	}
	w.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 16))
		got <- strings.TrimSpace(string(b))
	}()
	select {
	case n := <-got:
		if n == "" {
			<-exited
			t.Fatalf("browser: Xvfb gave no display number: %s", out.String())
		}
		tl.logf("browser: Xvfb on display :%s", n)
		return ":" + n
	case <-time.After(20 * time.Second):
		t.Fatalf("browser: Xvfb did not start within 20 s: %s", out.String())
	}
	return ""
}
