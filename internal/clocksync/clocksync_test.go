package clocksync

import (
	"strings"
	"testing"
)

// The kernel answers (synchronised or not: this machine decides), and the
// summary says which.
func TestSystem(t *testing.T) {
	st := System()
	if st.Error != "" {
		t.Fatalf("adjtimex: %s", st.Error)
	}
	if st.Status == "" {
		t.Fatalf("no kernel state: %+v", st)
	}
	want := "not synchronised"
	if st.Synced {
		want = "is synchronised"
	}
	if !strings.Contains(st.Summary(), want) {
		t.Fatalf("summary %q for %+v", st.Summary(), st)
	}
	t.Logf("this machine: %s", st.Summary())
}
