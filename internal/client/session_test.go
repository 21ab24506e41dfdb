package client_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"golang.org/x/image/vp8"

	"conclave/internal/client"
	"conclave/internal/client/ivf"
	"conclave/internal/client/media"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

type testServer struct {
	*server.Server
	roots *x509.CertPool
}

func startServer(t *testing.T, opts server.Options, rooms ...string) *testServer {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Server: opts}, rooms...)
	return &testServer{Server: ts.Server, roots: ts.Roots}
}

// participant is a session under test with the events it saw.
type participant struct {
	*client.Session
	name string
	dir  string // recordings

	mu     sync.Mutex
	events []client.Event
	opaque []string // "announce|key from payload"
}

func (p *participant) gotOpaque(want string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.opaque {
		if o == want {
			return true
		}
	}
	return false
}

func (p *participant) saw(kind client.EventKind, match func(client.Event) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e.Kind == kind && (match == nil || match(e)) {
			return true
		}
	}
	return false
}

type joinOpts struct {
	url      string // default: the server's URL
	media    bool
	send     client.FrameTransform
	receive  client.FrameTransform
	noRecord bool
	layers   []client.FrameSource // a simulcast camera
	layout   func([]client.TrackInfo) map[string]client.Size
	newSink  func(client.TrackInfo) (client.FrameSink, error) // instead of recording
	relay    string                                           // "any", or a TURN transport: media only through TURN
}

func join(t *testing.T, srv *testServer, room, name string, o joinOpts) *participant {
	t.Helper()
	p := &participant{name: name, dir: t.TempDir()}
	base := o.url
	if base == "" {
		base = srv.URL()
	}
	opts := client.Options{
		URL:              base + "/r/" + room,
		Name:             name,
		RootCAs:          srv.roots,
		Logger:           testlog.Logger(t, slog.LevelWarn).With("who", name),
		SendTransform:    o.send,
		ReceiveTransform: o.receive,
		Hooks: client.Hooks{
			OnEvent: func(e client.Event) {
				p.mu.Lock()
				p.events = append(p.events, e)
				p.mu.Unlock()
			},
			OnAnnounce: func(from string, payload []byte) {
				p.mu.Lock()
				p.opaque = append(p.opaque, "announce "+from+" "+string(payload))
				p.mu.Unlock()
			},
			OnKey: func(from string, payload []byte) {
				p.mu.Lock()
				p.opaque = append(p.opaque, "key "+from+" "+string(payload))
				p.mu.Unlock()
			},
		},
	}
	if o.media {
		opts.Camera, opts.Microphone = client.NewTestVideo(), client.NewTestAudio()
	}
	if !o.noRecord {
		opts.NewSink = client.Recorder(p.dir)
	}
	if o.newSink != nil {
		opts.NewSink = o.newSink
	}
	opts.CameraLayers, opts.Layout = o.layers, o.layout
	if o.relay != "" {
		opts.ForceRelay = true
		if o.relay != "any" {
			opts.RelayOver = o.relay
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	p.Session = s
	t.Cleanup(func() { s.Leave() })
	return p
}

// received sums what p received from participant id, by kind.
func received(p *participant, id, kind string) client.TrackStats {
	var sum client.TrackStats
	for _, st := range p.Stats() {
		if st.Participant == id && st.Kind == kind {
			sum.Frames += st.Frames
			sum.KeyFrames += st.KeyFrames
			sum.Bytes += st.Bytes
			sum.TransformErrors += st.TransformErrors
		}
	}
	return sum
}

// waitMedia waits until p has received at least video and audio frames
// from id.
func waitMedia(t *testing.T, p *participant, id string, video, audio uint64) {
	t.Helper()
	wait.For(t, fmt.Sprintf("%s to receive %d video and %d audio frames from %s", p.name, video, audio, id), 15*time.Second, func() bool {
		return received(p, id, "video").Frames >= video && received(p, id, "audio").Frames >= audio
	})
}

// waitMoreMedia waits until p has received video and audio frames from id
// beyond what it has now.
func waitMoreMedia(t *testing.T, p *participant, id string, video, audio uint64) {
	t.Helper()
	waitMedia(t, p, id, received(p, id, "video").Frames+video, received(p, id, "audio").Frames+audio)
}

// recordings returns the files of p's recordings with this extension.
func recordings(t *testing.T, p *participant, ext string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(p.dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// firstIVFFrame returns the first frame of an IVF file (a key frame).
func firstIVFFrame(t *testing.T, path string) (ivf.Header, []byte, int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ivf.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	first, _, err := r.ReadFrame(nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	n := 1
	for {
		if _, _, err := r.ReadFrame(nil); err != nil {
			break
		}
		n++
	}
	return r.Header, first, n
}

func decodeVP8(frame []byte) (image.Image, error) {
	d := vp8.NewDecoder()
	d.Init(bytes.NewReader(frame), len(frame))
	if _, err := d.DecodeFrameHeader(); err != nil {
		return nil, err
	}
	return d.DecodeFrame()
}

// checkOgg checks that an Ogg Opus recording is well formed (checksums
// included) and holds audio.
func checkOgg(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, head, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if head.SampleRate != 48000 {
		t.Errorf("%s: sample rate %d", path, head.SampleRate)
	}
	pages := 0
	for {
		_, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: page %d: %v", path, pages, err)
		}
		pages++
	}
	if pages < 20 {
		t.Fatalf("%s: %d pages, want audio", path, pages)
	}
}

func goroutines() int { return runtime.NumGoroutine() }

// TestTwoParticipants: two native clients in a room receive each other's
// video and audio, decodable; a client in another room receives nothing
// and is not received; leaving stops everything.
func TestTwoParticipants(t *testing.T) {
	srv := startServer(t, server.Options{}, "board", "other")
	before := goroutines()

	alice := join(t, srv, "board", "Alice", joinOpts{media: true})
	bob := join(t, srv, "board", "Bob", joinOpts{media: true})
	dave := join(t, srv, "other", "Dave", joinOpts{media: true})
	aliceID, bobID := alice.Self().ID, bob.Self().ID

	waitMedia(t, alice, bobID, 25, 80)
	waitMedia(t, bob, aliceID, 25, 80)

	if ps := alice.Participants(); len(ps) != 1 || ps[0].ID != bobID || ps[0].Name != "Bob" || !ps[0].Video || !ps[0].Audio {
		t.Errorf("Alice's participants: %+v, want Bob with audio and video", ps)
	}
	if !alice.saw(client.ParticipantJoined, func(e client.Event) bool { return e.Participant.ID == bobID }) ||
		!alice.saw(client.TrackStarted, func(e client.Event) bool {
			return e.Track.Participant == bobID && e.Track.Source == "camera" && e.Track.Codec == client.CodecVP8 && e.Track.Name == "Bob"
		}) {
		t.Errorf("Alice's events lack Bob's arrival or camera: %+v", alice.events)
	}
	if v := received(alice, bobID, "video"); v.KeyFrames == 0 || v.Bytes == 0 {
		t.Errorf("Alice received %+v from Bob, want key frames", v)
	}
	for _, s := range bob.Sent() {
		if s.Frames == 0 {
			t.Errorf("Bob sent no %s frames", s.Source)
		}
	}
	// Room isolation, both ways.
	if st := dave.Stats(); len(st) != 0 || len(dave.Participants()) != 0 {
		t.Errorf("Dave in another room received %+v, sees %+v", st, dave.Participants())
	}
	for _, st := range append(alice.Stats(), bob.Stats()...) {
		if st.Participant != aliceID && st.Participant != bobID {
			t.Errorf("a track of %s crossed rooms", st.Participant)
		}
	}

	// Opaque E2EE messages: announcements reach the room, key messages
	// their addressee only, nothing crosses rooms.
	if err := alice.SendAnnounce([]byte("alice-announce")); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendKey(bobID, []byte{0, 1, 0xff}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "Bob to get Alice's announcement and key", 5*time.Second, func() bool {
		return bob.gotOpaque("announce "+aliceID+" alice-announce") && bob.gotOpaque("key "+aliceID+" \x00\x01\xff")
	})
	if dave.gotOpaque("announce " + aliceID + " alice-announce") {
		t.Error("Alice's announcement crossed rooms")
	}

	// Bob leaves: Alice sees him go and his tracks stop.
	if err := bob.Leave(); err != nil {
		t.Fatalf("Bob's leave: %v", err)
	}
	wait.For(t, "Alice to see Bob leave", 5*time.Second, func() bool {
		return alice.saw(client.ParticipantLeft, func(e client.Event) bool { return e.Participant.ID == bobID }) &&
			alice.saw(client.TrackStopped, func(e client.Event) bool { return e.Track.Participant == bobID && e.Track.Kind == "video" })
	})
	if len(alice.Participants()) != 0 {
		t.Errorf("Alice still sees %+v", alice.Participants())
	}
	for _, p := range []*participant{alice, dave} {
		if err := p.Leave(); err != nil {
			t.Errorf("%s's leave: %v", p.name, err)
		}
	}
	if !alice.saw(client.Closed, nil) {
		t.Error("no Closed event")
	}

	// The recordings decode.
	for _, p := range []*participant{alice, bob} {
		videos, audios := recordings(t, p, ".ivf"), recordings(t, p, ".ogg")
		if len(videos) != 1 || len(audios) != 1 {
			t.Fatalf("%s recorded %v and %v, want one video and one audio", p.name, videos, audios)
		}
		h, key, n := firstIVFFrame(t, videos[0])
		img, err := decodeVP8(key)
		if err != nil {
			t.Fatalf("%s's recorded key frame does not decode: %v", p.name, err)
		}
		if b := img.Bounds(); b.Dx() != media.VideoWidth || b.Dy() != media.VideoHeight || h.Width != media.VideoWidth {
			t.Errorf("%s's recording is %v (header %dx%d), want 320x240", p.name, b, h.Width, h.Height)
		}
		if n < 10 {
			t.Errorf("%s recorded %d video frames", p.name, n)
		}
		checkOgg(t, audios[0])
	}

	// Every goroutine of the three sessions is gone.
	wait.For(t, "the sessions' goroutines to end", 5*time.Second, func() bool { return goroutines() <= before+2 })
}

// TestDialErrors: the errors a user meets first read as advice.
func TestDialErrors(t *testing.T) {
	srv := startServer(t, server.Options{}, "board")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := client.Dial(ctx, client.Options{URL: srv.URL() + "/r/nope", Name: "Mallory", RootCAs: srv.roots})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != signal.CodeRoomUnavailable {
		t.Errorf("unknown room: %v, want room-unavailable", err)
	}
	_, err = client.Dial(ctx, client.Options{URL: srv.URL() + "/r/board", Name: "Mallory", RootCAs: x509.NewCertPool()})
	if err == nil || !strings.Contains(err.Error(), "--ca") {
		t.Errorf("untrusted server: %v, want advice about --ca", err)
	}
	if _, err := client.ParseMeetingURL("http://host/r/x"); err == nil {
		t.Error("plain http meeting URL accepted")
	}
}
