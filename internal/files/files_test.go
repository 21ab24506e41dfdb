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
	id, err := s.Put("m1", bytes.NewReader(data), int64(len(data)))
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
	if _, err := s.Put("m", strings.NewReader(strings.Repeat("x", 101)), -1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := s.Put("m", strings.NewReader("short"), 10); err == nil {
		t.Fatal("a truncated upload was accepted")
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Put("m", strings.NewReader(strings.Repeat("x", 100)), 100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put("m", strings.NewReader(strings.Repeat("x", 100)), 100); !errors.Is(err, ErrStorageFull) {
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
	id, err := s.Put("m", strings.NewReader("blob"), 4)
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
	got, err := s.PutID("m", id, strings.NewReader("blob"), 4)
	if err != nil || got != id {
		t.Fatalf("PutID = %q, %v", got, err)
	}
	if _, err := s.PutID("m", id, strings.NewReader("other"), 5); !errors.Is(err, ErrExists) {
		t.Fatalf("taken id: %v", err)
	}
	if _, err := s.PutID("m", "../x", strings.NewReader("x"), 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("malformed id: %v", err)
	}
}
