package logtree

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func records(n int, tag string) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, fmt.Appendf(nil, "%s record %d", tag, i))
	}
	return out
}

func TestProofsVerify(t *testing.T) {
	tr := New()
	recs := records(13, "a")
	for _, r := range recs {
		if _, err := tr.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	for size := int64(1); size <= tr.Size(); size++ {
		root, err := tlog.TreeHash(size, tr)
		if err != nil {
			t.Fatal(err)
		}
		es, err := tr.Entries(0, size)
		if err != nil || int64(len(es)) != size {
			t.Fatalf("entries of %d: %d, %v", size, len(es), err)
		}
		for i, e := range es {
			if err := tlog.CheckRecord(e.Proof, size, root, int64(i), tlog.RecordHash(e.Record)); err != nil {
				t.Fatalf("record %d of %d: %v", i, size, err)
			}
		}
		p, err := tr.Prove(3, size, []tlog.Hash{tlog.RecordHash(recs[2]), tlog.RecordHash([]byte("absent"))})
		if size < 3 {
			if !errors.Is(err, ErrTreeSize) {
				t.Fatalf("prove from 3 in %d: %v", size, err)
			}
			continue
		}
		old, _ := tlog.TreeHash(3, tr)
		if err != nil || tlog.CheckTree(p.Consistency, size, root, 3, old) != nil {
			t.Fatalf("consistency 3..%d: %v", size, err)
		}
		if p.Inclusion[0].Index != 2 || p.Inclusion[1].Index != -1 {
			t.Fatalf("inclusion: %+v", p.Inclusion)
		}
	}
}

// TestExtendRefusesOtherTree: records that do not make the expected tree
// leave the tree as it was, its index included.
func TestExtendRefusesOtherTree(t *testing.T) {
	honest := New()
	for _, r := range records(7, "a") {
		honest.Append(r)
	}
	want, _ := honest.Root()

	tr := New()
	if err := tr.Extend(records(4, "a"), mustRoot(t, records(4, "a"))); err != nil {
		t.Fatal(err)
	}
	before, _ := tr.Root()
	forged := records(7, "a")[4:]
	forged[1] = []byte("forged")
	if err := tr.Extend(forged, want); !errors.Is(err, ErrRootMismatch) {
		t.Fatalf("forged records: %v", err)
	}
	if after, _ := tr.Root(); tr.Size() != 4 || after != before {
		t.Fatalf("the refused records stayed: size %d", tr.Size())
	}
	if p, _ := tr.Prove(0, 0, []tlog.Hash{tlog.RecordHash([]byte("forged"))}); p.Inclusion[0].Index != -1 {
		t.Fatal("the refused record is still indexed")
	}
	if err := tr.Extend(records(7, "a")[4:], want); err != nil {
		t.Fatal(err)
	}
	if got, _ := tr.Root(); got != want {
		t.Fatal("extended tree differs from the honest one")
	}
}

func mustRoot(t *testing.T, recs [][]byte) tlog.Hash {
	t.Helper()
	tr := New()
	for _, r := range recs {
		tr.Append(r)
	}
	h, err := tr.Root()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
