package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"golang.org/x/image/vp8"

	"conclave/internal/audit"
	"conclave/internal/codecs"
	"conclave/internal/e2ee"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/netns"
	"conclave/internal/testutil/pgtest"
	"conclave/internal/testutil/wait"
)

// A cluster of real processes, each in its own network namespace of a
// LAN the test builds (internal/testutil/netns): the management node
// (conclave serve --cluster-listen), two conference nodes (conclave node
// run) and the browsers.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// conclaveBinary builds cmd/conclave once per test process.
func conclaveBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "conclave-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "conclave")
		out, err := exec.Command("go", "build", "-o", builtBin, "conclave/cmd/conclave").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// proc is a conclave process of the cluster.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startProc runs bin with args inside host's namespace until the test
// ends; its output goes to the test log and a buffer.
func startProc(t *testing.T, lan *netns.LAN, host, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = lan.Command(host, bin, args...)
	w := io.MultiWriter(p.out, levelFilter{prefixWriter{t: t, prefix: name + ": "}})
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The parent-death signal fires when the thread that started the
	// process ends, not the test process: a goroutine locked to its thread
	// that ends (netns.LAN.DialContext's) would kill a node started from
	// that thread. So the process is started from a thread of its own,
	// held until the process ends.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			// What the level filter left out (a panic's trace, the info
			// lines) shows what the process did last.
			lines := strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n")
			t.Logf("%s: the last lines of its output:\n%s", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	return p
}

// stop sends sig and waits for the process to end.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	// ip netns exec replaces itself with the program (exec), so the pid is
	// the node's.
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLog waits until the process has written s.
func (p *proc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	wait.For(p.t, p.name+" to log "+s, timeout, func() bool { return p.out.Contains(s) })
}

// prefixWriter writes lines to the test log with a prefix.
type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(b), nil
}

// run runs bin with args (in the root of the test's namespace, or in host
// when host is not empty) and returns its output.
func run(t *testing.T, lan *netns.LAN, host, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if host != "" {
		cmd = lan.Command(host, bin, args...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

var enrolRE = regexp.MustCompile(`-token (\S+) -ca-pin (\S+)`)

// TestCluster: three browsers on two conference nodes of a cluster hold
// one meeting; the management node, the nodes and the browsers are
// separate processes in separate network namespaces.
//
//   - The meeting spans the nodes: each browser decodes the others' video
//     and hears their audio; what node B receives from node A over their
//     link is SFrame ciphertext (the relay capture's VP8 key frames do not
//     decode), while the browsers decode it.
//   - Management down: with the management process stopped, a newcomer
//     joins with the right PIN, a wrong PIN is refused, the meeting goes
//     on; when management is back, the refusal of the outage is in its
//     audit log, from node B.
//   - Node loss: the host on node A locks the room; node A is killed
//     (SIGKILL); the host's browser moves to node B by itself and decodes
//     again — the test prints how long it took (at most 5 s) — still a
//     host, the room still locked.
func TestCluster(t *testing.T) {
	bin := conclaveBinary(t)
	lan := netns.NewLAN(t, "mgmt", "a", "b", "clients")
	a, b := lan.Addr("a"), lan.Addr("b")
	mdata := t.TempDir()
	// The management store is PostgreSQL (Debian's, started by the test;
	// its Unix socket is reached from the management node's namespace).
	db := pgtest.NewDatabase(t)
	run(t, lan, "", bin, "admin", "create-room", "-data", mdata, "-database", db, "-alias", "board", "-name", "Board", "-access", "pin",
		"-host-pin", vaultHostPIN, "-guest-pin", vaultGuestPIN)
	mgmt, serveArgs := startManagement(t, lan, bin, "mgmt", mdata, db)

	nodes := map[string]*proc{}
	nodeData := map[string]string{}
	for _, n := range []struct{ name, host string }{{"node-a", "a"}, {"node-b", "b"}} {
		nodes[n.name], nodeData[n.name] = startConferenceNode(t, lan, bin, mdata, db, "mgmt", n.name, n.host, "")
	}
	for name, p := range nodes {
		p.waitLog("cluster: configuration received", 60*time.Second)
		other := "node-a"
		if name == "node-a" {
			other = "node-b"
		}
		p.waitLog(`msg="cluster: linked to a node" node=`+name+` node=`+other, 60*time.Second)
	}

	chromium := browser.Chromium(t)
	br := browser.StartExec(t, lan.Wrapper(t, "clients", chromium), browser.DefaultFlags())
	br.Allow(lan.Owns)
	urlA, urlB := "https://"+a+":8443", "https://"+b+":8443"
	ann := knock(t, br, urlA, "board", "Ann", vaultHostPIN)
	ann.inMeeting(30 * time.Second)
	bob := knock(t, br, urlB, "board", "Bob", vaultGuestPIN)
	bob.inMeeting(30 * time.Second)
	// What crosses from A to B while Cat joins on B (her first frames of
	// Ann's video are key frames, asked for across the link) is captured
	// on B.
	captured := startRelayCapture(t, lan, "b", 12)
	cat := knock(t, br, urlB, "board", "Cat", vaultGuestPIN)
	cat.inMeeting(30 * time.Second)

	// The meeting spans the nodes.
	bob.waitMedia(ann, "camera", true)
	cat.waitMedia(ann, "camera", true)
	ann.waitMedia(bob, "camera", true)
	ann.waitMedia(cat, "camera", true)
	bob.waitMedia(cat, "camera", true)

	// What crossed from A to B is end-to-end encrypted.
	checkUndecodable(t, relayKeyFrames(t, <-captured))

	// A file Ann shares on A: Bob, on B, decrypts it (B fetched it from A
	// and kept nothing); neither node has its plaintext.
	const fileMarker = "CLUSTER-FILE-4e1b27"
	shareFile(t, ann, fileMarker, 4000)
	if got, shown := downloadLastFile(t, bob); len(got) != len(fileMarker)*4000 || !strings.HasPrefix(got, fileMarker) {
		t.Fatalf("Bob, on B, decrypts Ann's file from A: %d bytes; the page shows %q", len(got), shown)
	}
	for name, dir := range nodeData {
		stored := 0
		filepath.WalkDir(filepath.Join(dir, "files"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			stored++
			if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(fileMarker)) {
				t.Errorf("%s keeps the file's plaintext in %s", name, path)
			}
			return nil
		})
		if want := map[string]int{"node-a": 1, "node-b": 0}[name]; stored != want {
			t.Errorf("%s keeps %d files, want %d", name, stored, want)
		}
	}

	// Management down: admission and the meeting go on.
	mgmt.stop(syscall.SIGTERM)
	nodes["node-b"].waitLog("the bus is unreachable", 20*time.Second)
	eve := knock(t, br, urlB, "board", "Eve", "999999")
	eve.WaitJS(t, "Eve: wrong PIN refused", `(() => { const e = document.querySelector('#join-error'); return !!e && !e.hidden && /not available/i.test(e.textContent); })()`, 15*time.Second)
	eve.Close()
	dan := knock(t, br, urlB, "board", "Dan", vaultGuestPIN)
	dan.inMeeting(30 * time.Second)
	dan.waitMedia(ann, "camera", false)
	ann.waitMedia(dan, "camera", false)
	dan.Close()
	// Management back: the outage's refusal arrives in its audit log.
	mgmt = startProc(t, lan, "mgmt", "management (again)", bin, serveArgs...)
	mgmt.waitLog("Conclave is running", 60*time.Second)
	wait.For(t, "node B's refusal of the outage in the management node's audit log", 60*time.Second, func() bool {
		out := run(t, lan, "", bin, "audit", "export", "-data", mdata, "-database", db, "-format", "json", "-action", "pin-failed")
		var recs []audit.FileRecord
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			t.Fatalf("audit export: %v\n%s", err, out)
		}
		for _, r := range recs {
			if r.Details["node"] == "node-b" && r.Details["room"] == "board" && r.Source == lan.Addr("clients") {
				t.Logf("in the management node's audit log: %s %s %s from %s, node %s", r.Time.Format(time.RFC3339), r.Action, r.Target, r.Source, r.Details["node"])
				return true
			}
		}
		return false
	})

	// Node loss. Ann, host on A, locks the room; A is killed.
	ann.click("#toggle-lock")
	for _, p := range []*participant{ann, bob, cat} {
		p.WaitJS(t, p.name+": room locked", `!document.querySelector('#locked').hidden`, 10*time.Second)
	}
	before := ann.id
	killed := time.Now()
	nodes["node-a"].stop(syscall.SIGKILL)
	wait.For(t, "Ann to be back in the meeting through node B", 15*time.Second, func() bool {
		var id string
		ann.Eval(`document.querySelector('.tile[data-self="true"]')?.dataset.participant || ''`, &id)
		if id == "" || id == before {
			return false
		}
		ann.id = id
		return ann.media(bob, "camera").FramesDecoded > 0
	})
	back := time.Since(killed)
	t.Logf("node A killed: Ann decodes Bob's video again through node B after %v", back.Round(10*time.Millisecond))
	if back > 5*time.Second {
		t.Errorf("Ann took %v to decode again after node A died; the bound is 5 s", back)
	}
	bob.waitMedia(ann, "camera", true)
	ann.waitMedia(cat, "camera", true)
	ann.WaitJS(t, "Ann: still a host", `(() => { const e = document.querySelector('#toggle-lock'); return !!e && e.offsetParent !== null && e.getAttribute('aria-pressed') === 'true'; })()`, 10*time.Second)
	for _, p := range []*participant{ann, bob, cat} {
		p.WaitJS(t, p.name+": room still locked", `!document.querySelector('#locked').hidden`, 10*time.Second)
	}
	// Ann's file went with node A: Cat, on B, is told so.
	if got, shown := downloadLastFile(t, cat); got != "" || !strings.Contains(shown, "cannot be reached") {
		t.Errorf("Cat's download of the file of the dead node A: %d bytes, the page shows %q", len(got), shown)
	} else {
		t.Logf("Cat, on B, downloading Ann's file kept by the dead node A, is told: %s", shown)
	}
	// The lock holds on node B: a newcomer knocks.
	fay := knock(t, br, urlB, "board", "Fay", vaultGuestPIN)
	fay.WaitJS(t, "Fay: in the lobby", `!document.querySelector('#screen-waiting').hidden`, 15*time.Second)
}

// startManagement runs the management node (conclave serve) on host of
// lan, with its data in mdata and its store in db, its cluster listener
// on :8445 and its bus on :4222, and waits until it runs. It returns the
// process and its arguments, to start it again.
func startManagement(t *testing.T, lan *netns.LAN, bin, host, mdata, db string, extra ...string) (*proc, []string) {
	t.Helper()
	m := lan.Addr(host)
	args := append([]string{"serve", "--data", mdata, "--database", db, "--listen", m + ":8443", "--media-udp", m + ":8443", "--media-tcp", "",
		"--host", m, "--cluster-listen", m + ":8445", "--sip-listen", "", "--log-level", "info"}, extra...)
	p := startProc(t, lan, host, "management", bin, args...)
	p.waitLog("Conclave is running", 60*time.Second)
	return p, args
}

// startConferenceNode adds a conference node called name (with the
// location labels, comma-separated, if any) to the cluster of the
// management node on mgmtHost, enrols it on host and runs it (conclave
// node run, its relay on :8447, its debug listener on 127.0.0.1:6060 of
// its namespace). It returns the process and the node's data directory.
func startConferenceNode(t *testing.T, lan *netns.LAN, bin, mdata, db, mgmtHost, name, host, labels string) (*proc, string) {
	t.Helper()
	m := lan.Addr(mgmtHost)
	add := []string{"cluster", "add-node", "-data", mdata, "-database", db, "-name", name, "-management", m + ":8445"}
	if labels != "" {
		add = append(add, "-labels", labels)
	}
	out := run(t, lan, "", bin, add...)
	sub := enrolRE.FindStringSubmatch(out)
	if sub == nil {
		t.Fatalf("add-node printed no enrolment command:\n%s", out)
	}
	dir := t.TempDir()
	addr := lan.Addr(host)
	run(t, lan, host, bin, "node", "enrol", "-data", dir, "-management", m+":8445", "-token", sub[1], "-ca-pin", sub[2], "-host", addr)
	p := startProc(t, lan, host, name, bin, "node", "run", "--data", dir, "--listen", addr+":8443",
		"--media-udp", addr+":8443", "--media-tcp", "", "--host", addr, "--nats", "tls://"+m+":4222",
		"--relay-listen", addr+":8447", "--debug-listen", "127.0.0.1:6060", "--log-level", "info")
	return p, dir
}

// startRelayCapture captures on host's node, for the given seconds, what
// the other nodes relay to it (GET /debug/relay-capture, a pcap); the
// capture arrives on the channel.
func startRelayCapture(t *testing.T, lan *netns.LAN, host string, seconds int) <-chan []byte {
	t.Helper()
	out := make(chan []byte, 1)
	hc := &http.Client{Transport: &http.Transport{DialContext: lan.DialContext(host)}, Timeout: time.Duration(seconds+20) * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:6060/debug/relay-capture?seconds=%d", seconds))
	if err != nil {
		t.Fatalf("relay capture on %s: %v", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("relay capture on %s: %s", host, resp.Status)
	}
	go func() {
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		out <- data
	}()
	return out
}

// relayKeyFrames rebuilds the VP8 key frames of a relay capture.
func relayKeyFrames(t *testing.T, data []byte) [][]byte {
	t.Helper()
	pkts := parsePcapRTP(t, data)
	// The video streams: those whose packets start VP8 key frames (their
	// 10 bytes of clear header hold VP8's start code).
	video := map[uint32]bool{}
	for _, p := range pkts {
		var d codecs.VP8
		if d.Unmarshal(p.Payload) == nil && d.Start && d.Partition == 0 {
			if body := p.Payload[d.HeaderSize:]; len(body) >= 10 && body[0]&1 == 0 && bytes.Equal(body[3:6], []byte{0x9d, 0x01, 0x2a}) {
				video[p.SSRC] = true
			}
		}
	}
	k := &keyFrameTap{}
	k.watch("relayed")
	for _, p := range pkts {
		if video[p.SSRC] {
			k.Packet("relayed", "camera", "video/VP8", p)
		}
	}
	frames := k.keyFrames()
	t.Logf("relay capture: %d RTP packets, %d VP8 key frames", len(pkts), len(frames))
	if len(frames) == 0 {
		t.Fatal("no VP8 key frame crossed the node-to-node link in the capture")
	}
	return frames
}

// parsePcapRTP reads the RTP packets of a relay capture (LINKTYPE_RAW,
// IPv4 and UDP headers around each).
func parsePcapRTP(t *testing.T, data []byte) []*rtp.Packet {
	t.Helper()
	if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(data[20:]) != 101 {
		t.Fatalf("the relay capture is not a pcap of raw IP (%d bytes)", len(data))
	}
	var out []*rtp.Packet
	for b := data[24:]; len(b) >= 16; {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < 16+n || n < 28 {
			t.Fatalf("truncated pcap record")
		}
		rec := b[16 : 16+n]
		b = b[16+n:]
		p := &rtp.Packet{}
		if err := p.Unmarshal(bytes.Clone(rec[28:])); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// checkUndecodable: every key frame keeps its clear VP8 header (the size
// the SFU reads), then an SFrame header and ciphertext that do not decode
// as VP8, and no two are alike.
func checkUndecodable(t *testing.T, frames [][]byte) {
	t.Helper()
	seen := map[string]bool{}
	decoded := 0
	for i, f := range frames {
		w, h, ok := codecs.VP8FrameSize(f)
		if !ok || w == 0 || h == 0 {
			t.Fatalf("relayed key frame %d: the clear VP8 header is not readable (%x)", i, f[:min(len(f), 10)])
		}
		if _, _, _, err := e2ee.ParseHeader(f[10:]); err != nil {
			t.Fatalf("relayed key frame %d (%dx%d): no SFrame header after the clear prefix: %v", i, w, h, err)
		}
		if seen[string(f[10:])] {
			t.Fatalf("relayed key frame %d repeats an earlier ciphertext", i)
		}
		seen[string(f[10:])] = true
		d := vp8.NewDecoder()
		d.Init(bytes.NewReader(f), len(f))
		if _, err := d.DecodeFrameHeader(); err == nil {
			if _, err := d.DecodeFrame(); err == nil {
				decoded++
			}
		}
	}
	if decoded > 0 {
		t.Errorf("%d of %d relayed key frames decode as VP8: not end-to-end encrypted", decoded, len(frames))
	}
	t.Logf("%d VP8 key frames crossed from node A to node B, none decodes; the browsers on B decode them", len(frames))
}
