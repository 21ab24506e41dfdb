package client

import (
	"bytes"
	"testing"
	"time"

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

func TestReconnectDelay(t *testing.T) {
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if got := reconnectDelay(i); got != w {
			t.Errorf("reconnectDelay(%d) = %v, want %v", i, got, w)
		}
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
