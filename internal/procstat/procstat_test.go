package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		in      string
		ticks   uint64
		threads int
		ok      bool
	}{
		{"1234 (conclave) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 1000000 2000 18446744073709551615", 300, 12, true},
		{"1 (a b) c)) R 0 1 1 0 -1 0 0 0 0 0 7 8 0 0 20 0 3 0 1", 15, 3, true},
		{"1 (x R 0", 0, 0, false},
		{"1 (x) R 0 1 1 0 -1 0 0 0 0 0 7", 0, 0, false},
		{"1 (x) R 0 1 1 0 -1 0 0 0 0 0 -7 8 0 0 20 0 3 0 1", 0, 0, false},
	}
	for _, tt := range tests {
		ticks, threads, err := ParseStat([]byte(tt.in))
		if (err == nil) != tt.ok || ticks != tt.ticks || threads != tt.threads {
			t.Errorf("ParseStat(%q) = %d, %d, %v", tt.in, ticks, threads, err)
		}
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tconclave\nVmPeak:\t 2000 kB\nVmHWM:\t  300 kB\nVmRSS:\t  200 kB\nThreads:\t12\n"
	rss, peak, err := ParseStatus([]byte(in))
	if err != nil || rss != 200<<10 || peak != 300<<10 {
		t.Errorf("ParseStatus = %d, %d, %v", rss, peak, err)
	}
	for _, bad := range []string{"VmRSS: 1 kB\n", "VmRSS: x kB\nVmHWM: 1 kB\n", "VmRSS: 1 MB\nVmHWM: 1 kB\n", "VmRSS: -1 kB\nVmHWM: 1 kB\n"} {
		if _, _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
}

// TestRead: this process's own figures are plausible and CPU time grows
// with work.
func TestRead(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	a, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	b, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if b.CPU <= a.CPU || b.RSS <= 0 || b.Peak < b.RSS || b.Threads < 1 || b.FDs < 3 || b.UDPDrops != 0 {
		t.Errorf("samples %+v then %+v (after %d loops)", a, b, x)
	}
	if ClockTick() != 100 {
		t.Logf("USER_HZ is %d", ClockTick())
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (conclave) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100"))
	f.Add([]byte("1 (a) b)) R 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ticks, threads, err := ParseStat(b)
		if err != nil && (ticks != 0 || threads != 0) {
			t.Fatal("values with an error")
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmHWM:\t  300 kB\nVmRSS:\t  200 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rss, peak, err := ParseStatus(b)
		if err == nil && (rss < 0 || peak < 0) {
			t.Fatal("negative memory")
		}
	})
}

func TestParseUDPDrops(t *testing.T) {
	table := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 7862: 0100007F:BBDE 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1174520 2 0000000053fc15e6 5
12838: 020200C0:8F4E 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1175478 2 0000000053e586a6 7
12839: 020200C0:8F4F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1175479 2 0000000053e586a7 100
`
	n, err := ParseUDPDrops([]byte(table), map[uint64]bool{1174520: true, 1175478: true})
	if err != nil || n != 12 {
		t.Errorf("ParseUDPDrops = %d, %v; want 12", n, err)
	}
	if _, err := ParseUDPDrops([]byte("header\n 1: a b\n"), nil); err == nil {
		t.Error("a short line was accepted")
	}
}

func FuzzParseUDPDrops(f *testing.F) {
	f.Add([]byte("sl\n 1: 0100007F:BBDE 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 42 2 0000 5\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseUDPDrops(b, map[uint64]bool{42: true})
		if err == nil && n < 0 {
			t.Fatal("negative drops")
		}
	})
}
