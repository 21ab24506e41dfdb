package sidebyside

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestParseCounters reads the counters from nft's JSON listing (recorded
// from nftables 1.0.6 with the table installCounters writes).
func TestParseCounters(t *testing.T) {
	b, err := os.ReadFile("testdata/nft-list.json")
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"counter": {"packets": 0, "bytes": 0}`), []byte(`"counter": {"packets": 12, "bytes": 3400}`), 1)
	out, in, err := parseCounters(b)
	if err != nil {
		t.Fatal(err)
	}
	if out != (counter{12, 3400}) || in != (counter{}) {
		t.Fatalf("out %+v in %+v", out, in)
	}
	if _, _, err := parseCounters([]byte(`{"nftables": []}`)); err == nil {
		t.Fatal("a listing without the counters was accepted")
	}
	if _, _, err := parseCounters([]byte(`not json`)); err == nil {
		t.Fatal("garbage was accepted")
	}
}

func TestParseSNMP(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 997375 269 0 787482 5 0 0 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n"
	c, err := parseSNMP([]byte(snmp))
	if err != nil {
		t.Fatal(err)
	}
	if c != (udpCounters{in: 997375, out: 787482, rcvbuf: 5}) {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{"", "Udp: InDatagrams\nUdp: x\n", "Udp: A B\nUdp: 1 2\n"} {
		if _, err := parseSNMP([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestUDPListeners(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:1ECA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 111 2 0000000000000000 0
  2: 0100007F:9C40 0100007F:1ECA 01 00000000:00000000 00:00000000 00000000     0        0 222 2 0000000000000000 0
  3: 0100007F:1ECB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 333 2 0000000000000000 0
`
	got := udpListeners([]byte(table), map[uint64]bool{111: true, 222: true})
	if len(got) != 1 || got[0] != 7882 {
		t.Fatalf("listeners %v, want [7882] (the connected socket and another process's are not)", got)
	}
}

func TestLastPercentAndShapes(t *testing.T) {
	lk := "│ Sub 1  │ 6/6    │ 2.4mbps  │ 0 (0%)   │ -  │\n│ Total  │ 600/600 │ 243.1mbps (2.4mbps avg) │ 123 (0.0412%) │ 0     │\n"
	re := regexp.MustCompile(`Total[^0-9]*[0-9]+/[0-9]+[^0-9]*[0-9.]+[^│|]*[│|][^0-9]*[0-9]+ \(([0-9.]+)%\)`)
	if v := lastPercent(re, []byte(lk)); v != 0.0412 {
		t.Fatalf("loss %v", v)
	}
	if v := lastPercent(re, []byte("nothing")); v != -1 {
		t.Fatalf("loss %v without a report", v)
	}
	if s, err := ParseShape("10x100"); err != nil || s != (Shape{10, 100}) {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"10", "x5", "0x3", "3x-1", "1x100000"} {
		if _, err := ParseShape(bad); err == nil {
			t.Errorf("shape %q accepted", bad)
		}
	}
}

// TestTable: each pair's ratios are the first system's against the
// second's, whichever ran first.
func TestTable(t *testing.T) {
	a := Result{System: "conclave", Shape: "10x100", Run: 2, Order: 2, Window: 30, SentBytes: 30 * 250e6 / 8, Datagrams: 30 * 35000, ServerCPU: 30 * 0.4, MaxRSS: 200 << 20, LossPercent: 0}
	b := Result{System: "peer", Shape: "10x100", Run: 2, Order: 1, Window: 30, SentBytes: 30 * 250e6 / 8, Datagrams: 30 * 35000, ServerCPU: 30 * 0.8, MaxRSS: 500 << 20, LossPercent: 0.1}
	var w strings.Builder
	WriteTable(&w, []Result{b, a}, "conclave", "peer")
	out := w.String()
	for _, want := range []string{"| 10x100 | 2 | 1 | peer | 250.0 Mbit/s | 35000 | 0.80 cores | 0.312 | 22.9 µs | 500 MiB | 0.100 % |",
		"conclave ÷ peer | | | | **2.00x** | **2.00x** (conclave's is 50 % of peer's) | 0.40x"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
