package files

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(t.TempDir()+"/files", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutGet(t *testing.T) {
	s := open(t, Config{MaxSize: 1000})
	data := bytes.Repeat([]byte{0xAB}, 700)
	id, err := s.Put("m1", "p", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f, size, err := s.Get("m1", id)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if size != 700 || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes (size %d), want the 700 stored", len(got), size)
	}
	if _, _, err := s.Get("m2", id); !errors.Is(err, ErrNotFound) {
		t.Errorf("another meeting read the blob: %v", err)
	}
	if _, _, err := s.Get("m1", "../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("path traversal: %v", err)
	}
	s.DeleteMeeting("m1")
	if _, _, err := s.Get("m1", id); !errors.Is(err, ErrNotFound) {
		t.Errorf("blob survived its meeting: %v", err)
	}
	if s.Used() != 0 {
		t.Errorf("Used = %d after deletion", s.Used())
	}
}

func TestLimits(t *testing.T) {
	s := open(t, Config{MaxSize: 100, Quota: 250})
	if _, err := s.Put("m", "p", strings.NewReader(strings.Repeat("x", 101)), -1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := s.Put("m", "p", strings.NewReader("short"), 10); err == nil {
		t.Fatal("a truncated upload was accepted")
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Put("m", "p", strings.NewReader(strings.Repeat("x", 100)), 100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put("m", "p", strings.NewReader(strings.Repeat("x", 100)), 100); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("over quota: %v", err)
	}
	entries, _ := os.ReadDir(s.dir)
	if len(entries) != 2 {
		t.Errorf("%d files on disk, want the 2 accepted (no leftovers of failures)", len(entries))
	}
}

func TestExpiry(t *testing.T) {
	c := fakeclock.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC))
	s := open(t, Config{TTL: time.Hour, Clock: c})
	id, err := s.Put("m", "p", strings.NewReader("blob"), 4)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(59 * time.Minute)
	if _, _, err := s.Get("m", id); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	c.Advance(time.Minute)
	if _, _, err := s.Get("m", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestPutID(t *testing.T) {
	s := open(t, Config{})
	id := "00112233445566778899aabbccddeeff"
	got, err := s.PutID("m", "p", id, strings.NewReader("blob"), 4)
	if err != nil || got != id {
		t.Fatalf("PutID = %q, %v", got, err)
	}
	if _, err := s.PutID("m", "p", id, strings.NewReader("other"), 5); !errors.Is(err, ErrExists) {
		t.Fatalf("taken id: %v", err)
	}
	if _, err := s.PutID("m", "p", "../x", strings.NewReader("x"), 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("malformed id: %v", err)
	}
}

// TestHardening03FileStoreQuotas: an upload of unknown length holds only
// what it has sent, not the largest file size; one participant, and one
// meeting, cannot take more than their share; an upload still running
// when its meeting ends is stopped and leaves nothing.
func TestHardening03FileStoreQuotas(t *testing.T) {
	const mib = 1 << 20
	s := open(t, Config{MaxSize: 100 * mib, Quota: 150 * mib, ParticipantQuota: 8 * mib, MeetingQuota: 12 * mib})

	// A chunked upload that has sent 1 KiB so far.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.Put("m", "mallory", pr, -1)
		done <- err
	}()
	pw.Write(make([]byte, 1024))
	if used := s.Used(); used > 2*mib {
		t.Errorf("a chunked upload that sent 1 KiB holds %d bytes of the store", used)
	}
	// Another participant's upload is not refused meanwhile.
	if _, err := s.Put("n", "alice", strings.NewReader("hello"), 5); err != nil {
		t.Fatalf("another upload during a chunked one: %v", err)
	}

	// Mallory goes on past the participant quota: refused there.
	go func() {
		for i := 0; i < 20; i++ {
			if _, err := pw.Write(make([]byte, mib)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	if err := <-done; !errors.Is(err, ErrQuota) {
		t.Fatalf("participant over its quota: %v", err)
	}
	pr.CloseWithError(io.ErrClosedPipe)
	// The meeting's other participants still have room, up to the
	// meeting's quota.
	if _, err := s.Put("m", "bob", bytes.NewReader(make([]byte, 7*mib)), 7*mib); err != nil {
		t.Fatalf("bob: %v", err)
	}
	if _, err := s.Put("m", "carol", bytes.NewReader(make([]byte, 6*mib)), 6*mib); !errors.Is(err, ErrQuota) {
		t.Fatalf("meeting over its quota: %v", err)
	}

	// An upload running when its meeting ends fails and leaves nothing.
	pr2, pw2 := io.Pipe()
	go func() {
		_, err := s.Put("z", "zoe", pr2, -1)
		done <- err
	}()
	pw2.Write(make([]byte, 4096))
	s.DeleteMeeting("z")
	go func() {
		pw2.Write(make([]byte, 4096))
		pw2.Close()
	}()
	if err := <-done; !errors.Is(err, ErrMeetingEnded) {
		t.Fatalf("upload across the meeting's end: %v", err)
	}
	if got, want := s.Used(), int64(7*mib+5); got != want {
		t.Errorf("the store holds %d bytes after the ended meeting's upload, want %d (alice's and bob's)", got, want)
	}
	entries, _ := os.ReadDir(s.dir)
	if len(entries) != 2 { // alice's and bob's
		t.Errorf("%d files on disk, want 2", len(entries))
	}
}
