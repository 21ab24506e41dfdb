package client

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"conclave/internal/client/media"
)

func TestParseMeetingURL(t *testing.T) {
	tests := []struct {
		in   string
		want Meeting
		ok   bool
	}{
		{"https://meet.example.org/r/board", Meeting{Room: "board", WebSocket: "wss://meet.example.org/ws", Origin: "https://meet.example.org", Host: "meet.example.org", Base: "https://meet.example.org"}, true},
		{"https://127.0.0.1:8443/r/a-b/", Meeting{Room: "a-b", WebSocket: "wss://127.0.0.1:8443/ws", Origin: "https://127.0.0.1:8443", Host: "127.0.0.1", Base: "https://127.0.0.1:8443"}, true},
		{"https://[::1]:8443/conclave/r/x", Meeting{Room: "x", WebSocket: "wss://[::1]:8443/conclave/ws", Origin: "https://[::1]:8443", Host: "::1", Base: "https://[::1]:8443/conclave"}, true},
		{"http://host/r/x", Meeting{}, false},
		{"https://host/x", Meeting{}, false},
		{"https://host/r/", Meeting{}, false},
		{"https://host/r/a/b", Meeting{}, false},
	}
	for _, tt := range tests {
		got, err := ParseMeetingURL(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMeetingURL(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

// The recovery schedule is the contract's (the "schedule" of
// internal/signal/testdata/messages.json), which the browser's tests read
// too (session.test.mjs).
func TestRecoverySchedule(t *testing.T) {
	data, err := os.ReadFile("../signal/testdata/messages.json")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Schedule struct {
			ReconnectDelaysMs  []int `json:"reconnectDelaysMs"`
			ICERecoveryMs      int   `json:"iceRecoveryMs"`
			PublishRetries     int   `json:"publishRetries"`
			PublishRetryStepMs int   `json:"publishRetryStepMs"`
		} `json:"schedule"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	s := c.Schedule
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	if len(s.ReconnectDelaysMs) < 5 {
		t.Fatalf("the contract has %d reconnection delays", len(s.ReconnectDelaysMs))
	}
	for i, w := range s.ReconnectDelaysMs {
		if got := reconnectDelay(i); got != ms(w) {
			t.Errorf("reconnectDelay(%d) = %v, the contract says %v", i, got, ms(w))
		}
	}
	if got := reconnectDelay(1000); got != ms(s.ReconnectDelaysMs[len(s.ReconnectDelaysMs)-1]) {
		t.Errorf("reconnectDelay(1000) = %v", got)
	}
	if iceRecovery != ms(s.ICERecoveryMs) || publishRetries != s.PublishRetries || publishRetryStep != ms(s.PublishRetryStepMs) {
		t.Errorf("ICE recovery %v, %d publish retries %v apart; the contract says %d ms, %d, %d ms",
			iceRecovery, publishRetries, publishRetryStep, s.ICERecoveryMs, s.PublishRetries, s.PublishRetryStepMs)
	}
}

func TestOpusDuration(t *testing.T) {
	tests := []struct {
		p    []byte
		want time.Duration
	}{
		{[]byte{0xfc}, 20 * time.Millisecond},           // CELT FB 20 ms, one frame
		{[]byte{0xfd}, 40 * time.Millisecond},           // two frames
		{[]byte{0xe0}, 2500 * time.Microsecond},         // CELT 2.5 ms
		{[]byte{0x1b, 0x03}, 3 * 60 * time.Millisecond}, // SILK 60 ms, code 3 with 3 frames
		{[]byte{0x78}, 20 * time.Millisecond},           // hybrid 20 ms
		{[]byte{0x03}, 0},                               // code 3 without a count
	}
	for _, tt := range tests {
		if got := opusDuration(tt.p); got != tt.want {
			t.Errorf("opusDuration(%x) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

// TestSourcesLoop: the clip sources start with a key frame, pace at the
// clip's rate and play forever.
func TestSourcesLoop(t *testing.T) {
	v := NewTestVideo()
	var buf []byte
	var total time.Duration
	keys := 0
	for i := range 150 { // 2.5 passes of 60 frames
		f, d, err := v.NextFrame(buf)
		if err != nil {
			t.Fatal(err)
		}
		buf = f
		if i == 0 && !isKeyFrame(CodecVP8, f) {
			t.Fatal("the video does not start with a key frame")
		}
		if isKeyFrame(CodecVP8, f) {
			keys++
			if w, h := vp8Size(f); w != media.VideoWidth || h != media.VideoHeight {
				t.Fatalf("key frame size %dx%d", w, h)
			}
		}
		total += d
	}
	if keys < 10 || total < 9800*time.Millisecond || total > 10*time.Second {
		t.Errorf("150 frames: %d key frames over %v; want a key frame per second at 15 frames/s", keys, total)
	}

	a := NewTestAudio()
	total = 0
	for range 500 { // two and a half passes of 4 s
		f, d, err := a.NextFrame(buf)
		if err != nil {
			t.Fatal(err)
		}
		buf = f
		total += d
	}
	if total < 9900*time.Millisecond || total > 10*time.Second {
		t.Errorf("500 audio packets last %v, want 10 s", total)
	}
	if _, err := NewOggSource(bytes.NewReader(media.VideoIVF)); err == nil {
		t.Error("an IVF file was accepted as Ogg")
	}
	if _, err := NewIVFSource(bytes.NewReader(media.AudioOgg)); err == nil {
		t.Error("an Ogg file was accepted as IVF")
	}
}

func TestAdopt(t *testing.T) {
	frame := make([]byte, 10, 100)
	dst := make([]byte, 0, 20)
	if got := adopt(dst, frame[2:], frame); cap(got) != 20 {
		t.Error("adopted the input frame's memory")
	}
	bigger := make([]byte, 50)
	if got := adopt(dst, bigger, frame); cap(got) != 50 {
		t.Error("did not keep a larger output buffer")
	}
}

// TestNACKLimit: NACKed packets beyond the retransmission budget are not
// asked of the responder; the budget refills with time.
func TestNACKLimit(t *testing.T) {
	l := &nackLimit{tokens: retransmitBurst}
	now := time.Now()
	var seqs []uint16
	for i := range 200 {
		seqs = append(seqs, uint16(65500+i*2)) // wraps
	}
	count := func(pairs []rtcp.NackPair) (n int) {
		for _, p := range pairs {
			p.Range(func(uint16) bool { n++; return true })
		}
		return n
	}
	if got := count(l.trim(rtcp.NackPairsFromSequenceNumbers(seqs), now)); got != retransmitBurst {
		t.Errorf("first NACK: %d packets kept, want %d", got, retransmitBurst)
	}
	if got := l.trim(rtcp.NackPairsFromSequenceNumbers(seqs[:5]), now); len(got) != 0 {
		t.Errorf("an exhausted budget kept %v", got)
	}
	kept := l.trim(rtcp.NackPairsFromSequenceNumbers(seqs[:40]), now.Add(100*time.Millisecond))
	if got := count(kept); got != retransmitRate/10 {
		t.Errorf("after 100 ms: %d packets kept, want %d", got, retransmitRate/10)
	}
	var first []uint16
	kept[0].Range(func(s uint16) bool { first = append(first, s); return true })
	if first[0] != seqs[0] || first[1] != seqs[1] {
		t.Errorf("kept %v, want the first requested", first)
	}
}

// TestTokenBucket: the signaling writer sends bursts up to the limit, then
// paces at the rate the server accepts.
func TestTokenBucket(t *testing.T) {
	now := time.Now()
	b := tokenBucket{rate: wsRate, burst: wsBurst, tokens: wsBurst, last: now}
	for i := range wsBurst {
		if w := b.take(now); w != 0 {
			t.Fatalf("message %d of the burst waits %v", i, w)
		}
	}
	if w := b.take(now); w <= 0 || w > time.Second/wsRate+time.Millisecond {
		t.Errorf("the first message after the burst waits %v, want about %v", w, time.Second/wsRate)
	}
	// Sent when told: the next waits one more interval.
	if w := b.take(now); w < 2*time.Second/wsRate-time.Millisecond {
		t.Errorf("the second message after the burst waits %v", w)
	}
	// A second later, 45 more tokens, less the debt of two.
	now = now.Add(time.Second)
	sent := 0
	for b.take(now) == 0 {
		sent++
	}
	if sent != wsRate-2 {
		t.Errorf("%d messages a second later, want %d", sent, wsRate-2)
	}
}

// TestCheckLayers: a simulcast camera the client cannot send is refused
// before joining.
func TestCheckLayers(t *testing.T) {
	v := func() FrameSource { return NewTestVideo() }
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"none", Options{}, true},
		{"two", Options{CameraLayers: []FrameSource{v(), v()}}, true},
		{"three", Options{CameraLayers: []FrameSource{v(), v(), v()}}, true},
		{"one", Options{CameraLayers: []FrameSource{v()}}, false},
		{"four", Options{CameraLayers: []FrameSource{v(), v(), v(), v()}}, false},
		{"with Camera", Options{Camera: v(), CameraLayers: []FrameSource{v(), v()}}, false},
		{"audio", Options{CameraLayers: []FrameSource{v(), NewTestAudio()}}, false},
		{"nil", Options{CameraLayers: []FrameSource{v(), nil}}, false},
	}
	for _, tt := range tests {
		if err := checkLayers(tt.o); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if got := simulcastRIDs[2]; got[0] != "q" || got[1] != "f" {
		t.Errorf("two layers are sent as %v, want q and f as the browser", got)
	}
}
