// Package e2e holds Conclave's end-to-end tests: a real server on loopback
// and real browsers (Debian's headless chromium with fake camera and
// microphone) in a meeting, asserting what a participant would notice.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"conclave/internal/server"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
)

// startServer runs a complete node on loopback with the given rooms.
func startServer(t *testing.T, rooms ...string) *server.Server {
	t.Helper()
	return startServerLogging(t, nil, rooms...)
}

// startServerLogging is startServer with the server's debug log also
// written to logs (when not nil), for tests that inspect it.
func startServerLogging(t *testing.T, logs io.Writer, rooms ...string) *server.Server {
	t.Helper()
	return startServerFull(t, logs, server.Options{}, rooms...)
}

// startServerWith is startServer with test options (a tap, timers).
func startServerWith(t *testing.T, opts server.Options, rooms ...string) *server.Server {
	t.Helper()
	return startServerFull(t, nil, opts, rooms...)
}

func startServerFull(t *testing.T, logs io.Writer, opts server.Options, rooms ...string) *server.Server {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("CONCLAVE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	var out io.Writer = testlog.Writer(t)
	if logs != nil {
		level = slog.LevelDebug - 4
		out = io.MultiWriter(logs, levelFilter{testlog.Writer(t)})
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	return testserver.Start(t, testserver.Options{Server: opts, Logger: log}, rooms...).Server
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines to write
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Contains reports whether the buffer holds s.
func (b *syncBuffer) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

// levelFilter passes on only warnings and errors, so that a test capturing
// every log line does not flood the test output.
type levelFilter struct{ w io.Writer }

func (f levelFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("level=WARN")) || bytes.Contains(p, []byte("level=ERROR")) {
		return f.w.Write(p)
	}
	return len(p), nil
}

// participant is one person in a meeting: a browser page.
type participant struct {
	*browser.Page
	t    *testing.T
	name string
	id   string
}

// join opens the meeting page of room at base, enters name and joins.
func join(t *testing.T, b *browser.Browser, base, room, name string) *participant {
	t.Helper()
	return joinPage(t, b.NewPage(t, name), base, room, name)
}

// joinPage is join in a page the caller opened (and instrumented).
func joinPage(t *testing.T, page *browser.Page, base, room, name string) *participant {
	t.Helper()
	p := &participant{Page: page, t: t, name: name}
	if err := p.Navigate(base + "/r/" + room); err != nil {
		t.Fatalf("%s: open meeting page: %v", name, err)
	}
	p.WaitJS(t, name+": prejoin ready", `!!document.querySelector('#join') && !document.querySelector('#join').disabled && !!document.querySelector('#name')`, 15*time.Second)
	if err := p.SetValue("#name", name); err != nil {
		t.Fatalf("%s: type name: %v", name, err)
	}
	if err := p.Click("#join"); err != nil {
		t.Fatalf("%s: click join: %v", name, err)
	}
	p.WaitJS(t, name+": in the meeting", `(document.querySelector('.tile[data-self="true"]')?.dataset.participant || '') !== ''`, 15*time.Second)
	p.id = p.selfID()
	return p
}

func (p *participant) selfID() string {
	var id string
	if err := p.Eval(`document.querySelector('.tile[data-self="true"]').dataset.participant`, &id); err != nil || id == "" {
		p.t.Fatalf("%s: read own participant id: %v", p.name, err)
	}
	return id
}

// media is what a participant receives from one remote tile.
type media struct {
	Present       bool    `json:"present"`
	FramesDecoded float64 `json:"framesDecoded"`
	Width         float64 `json:"width"`
	Height        float64 `json:"height"`
	AudioPackets  float64 `json:"audioPackets"`
	AudioEnergy   float64 `json:"audioEnergy"`
}

// mediaJS reads, for the tile of participant %q and source %q, the decoded
// video frames and size and the received audio, from the peer connections'
// statistics matched to the tile's tracks.
const mediaJS = `(async (pid, source) => {
  const tile = document.querySelector('.tile[data-participant="' + pid + '"][data-source="' + source + '"]');
  const out = {present: !!tile, framesDecoded: 0, width: 0, height: 0, audioPackets: 0, audioEnergy: 0};
  if (!tile) return out;
  const v = tile.querySelector('video');
  const stream = v && v.srcObject;
  if (!stream) return out;
  const ids = new Set(stream.getTracks().map(t => t.id));
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    stats.forEach(s => {
      if (s.type !== 'inbound-rtp' || !ids.has(s.trackIdentifier)) return;
      if (s.kind === 'video') {
        out.framesDecoded += s.framesDecoded || 0;
        out.width = Math.max(out.width, s.frameWidth || 0);
        out.height = Math.max(out.height, s.frameHeight || 0);
      } else {
        out.audioPackets += s.packetsReceived || 0;
        out.audioEnergy += s.totalAudioEnergy || 0;
      }
    });
  }
  return out;
})(%q, %q)`

func (p *participant) media(from *participant, source string) media {
	var m media
	if err := p.Eval(fmt.Sprintf(mediaJS, from.id, source), &m); err != nil {
		p.t.Fatalf("%s: read media of %s: %v", p.name, from.name, err)
	}
	return m
}

// waitMedia waits until p decodes video from `from`'s tile of source, then
// checks that decoding goes on: more frames over the following seconds, with
// a non-zero size. With audio set it also checks that audio packets and audio
// energy keep rising.
func (p *participant) waitMedia(from *participant, source string, audio bool) {
	p.t.Helper()
	p.waitMediaWithin(from, source, audio, 10*time.Second)
}

// waitMediaWithin is waitMedia with the time given to see decoding go on
// (waitMedia's is 10 s).
func (p *participant) waitMediaWithin(from *participant, source string, audio bool, window time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var first media
	for {
		first = p.media(from, source)
		if first.FramesDecoded > 0 && first.Width > 0 && (!audio || first.AudioPackets > 0) {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %s media from %s within 20 s: %+v\n%s", p.name, source, from.name, first, p.debugState())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Rising: at least 2 s more of decoding (≥ 20 frames at the fake
	// camera's rate), sampled until seen or the window passes.
	deadline = time.Now().Add(window)
	for {
		m := p.media(from, source)
		ok := m.FramesDecoded >= first.FramesDecoded+20 && m.Width > 0 && m.Height > 0
		if audio {
			ok = ok && m.AudioPackets >= first.AudioPackets+50 && m.AudioEnergy > first.AudioEnergy
		}
		if ok {
			p.t.Logf("%s receives %s of %s: %.0f frames decoded at %.0fx%.0f, %.0f audio packets, energy %.3g",
				p.name, source, from.name, m.FramesDecoded, m.Width, m.Height, m.AudioPackets, m.AudioEnergy)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s media from %s stopped progressing: first %+v, now %+v\n%s's video in: %s\n%s's camera out: %s",
				p.name, source, from.name, first, m, p.name, p.videoInDetail(from, source), from.name, from.cameraOut())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// debugState describes the page's peer connections, for failure messages.
func (p *participant) debugState() string {
	var out string
	err := p.Eval(`(async () => {
	  const lines = [];
	  for (const pc of (window.__pcs || [])) {
	    lines.push('pc ' + pc.connectionState + ' ice=' + pc.iceConnectionState + ' signaling=' + pc.signalingState);
	    for (const t of pc.getTransceivers()) {
	      lines.push('  mid=' + t.mid + ' dir=' + t.direction + ' cur=' + t.currentDirection + ' recvtrack=' + (t.receiver.track && t.receiver.track.id));
	    }
	    (await pc.getStats()).forEach(s => {
	      if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp') lines.push('  ' + s.type + ' ' + s.kind + ' mid=' + s.mid + ' pkts=' + (s.packetsReceived ?? s.packetsSent) + ' track=' + (s.trackIdentifier || ''));
	      if (s.type === 'candidate-pair' && s.nominated) lines.push('  pair ' + s.state);
	    });
	  }
	  return lines.join('\n');
	})()`, &out)
	if err != nil {
		return "debug state unavailable: " + err.Error()
	}
	return out
}

// videoInDetail describes, for failure messages, the inbound video
// statistics of from's tile of source in p's page.
func (p *participant) videoInDetail(from *participant, source string) string {
	var out string
	err := p.Eval(fmt.Sprintf(`(async () => {
	  const id = document.querySelector('.tile[data-participant=%q][data-source=%q] video')?.srcObject?.getVideoTracks()[0]?.id;
	  const lines = [];
	  for (const pc of (window.__pcs || [])) {
	    if (pc.connectionState === 'closed') continue;
	    (await pc.getStats()).forEach(s => {
	      if (s.type === 'inbound-rtp' && s.trackIdentifier === id) lines.push(['packets', s.packetsReceived, 'lost', s.packetsLost, 'frames received', s.framesReceived, 'decoded', s.framesDecoded, 'dropped', s.framesDropped, 'key frames', s.keyFramesDecoded, 'PLI', s.pliCount, 'NACK', s.nackCount, 'FIR', s.firCount, 'freezes', s.freezeCount, 'size', s.frameWidth + 'x' + s.frameHeight].join(' '));
	    });
	  }
	  return lines.join('; ') || 'no inbound stream';
	})()`, from.id, source), &out)
	if err != nil {
		return err.Error()
	}
	return out
}
