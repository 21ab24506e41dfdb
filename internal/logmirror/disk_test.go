package logmirror

import (
	"encoding/binary"
	"testing"
)

// FuzzParseRecords: the records file of a copy (a damaged disk, another
// program's file) never makes parseRecords panic or return records it
// does not hold.
func FuzzParseRecords(f *testing.F) {
	var ok []byte
	for _, r := range []string{"one", "two records", "three"} {
		ok = binary.BigEndian.AppendUint32(ok, uint32(len(r)))
		ok = append(ok, r...)
	}
	f.Add(ok, int64(3))
	f.Add(ok[:9], int64(2))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, int64(1))
	f.Fuzz(func(t *testing.T, data []byte, n int64) {
		n %= 1 << 16
		if n < 0 {
			n = -n // checkpoints have no negative size
		}
		recs, used, err := parseRecords(data, n)
		if err != nil {
			return
		}
		if int64(len(recs)) != n || used > len(data) {
			t.Fatalf("%d records of %d, %d bytes of %d", len(recs), n, used, len(data))
		}
		total := 0
		for _, r := range recs {
			if len(r) == 0 || len(r) > MaxRecord {
				t.Fatalf("a record of %d bytes", len(r))
			}
			total += 4 + len(r)
		}
		if total != used {
			t.Fatalf("records take %d bytes, parseRecords says %d", total, used)
		}
	})
}
