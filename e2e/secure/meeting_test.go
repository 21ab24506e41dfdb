package secure

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"conclave/internal/client"
	"conclave/internal/client/ivf"
	"conclave/internal/client/media"
	"conclave/internal/server"
	"conclave/internal/testutil/wait"
)

// TestMeeting: three native participants, two of them certified by the
// organisation, show one meeting code and the same verified list, and each
// decrypts and records the others' video and audio; the recordings
// decode (VP8 320x240, Ogg Opus).
func TestMeeting(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "board")
	orgKey, orgName := srv.org(t)
	if orgName != "Conclave Test Org" {
		t.Fatalf("organisation %q", orgName)
	}
	ann, bob := srv.certify(t, "ann"), srv.issue(t, "bob")
	before := runtime.NumGoroutine()
	av := func(id identity) joinOpts {
		return joinOpts{video: client.NewTestVideo(), audio: client.NewTestAudio(), record: true, id: id, orgKey: orgKey, orgName: orgName}
	}
	a := join(t, srv, "board", "Ann", av(ann))
	b := join(t, srv, "board", "Bob", av(bob))
	g := join(t, srv, "board", "Guest", av(identity{}))
	all := []*member{a, b, g}
	waitVerified(t, all...)
	for _, m := range all {
		for _, p := range m.sec.Participants() {
			wantCert := p.Name != "Guest"
			if p.Name == "Ann" && p.Verified && p.UserID != ann.userID {
				t.Errorf("%s sees Ann as user %q, want %q", m.name, p.UserID, ann.userID)
			}
			if p.Certified != wantCert || (wantCert && (p.Org != orgName || p.UserID == "")) {
				t.Errorf("%s sees %+v, want certified=%v by %q", m.name, p, wantCert, orgName)
			}
		}
	}
	for _, at := range all {
		for _, from := range all {
			if at != from {
				waitDecrypted(t, at, from, 60) // video and audio
			}
		}
	}
	code := a.sec.MeetingCode()
	for _, m := range all {
		if err := m.Leave(); err != nil {
			t.Errorf("%s's leave: %v", m.name, err)
		}
	}
	t.Logf("meeting code %s", code)
	// Every goroutine of the sessions and their E2EE is gone.
	wait.For(t, "the sessions' goroutines to end", 10*time.Second, func() bool { return runtime.NumGoroutine() <= before+2 })
	for _, m := range all {
		videos, _ := filepath.Glob(filepath.Join(m.dir, "*.ivf"))
		audios, _ := filepath.Glob(filepath.Join(m.dir, "*.ogg"))
		if len(videos) != 2 || len(audios) != 2 {
			t.Fatalf("%s recorded %v and %v, want two of each", m.name, videos, audios)
		}
		for _, v := range videos {
			frames := ivfFrames(t, v)
			img, err := decodeVP8(frames[0])
			if err != nil {
				t.Fatalf("%s: %s does not decode: %v", m.name, filepath.Base(v), err)
			}
			if b := img.Bounds(); b.Dx() != media.VideoWidth || b.Dy() != media.VideoHeight || len(frames) < 10 {
				t.Errorf("%s: %s is %v with %d frames", m.name, filepath.Base(v), b, len(frames))
			}
		}
		for _, a := range audios {
			if n := oggPages(t, a); n < 20 {
				t.Errorf("%s: %s has %d pages", m.name, filepath.Base(a), n)
			}
		}
		// No frame reached a recording without decryption: every
		// recorded frame is one the E2EE layer decrypted.
		for _, st := range m.Stats() {
			if st.Frames > 0 && st.TransformErrors > st.Frames/2 {
				t.Errorf("%s: %s/%s: %d of %d frames dropped", m.name, st.Name, st.Source, st.TransformErrors, st.Frames)
			}
		}
	}
}

func ivfFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ivf.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	for {
		fr, _, err := r.ReadFrame(nil)
		if err != nil {
			return out
		}
		out = append(out, fr)
	}
}

func oggPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	n := 0
	for {
		_, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "EOF") {
			return n
		}
		if err != nil {
			t.Fatalf("%s: page %d: %v", path, n, err)
		}
		n++
	}
}
