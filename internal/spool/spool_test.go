package spool

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"conclave/internal/audit"
)

// TestSpoolKeepsUntilAcknowledged: entries survive a restart until they
// are acknowledged, in order; a line cut by a crash is dropped; the file
// is emptied once everything is delivered.
func TestSpoolKeepsUntilAcknowledged(t *testing.T) {
	dir := t.TempDir()
	now := func() time.Time { return time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC) }
	s, err := Open(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"one", "two", "three"} {
		if err := s.Record(context.Background(), audit.Event{Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := s.peek()
	if e.Seq != 1 || e.Audit.Action != "one" || !e.Audit.Time.Equal(now()) {
		t.Fatalf("first entry %+v", e)
	}
	if err := s.ack(1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A crash while writing a fourth entry leaves half a line.
	f, _ := os.OpenFile(filepath.Join(dir, logFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":4,"audit":{"act`)
	f.Close()

	s, err = Open(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending() != 2 {
		t.Fatalf("pending after restart %d, want 2", s.Pending())
	}
	if e, _ := s.peek(); e.Seq != 2 || e.Audit.Action != "two" {
		t.Fatalf("oldest after restart %+v", e)
	}
	if err := s.Record(context.Background(), audit.Event{Action: "four"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{2, 3, 4} {
		e, ok := s.peek()
		if !ok || e.Seq != want {
			t.Fatalf("entry %d: %+v %v", want, e, ok)
		}
		if err := s.ack(e.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, logFile)); err != nil || fi.Size() != 0 {
		t.Fatalf("spool file after delivery: %v %v", fi.Size(), err)
	}
	s.Close()
	s, err = Open(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Pending() != 0 {
		t.Fatalf("pending %d after everything was delivered", s.Pending())
	}
	if err := s.Record(context.Background(), audit.Event{Action: "five"}); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.peek(); e.Seq != 5 {
		t.Fatalf("numbering restarted: %d", e.Seq)
	}
}

func TestNodeOfSubject(t *testing.T) {
	for subj, want := range map[string]string{
		"conclave.node.paris-1.spool":  "paris-1",
		"conclave.node.paris-1.status": "",
		"conclave.node.a.b.spool":      "",
		"conclave.other.paris-1.spool": "",
	} {
		if got := nodeOf(subj); got != want {
			t.Errorf("nodeOf(%q) = %q, want %q", subj, got, want)
		}
	}
}
