package files

import (
	"errors"
	"strings"
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

// TestRemote: the store announces what it keeps, remembers what other
// nodes keep, per meeting, and forgets it with the meeting or after the
// files' lifetime; an id taken on another node of the meeting is taken
// here too; announcements that do not name a blob are refused.
func TestRemote(t *testing.T) {
	c := fakeclock.New(time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC))
	s := open(t, Config{TTL: time.Hour, Clock: c})
	var stored []Ref
	s.OnStored(func(r Ref) { stored = append(stored, r) })
	id, err := s.Put("m1", "p", strings.NewReader("blob"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Ref{Meeting: "m1", ID: id, Size: 4}); len(stored) != 1 || stored[0] != want {
		t.Fatalf("announced %+v, want %+v", stored, want)
	}
	if l := s.List(); len(l) != 1 || l[0] != stored[0] {
		t.Fatalf("List = %+v", l)
	}

	theirs := strings.Repeat("ab", 16)
	if err := s.Learn("node-a", Ref{Meeting: "m1", ID: theirs, Size: 7}); err != nil {
		t.Fatal(err)
	}
	if node, size, ok := s.Locate("m1", theirs); !ok || node != "node-a" || size != 7 {
		t.Fatalf("Locate = %q %d %v", node, size, ok)
	}
	if _, _, ok := s.Locate("m2", theirs); ok {
		t.Fatal("a file of meeting m1 located for meeting m2")
	}
	if _, err := s.PutID("m1", "q", theirs, strings.NewReader("fake"), 4); !errors.Is(err, ErrExists) {
		t.Fatalf("an upload under the id another node keeps in the meeting: %v", err)
	}
	if err := s.Learn("node-a", Ref{Meeting: "m1", ID: id, Size: 4}); !errors.Is(err, ErrExists) {
		t.Fatalf("another node claiming a blob kept here: %v", err)
	}
	for _, bad := range []Ref{{Meeting: "m1", ID: "../x"}, {Meeting: "", ID: theirs}, {Meeting: "m1/x", ID: theirs}, {Meeting: "m1", ID: theirs, Size: -1}} {
		if err := s.Learn("node-a", bad); err == nil {
			t.Errorf("Learn(%+v) accepted", bad)
		}
	}

	s.DeleteMeeting("m1")
	if _, _, ok := s.Locate("m1", theirs); ok || s.Remote() != 0 || s.Used() != 0 {
		t.Fatalf("after the meeting: located %v, %d remote, %d bytes", ok, s.Remote(), s.Used())
	}
	s.Learn("node-a", Ref{Meeting: "m3", ID: theirs, Size: 7})
	c.Advance(time.Hour)
	if _, _, ok := s.Locate("m3", theirs); ok {
		t.Fatal("another node's file located after the files' lifetime")
	}
}
