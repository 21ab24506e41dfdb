package alarm

import (
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

type rec struct {
	c      *Center
	events []string
}

func (r *rec) Raised(a Alarm) {
	r.events = append(r.events, "+"+a.Kind+"/"+string(a.Severity))
	// An observer that raises an alarm of its own (as the audit log's
	// storage alarm does) does not deadlock; its change comes next.
	if a.Kind == KindDisk {
		r.c.Raise(KindAuditStorage, "x", Critical, "nested")
	}
}
func (r *rec) Cleared(a Alarm) { r.events = append(r.events, "-"+a.Kind) }

func TestRaiseClear(t *testing.T) {
	clk := fakeclock.New(time.Unix(1000, 0))
	c := New(clk)
	r := &rec{c: c}
	c.Observe(r)
	if !c.Raise(KindClock, "system", Major, "a") {
		t.Fatal("first raise not new")
	}
	clk.Advance(time.Minute)
	if c.Raise(KindClock, "system", Major, "b") {
		t.Fatal("second raise new")
	}
	c.Raise(KindClock, "system", Critical, "c")
	c.Raise(KindDisk, "/", Minor, "d")
	act := c.Active()
	if len(act) != 3 || act[0].Severity != Critical || act[0].Message != "c" || !act[0].Raised.Equal(time.Unix(1000, 0).UTC()) {
		t.Fatalf("active %+v", act)
	}
	if !c.Clear(KindClock, "system") || c.Clear(KindClock, "system") {
		t.Fatal("clear")
	}
	c.Set(false, KindDisk, "/", Minor, "")
	want := []string{"+clock/major", "+clock/critical", "+disk/minor", "+audit-storage/critical", "-clock", "-disk"}
	if len(r.events) != len(want) {
		t.Fatalf("events %v, want %v", r.events, want)
	}
	for i := range want {
		if r.events[i] != want[i] {
			t.Fatalf("events %v, want %v", r.events, want)
		}
	}
	if n := c.Count()[[2]string{KindAuditStorage, "critical"}]; n != 1 {
		t.Fatalf("count %d", n)
	}
}
