package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/loadtest/clips"
	"conclave/internal/signal"
)

// writeClips writes the load test's three layers as IVF files.
func writeClips(t *testing.T) (q, h, f string) {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, l := range clips.Layers {
		p := filepath.Join(dir, l.RID+".ivf")
		if err := os.WriteFile(p, l.IVF, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1], paths[2]
}

func openSources(t *testing.T, args ...string) (client.Options, error) {
	t.Helper()
	f, err := parseJoinFlags(append(args, "https://127.0.0.1:1/r/x"), io.Discard)
	if err != nil {
		t.Fatalf("flags %v: %v", args, err)
	}
	video, audio, closers, err := f.sources()
	t.Cleanup(func() {
		for _, c := range closers {
			c.Close()
		}
	})
	var opts client.Options
	setCamera(&opts, video)
	opts.Microphone = audio
	return opts, err
}

// --video takes one file as the camera, or two or three as its simulcast
// layers; each layer's frames are the file's.
func TestJoinVideoLayers(t *testing.T) {
	q, h, f := writeClips(t)

	opts, err := openSources(t, "--video", f)
	if err != nil || opts.Camera == nil || opts.CameraLayers != nil {
		t.Fatalf("one file: camera %v, layers %d, err %v", opts.Camera != nil, len(opts.CameraLayers), err)
	}

	opts, err = openSources(t, "--video", q+","+h+","+f)
	if err != nil || opts.Camera != nil || len(opts.CameraLayers) != 3 {
		t.Fatalf("three files: camera %v, layers %d, err %v", opts.Camera != nil, len(opts.CameraLayers), err)
	}
	for i, l := range clips.Layers {
		frame, _, err := opts.CameraLayers[i].NextFrame(nil)
		if err != nil {
			t.Fatalf("layer %s: %v", l.RID, err)
		}
		// A VP8 key frame gives its size in bytes 6-9.
		if w := int(frame[6]) | int(frame[7]&0x3f)<<8; w != l.Width {
			t.Errorf("layer %d is %d wide, want %s's %d", i, w, l.RID, l.Width)
		}
	}

	opts, err = openSources(t, "--video", q+","+f)
	if err != nil || len(opts.CameraLayers) != 2 {
		t.Fatalf("two files: layers %d, err %v", len(opts.CameraLayers), err)
	}
}

func TestJoinVideoErrors(t *testing.T) {
	q, h, f := writeClips(t)
	notIVF := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notIVF, []byte("not a video"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		video, want string
	}{
		{q + "," + h + "," + f + "," + f, "4 files"},
		{q + ",," + f, "empty file name"},
		{q + "," + filepath.Join(t.TempDir(), "missing.ivf"), "open video"},
		{q + "," + notIVF, notIVF},
	} {
		if _, err := openSources(t, "--video", c.video); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--video %s: err %v, want one saying %q", c.video, err, c.want)
		}
	}
}

// conclave join says the meeting is not end-to-end while a telephone is
// connected through the server, and says when it is again.
func TestJoinPrinterWarnsOfAGateway(t *testing.T) {
	var out bytes.Buffer
	p := &joinPrinter{w: &out, room: "board", start: time.Now()}
	p.event(client.Event{Kind: client.Joined, Participant: signal.Participant{ID: "me", Name: "Me"}})
	p.event(client.Event{Kind: client.ParticipantJoined, Participant: signal.Participant{ID: "a", Name: "Ann"}})
	p.event(client.Event{Kind: client.ParticipantJoined, Participant: signal.Participant{ID: "g", Name: "Alice (phone)", Gateway: signal.GatewaySIP}})
	if !strings.Contains(out.String(), "WARNING: NOT END-TO-END: Alice (phone) is a telephone connected through the server") {
		t.Fatalf("no warning for the gateway:\n%s", out.String())
	}
	p.event(client.Event{Kind: client.ParticipantLeft, Participant: signal.Participant{ID: "a", Name: "Ann"}})
	if strings.Contains(out.String(), "end-to-end again") {
		t.Fatalf("end-to-end again while the gateway is present:\n%s", out.String())
	}
	p.event(client.Event{Kind: client.ParticipantLeft, Participant: signal.Participant{ID: "g", Name: "Alice (phone)", Gateway: signal.GatewaySIP}})
	if !strings.Contains(out.String(), "the meeting is end-to-end again") {
		t.Fatalf("not told the gateway is gone:\n%s", out.String())
	}
}

// --relay takes a TURN transport or any, and refuses anything else.
func TestJoinRelayFlag(t *testing.T) {
	for _, v := range []string{"any", "udp", "tcp", "tls"} {
		if f, err := parseJoinFlags([]string{"--relay", v, "https://127.0.0.1:1/r/x"}, io.Discard); err != nil || f.relay != v {
			t.Errorf("--relay %s: %+v, %v", v, f, err)
		}
	}
	if _, err := parseJoinFlags([]string{"--relay", "quic", "https://127.0.0.1:1/r/x"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--relay") {
		t.Errorf("--relay quic: %v", err)
	}
}
