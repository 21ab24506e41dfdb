package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/image/vp8"

	"conclave/internal/client"
	"conclave/internal/client/ivf"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/testlog"
)

// native is a `conclave join` participant run in the test process.
type native struct {
	*client.Session
	sec *secure.Session
	dir string // recordings
}

// joinNative joins room with the native client, E2EE on, publishing the
// embedded test clips and recording what it receives.
func joinNative(t *testing.T, srv *server.Server, room, name string) *native {
	t.Helper()
	roots, err := pki.CAPool(srv.TLS())
	if err != nil {
		t.Fatal(err)
	}
	return joinNativeWith(t, srv.URL(), roots, room, name, nativeOpts{camera: client.NewTestVideo(), audio: true, record: true})
}

// nativeOpts say what a native participant of a test does.
type nativeOpts struct {
	camera   client.FrameSource    // published as the camera, if set
	audio    bool                  // publish the test audio clip
	thumbs   bool                  // show every remote video as a 160x120 thumbnail (layout)
	record   bool                  // record what it receives into IVF/Ogg files
	observer func(secure.KeyEvent) // sees its key events (secure.Config.Observer)
}

// joinNativeWith joins room at the server at base, trusted by roots, with
// the native client, E2EE on, doing what o says.
func joinNativeWith(t *testing.T, base string, roots *x509.CertPool, room, name string, o nativeOpts) *native {
	t.Helper()
	device, err := e2ee.GenerateDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	log := testlog.Logger(t, slog.LevelError).With("who", name)
	sec, err := secure.New(secure.Config{Device: device, Name: name, Logger: log, Observer: o.observer})
	if err != nil {
		t.Fatal(err)
	}
	n := &native{sec: sec, dir: t.TempDir()}
	opts := client.Options{URL: base + "/r/" + room, Name: name, RootCAs: roots, Logger: log}
	if o.camera != nil {
		opts.Camera = o.camera
	}
	if o.audio {
		opts.Microphone = client.NewTestAudio()
	}
	if o.record {
		opts.NewSink = client.Recorder(n.dir)
	}
	if o.thumbs {
		opts.Layout = func(tracks []client.TrackInfo) map[string]client.Size {
			sizes := map[string]client.Size{}
			for _, tr := range tracks {
				if tr.Kind == "video" {
					sizes[tr.Mid] = client.Size{Width: 160, Height: 120}
				}
			}
			return sizes
		}
	}
	sec.Wire(&opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n.Session, err = client.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	t.Cleanup(func() { n.Leave() })
	return n
}

// received returns the native client's counters for one remote track.
func (n *native) received(participant, source string) client.TrackStats {
	for _, s := range n.Stats() {
		if s.Participant == participant && s.Source == source {
			return s
		}
	}
	return client.TrackStats{}
}

// decodedKeyFrame decodes the first frame of the recording of a
// participant's camera (the recorder starts at a key frame) and returns
// its size.
func (n *native) decodedKeyFrame(t *testing.T, participant string) (int, int) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(n.dir, "*"+participant+"*camera*.ivf"))
	if len(matches) == 0 {
		t.Fatalf("no recording of %s's camera in %s", participant, n.dir)
	}
	data, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	r, err := ivf.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	frame, _, err := r.ReadFrame(nil)
	if err != nil {
		t.Fatalf("read recorded frame: %v", err)
	}
	d := vp8.NewDecoder()
	d.Init(bytes.NewReader(frame), len(frame))
	fh, err := d.DecodeFrameHeader()
	if err != nil || !fh.KeyFrame {
		t.Fatalf("recorded frame of %s: header %+v, %v", participant, fh, err)
	}
	img, err := d.DecodeFrame()
	if err != nil {
		t.Fatalf("decode %s's key frame: %v", participant, err)
	}
	return img.Bounds().Dx(), img.Bounds().Dy()
}

// TestE2EEBrowserAndNative: a browser and the native client meet with E2EE
// on: each decodes the other's video and audio, and both show the same
// meeting code.
func TestE2EEBrowserAndNative(t *testing.T) {
	srv := startServer(t, "alpha")
	b := browser.Start(t)
	alice := join(t, b, srv.URL(), "alpha", "Alice")
	nico := joinNative(t, srv, "alpha", "Nico")
	nicoP := &participant{t: t, name: "Nico", id: nico.Self().ID}

	alice.waitMedia(nicoP, "camera", true)
	code := alice.waitE2EE()
	deadline := time.Now().Add(15 * time.Second)
	for nico.sec.MeetingCode() != code {
		if time.Now().After(deadline) {
			t.Fatalf("meeting codes differ: browser %q, native %q", code, nico.sec.MeetingCode())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("browser and native client show the same meeting code %s", code)

	// The native client decrypts Alice's camera and microphone.
	deadline = time.Now().Add(20 * time.Second)
	var cam, mic client.TrackStats
	for {
		cam, mic = nico.received(alice.id, "camera"), nico.received(alice.id, "microphone")
		if cam.KeyFrames > 0 && cam.Frames > 30 && mic.Frames > 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("native client received from Alice: camera %+v, microphone %+v; secure %+v", cam, mic, nico.sec.Stats())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, st := range nico.sec.Stats() {
		if st.Participant == alice.id && st.Decrypted == 0 {
			t.Fatalf("native client decrypted nothing of Alice's: %+v", st)
		}
	}
	w, h := nico.decodedKeyFrame(t, alice.id)
	if w == 0 || h == 0 {
		t.Fatalf("Alice's decrypted key frame decodes to %dx%d", w, h)
	}
	t.Logf("native client: %d camera frames (%d key frames, decoded %dx%d) and %d audio frames from Alice", cam.Frames, cam.KeyFrames, w, h, mic.Frames)
}
