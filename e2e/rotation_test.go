package e2e

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/codecs"
	"conclave/internal/e2ee"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/wait"

	"github.com/pion/rtp"
)

// generationTap sees the camera packets arriving at the SFU and notes,
// per participant, when the first frame under each key generation came:
// the KID is in the SFrame header after the VP8 clear prefix, in the
// frame's first packet.
type generationTap struct {
	mu    sync.Mutex
	vp8   codecs.VP8
	first map[string]map[uint8]time.Time // participant -> generation -> first packet
}

func newGenerationTap() *generationTap {
	return &generationTap{first: map[string]map[uint8]time.Time{}}
}

func (g *generationTap) Packet(participant, source, codec string, pkt *rtp.Packet) {
	if source != "camera" || !strings.EqualFold(codec, "video/VP8") {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.vp8.Unmarshal(pkt.Payload) != nil || !g.vp8.Start || g.vp8.Partition != 0 {
		return
	}
	frame := pkt.Payload[g.vp8.HeaderSize:]
	n, err := e2ee.CodecVP8.ClearPrefix(frame)
	if err != nil {
		return
	}
	kid, _, _, err := e2ee.ParseHeader(frame[n:])
	if err != nil {
		return
	}
	_, gen, _, ok := e2ee.SplitKID(kid)
	if !ok {
		return
	}
	m := g.first[participant]
	if m == nil {
		m = map[uint8]time.Time{}
		g.first[participant] = m
	}
	if _, seen := m[gen]; !seen {
		m[gen] = time.Now()
	}
}

// firstAfter returns when the SFU got the participant's first frame
// under a generation first seen after `since`.
func (g *generationTap) firstAfter(participant string, since time.Time) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return earliestAfter(g.first[participant], since)
}

// decryptLog records, for one native receiver, when it first decrypted each
// sender's frames under each key generation.
type decryptLog struct {
	mu       sync.Mutex
	first    map[string]map[uint8]time.Time // sender -> generation -> first decrypt
	keys     map[string][]time.Time         // sender -> when its key messages opened
	switched []time.Time                    // when this native began encrypting with a new key
}

func newDecryptLog() *decryptLog {
	return &decryptLog{first: map[string]map[uint8]time.Time{}, keys: map[string][]time.Time{}}
}

func (l *decryptLog) observe(e secure.KeyEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Kind {
	case secure.PeerKey:
		l.keys[e.Participant] = append(l.keys[e.Participant], e.At)
	case secure.Switched:
		l.switched = append(l.switched, e.At)
	case secure.FirstDecrypt:
		g := l.first[e.Participant]
		if g == nil {
			g = map[uint8]time.Time{}
			l.first[e.Participant] = g
		}
		if _, ok := g[e.Key.Generation]; !ok {
			g[e.Key.Generation] = e.At
		}
	}
}

// keyAfter returns when the first key message of sender after `since`
// opened.
func (l *decryptLog) keyAfter(sender string, since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.keys[sender] {
		if at.After(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// switchedAfter returns when this native first began encrypting with a
// new key after `since`.
func (l *decryptLog) switchedAfter(since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.switched {
		if at.After(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// firstAfter returns when the receiver first decrypted a generation of
// sender that it had not decrypted before `since`.
func (l *decryptLog) firstAfter(sender string, since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return earliestAfter(l.first[sender], since)
}

func earliestAfter(gens map[uint8]time.Time, since time.Time) (time.Time, bool) {
	var at time.Time
	for _, t := range gens {
		if t.After(since) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// tinyVideo plays testdata/tiny.ivf: 64x48 pixels, 15 frames/s, a key
// frame every second, about 260 bytes a frame (one packet). Made with
//
//	ffmpeg -f lavfi -i testsrc=size=64x48:rate=15 -t 2 -c:v libvpx -b:v 30k \
//	  -g 15 -keyint_min 15 -auto-alt-ref 0 -lag-in-frames 0 tiny.ivf
func tinyVideo(t *testing.T) client.FrameSource {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "tiny.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewIVFSource(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("testdata/tiny.ivf: %v", err)
	}
	return src
}

// workerReportJS asks the page's media encryption worker for its report.
const workerReportJS = browser.E2EEWorkerReportJS

// workerReport is what a browser's media worker says of one sender.
type workerReport struct {
	Decrypted    int                `json:"decrypted"`
	NoKey        int                `json:"noKey"`
	Auth         int                `json:"auth"`
	FirstDecrypt map[string]float64 `json:"firstDecrypt"` // generation -> Unix ms
}

// cryptorReport is a browser's media worker report (FrameCryptor.report).
type cryptorReport struct {
	Participants map[string]workerReport `json:"participants"`
	SendingSince map[string]float64      `json:"sendingSince"` // own generation -> Unix ms
}

// decryptReport returns p's media worker report.
func (p *participant) decryptReport() cryptorReport {
	p.t.Helper()
	var r cryptorReport
	if err := p.Eval(workerReportJS, &r); err != nil {
		p.t.Fatalf("%s: read the media worker's report: %v", p.name, err)
	}
	return r
}

// firstAfter is decryptLog.firstAfter for a browser's report.
func (w workerReport) firstAfter(since time.Time) (time.Time, bool) {
	var at time.Time
	for _, ms := range w.FirstDecrypt {
		t := time.UnixMilli(int64(ms))
		if t.After(since) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// TestRotation20Plus2Timing: 20 native participants and 2 browsers in one
// E2EE meeting. Everyone decrypts everyone and shows the same meeting code;
// one native participant leaves, and every remaining receiver, browsers
// included, decrypts every remaining sender's new key generation; the
// browsers go on decoding each other, with a new common code.
//
// The time from the leave to the last pair decrypting is logged and
// recorded in docs/benchmarks.md (the aim: under 1 s); the test fails
// beyond rotationBound, or if a native had to ask for a rotated key.
// The protocol's own part is 150 ms (the 100 ms debounce, the 50 ms
// switch delay) and the key messages' way through the server; the rest
// is the media's delay through a machine that the 22 participants keep
// busy. For the slowest pairs it logs when the sender switched keys,
// when its first frame under the new key reached the SFU, and when the
// receiver had the key, which tells those parts apart.
//
// scripts/test runs it in its "timing" step, alone and without the race
// detector.
func TestRotation20Plus2Timing(t *testing.T) {
	if raceEnabled {
		t.Skip("a timing measurement: scripts/test runs it in its timing step, without -race")
	}
	const n = 20
	tap := newGenerationTap()
	srv := startServerWith(t, server.Options{Tap: tap}, "big")
	roots, err := pki.CAPool(srv.TLS())
	if err != nil {
		t.Fatal(err)
	}
	// The cameras at 15 frames/s, a smaller window and half the device
	// pixels: 22 participants on two cores is the test's own load, and
	// the browsers' rendering is most of it. The window is the smallest
	// in which the grid shows all 22 tiles (a tile out of view is not
	// forwarded); at full scale the two renderers and Chromium's GPU
	// process leave the test process about half a core, and a runtime
	// trace of a slow run showed some 70 of its goroutines waiting for a
	// CPU at any moment after the leave (docs/benchmarks.md).
	flags := browser.DefaultFlags()
	flags["use-fake-device-for-media-stream"] = "fps=15"
	flags["window-size"] = "960,640"
	flags["force-device-scale-factor"] = "0.5"
	b := browser.StartWith(t, flags)
	logs := make([]*decryptLog, n)
	natives := make([]*native, n)
	for i := range natives {
		logs[i] = newDecryptLog()
		// A tiny real video (testdata/tiny.ivf), no audio, and the
		// browsers' cameras as thumbnails (their low layer): 20 full clips,
		// 20 audio streams at 50 packets/s and the browsers' top layers, to
		// 21 receivers of which 20 in this one process, would measure the
		// test machine, not the key schedule.
		natives[i] = joinNativeWith(t, srv.URL(), roots, "big", fmt.Sprintf("N%02d", i),
			nativeOpts{camera: tinyVideo(t), thumbs: true, observer: logs[i].observe})
	}
	// The browsers keep an upload estimate of at least 1 Mbit/s
	// (uplinkFloorJS): the test's own load starves the machine, the server
	// reads their packets late, and Chromium's estimate of the loopback
	// link then sinks to its floor of tens of kbit/s, where its pacer
	// holds their frames for up to a second and more. That is Chromium's
	// reading of this test machine, not the key schedule's time.
	alice := joinPage(t, uplinkFloorPage(t, b, "Alice"), srv.URL(), "big", "Alice")
	bob := joinPage(t, uplinkFloorPage(t, b, "Bob"), srv.URL(), "big", "Bob")
	browsers := []*participant{alice, bob}
	alice.waitMedia(bob, "camera", true)
	bob.waitMedia(alice, "camera", true)
	code := sameCode(t, alice, bob)
	waitNativeCodes(t, natives, code)
	t.Logf("22 participants, one meeting code: %s", code)

	names := map[string]string{alice.id: "Alice", bob.id: "Bob"}
	senders := []string{alice.id, bob.id}
	for _, m := range natives {
		names[m.Self().ID] = m.Self().Name
		senders = append(senders, m.Self().ID)
	}

	// decrypted lists, for every receiver and every other sender, how long
	// after `since` the receiver first decrypted a generation not seen
	// before; and the pairs that have not yet.
	type pair struct {
		sender, receiver string // names
		senderID         string
		delay            time.Duration
	}
	decrypted := func(natives []*native, logs []*decryptLog, senders []string, since time.Time) (done []pair, missing []string) {
		add := func(s, r string, at time.Time, ok bool) {
			if ok {
				done = append(done, pair{names[s], r, s, at.Sub(since)})
			} else {
				missing = append(missing, names[s]+"→"+r)
			}
		}
		for i, m := range natives {
			for _, s := range senders {
				if s != m.Self().ID {
					at, ok := logs[i].firstAfter(s, since)
					add(s, m.Self().Name, at, ok)
				}
			}
		}
		for _, p := range browsers {
			report := p.decryptReport()
			for _, s := range senders {
				if s != p.id {
					at, ok := report.Participants[s].firstAfter(since)
					add(s, p.name, at, ok)
				}
			}
		}
		return done, missing
	}

	var missing []string
	wait.Until(t, 30*time.Second, func() bool {
		_, missing = decrypted(natives, logs, senders, time.Time{})
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("every member decrypting every other; %d pairs do not (sender→receiver): %s", len(missing), strings.Join(missing, " "))
	})
	t.Logf("all %d receiver/sender pairs decrypt", 22*21)

	leaver := natives[n-1]
	stay, stayLogs := natives[:n-1], logs[:n-1]
	requestsBefore := keyRequests(stay)
	senders = slices.DeleteFunc(senders, func(s string) bool { return s == leaver.Self().ID })
	left := time.Now()
	if err := leaver.Leave(); err != nil {
		t.Fatal(err)
	}
	var done []pair
	wait.Until(t, rotationBound, func() bool {
		done, missing = decrypted(stay, stayLogs, senders, left)
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("every remaining receiver decrypting every sender's new key generation; %d pairs do not (sender→receiver): %s",
			len(missing), strings.Join(missing, " "))
	})
	slices.SortFunc(done, func(a, b pair) int { return cmp.Compare(a.delay, b.delay) })
	p50, p90, worst := done[len(done)/2].delay, done[len(done)*9/10].delay, done[len(done)-1].delay
	t.Logf("%d receiver/sender pairs (browsers included): leave → new generation decrypted p50 %v, p90 %v, max %v",
		len(done), p50.Round(time.Millisecond), p90.Round(time.Millisecond), worst.Round(time.Millisecond))
	// For the slowest pairs, after the leave: when the sender's first frame
	// under its new key reached the SFU, when the sender (a native)
	// switched to that key, and when the receiver (a native) had it.
	logOf := map[string]*decryptLog{}
	for i, m := range stay {
		logOf[m.Self().ID], logOf[m.Self().Name] = stayLogs[i], stayLogs[i]
	}
	var slow []string
	for _, p := range done[max(0, len(done)-3):] {
		var notes []string
		if at, ok := tap.firstAfter(p.senderID, left); ok {
			notes = append(notes, fmt.Sprintf("at the server +%v", at.Sub(left).Round(time.Millisecond)))
		}
		if l := logOf[p.senderID]; l != nil {
			if at, ok := l.switchedAfter(left); ok {
				notes = append(notes, fmt.Sprintf("sender switched +%v", at.Sub(left).Round(time.Millisecond)))
			}
		}
		if l := logOf[p.receiver]; l != nil {
			if at, ok := l.keyAfter(p.senderID, left); ok {
				notes = append(notes, fmt.Sprintf("key at receiver +%v", at.Sub(left).Round(time.Millisecond)))
			}
		}
		slow = append(slow, fmt.Sprintf("%s→%s %v (%s)", p.sender, p.receiver, p.delay.Round(time.Millisecond), strings.Join(notes, ", ")))
	}
	t.Logf("slowest: %s", strings.Join(slow, "; "))
	for _, p := range browsers {
		for g, ms := range p.decryptReport().SendingSince {
			if at := time.UnixMilli(int64(ms)); at.After(left) {
				t.Logf("%s began encrypting with generation %s %v after the leave", p.name, g, at.Sub(left).Round(time.Millisecond))
			}
		}
	}

	// The rotated keys came with the rotation: no native had to ask.
	if after := keyRequests(stay); after != requestsBefore {
		t.Errorf("the natives sent %d key requests during the rotation: a rotated key did not arrive by itself", after-requestsBefore)
	}

	// The browsers go on decoding each other, and everyone shows the new code.
	code2 := sameCode(t, alice, bob)
	if code2 == code {
		t.Fatalf("meeting code did not change after the leave: %s", code2)
	}
	waitNativeCodes(t, stay, code2)
	alice.waitMedia(bob, "camera", true)
	bob.waitMedia(alice, "camera", false)
}

// rotationBound is how long TestRotation20Plus2Timing waits for every
// pair to decrypt the new generation: far above the runs measured on
// the suite's machine (docs/benchmarks.md), so that only a rotation that
// does not complete fails it (key requests are checked apart).
const rotationBound = 8 * time.Second

// keyRequests is how many key requests the natives have sent in all.
func keyRequests(ms []*native) uint64 {
	var n uint64
	for _, m := range ms {
		for _, st := range m.sec.Stats() {
			n += st.KeyRequestsSent
		}
	}
	return n
}

func waitNativeCodes(t *testing.T, ms []*native, code string) {
	t.Helper()
	wait.For(t, "native meeting codes equal "+code, 20*time.Second, func() bool {
		for _, m := range ms {
			if m.sec.MeetingCode() != code {
				return false
			}
		}
		return true
	})
}
