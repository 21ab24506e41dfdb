package metrics

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const sampleMetrics = `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 1.048576e+08
process_resident_memory_peak_bytes 209715200
http_requests_total{code="200", method="get"} 7
process_open_fds 42
conclave_udp_receive_drops 3
conclave_media_gso 1
conclave_media_gso_sends_total 250
conclave_media_gso_datagrams_total 1500
`

func TestParse(t *testing.T) {
	requests := Metric{Name: "http_requests_total"}
	m, err := Parse([]byte(sampleMetrics), ProcessCPU, ProcessRSS, ProcessThreads, requests)
	if err != nil {
		t.Fatal(err)
	}
	if m[ProcessCPU.Name] != 12.5 || m[ProcessRSS.Name] != 1<<20*100 || len(m) != 2 {
		t.Errorf("Parse = %v", m)
	}
	for _, bad := range []string{"process_cpu_seconds_total\n", "process_cpu_seconds_total x\n", "process_cpu_seconds_total NaN\n",
		"process_cpu_seconds_total -1\n", "a b c d\n", "other 1\n"} {
		if _, err := Parse([]byte(bad), ProcessCPU); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	st, err := ParseSendStats([]byte(sampleMetrics))
	if err != nil || !st.GSO || st.GSOSends != 250 || st.GSODatagrams != 1500 {
		t.Errorf("ParseSendStats = %+v, %v", st, err)
	}
	if _, err := ParseSendStats([]byte("conclave_media_gso 1\n")); err == nil {
		t.Error("send stats without their counters accepted")
	}
}

const sampleDelay = `# HELP conclave_forward_delay_seconds Delay.
# TYPE conclave_forward_delay_seconds histogram
conclave_forward_delay_seconds_bucket{le="0.0005"} 10
conclave_forward_delay_seconds_bucket{le="0.001"} 30
conclave_forward_delay_seconds_bucket{le="0.002"} 60
conclave_forward_delay_seconds_bucket{le="0.005"} 90
conclave_forward_delay_seconds_bucket{le="0.01"} 99
conclave_forward_delay_seconds_bucket{le="0.02"} 99
conclave_forward_delay_seconds_bucket{le="0.05"} 100
conclave_forward_delay_seconds_bucket{le="0.1"} 100
conclave_forward_delay_seconds_bucket{le="0.2"} 100
conclave_forward_delay_seconds_bucket{le="0.5"} 100
conclave_forward_delay_seconds_bucket{le="1"} 100
conclave_forward_delay_seconds_bucket{le="2"} 100
conclave_forward_delay_seconds_bucket{le="5"} 100
conclave_forward_delay_seconds_bucket{le="+Inf"} 100
conclave_forward_delay_seconds_sum 0.25
conclave_forward_delay_seconds_count 100
`

func TestParseDelayHistogram(t *testing.T) {
	h, err := ParseDelayHistogram([]byte(sampleMetrics + sampleDelay))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{10, 20, 30, 30, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0}
	if !slices.Equal(h.Counts, want) {
		t.Fatalf("counts %v, want %v", h.Counts, want)
	}
	for name, body := range map[string]string{
		"absent":           sampleMetrics,
		"decreasing":       strings.Replace(sampleDelay, `le="0.01"} 99`, `le="0.01"} 80`, 1),
		"unknown le":       strings.Replace(sampleDelay, `le="0.01"}`, `le="0.03"}`, 1),
		"repeated":         sampleDelay + `conclave_forward_delay_seconds_bucket{le="1"} 100` + "\n",
		"not a number":     strings.Replace(sampleDelay, `le="1"} 100`, `le="1"} many`, 1),
		"a bucket missing": strings.Replace(sampleDelay, `conclave_forward_delay_seconds_bucket{le="2"} 100`+"\n", "", 1),
	} {
		if _, err := ParseDelayHistogram([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// What the server writes, the load tester reads back: every figure, the
// histogram's every bucket, the send counters.
func TestWriteThenParse(t *testing.T) {
	var b bytes.Buffer
	all := []Metric{ProcessCPU, ProcessRSS, ProcessRSSPeak, ProcessThreads, ProcessOpenFDs, UDPReceiveDrops,
		GoGoroutines, GoMemoryTotal, GoHeapObjectsBytes, GoGCCycles}
	for i, m := range all {
		Write(&b, m, strings.Repeat("7", i+1))
	}
	h := DelayHistogram{Counts: []uint64{1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4}, Sum: 1500 * time.Millisecond}
	WriteDelayHistogram(&b, h)
	WriteSendStats(&b, SendStats{GSO: true, GSOSends: 9, GSODatagrams: 40})

	got, err := Parse(b.Bytes(), all...)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range all {
		if want, _ := strconv.ParseFloat(strings.Repeat("7", i+1), 64); got[m.Name] != want {
			t.Errorf("%s read back as %v, want %v", m.Name, got[m.Name], want)
		}
	}
	back, err := ParseDelayHistogram(b.Bytes())
	if err != nil || !slices.Equal(back.Counts, h.Counts) {
		t.Errorf("histogram read back as %v, %v; want %v", back.Counts, err, h.Counts)
	}
	st, err := ParseSendStats(b.Bytes())
	if err != nil || st != (SendStats{GSO: true, GSOSends: 9, GSODatagrams: 40}) {
		t.Errorf("send stats read back as %+v, %v", st, err)
	}
	if !strings.Contains(b.String(), "# TYPE conclave_forward_delay_seconds histogram\n") ||
		!strings.Contains(b.String(), "# TYPE process_cpu_seconds_total counter\n") {
		t.Errorf("types missing:\n%s", b.String())
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleMetrics))
	f.Add([]byte("process_cpu_seconds_total 1e309\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b, ProcessCPU, ProcessRSS)
		if err != nil {
			return
		}
		for k, v := range m {
			if v < 0 || v > 1e18 || v != v {
				t.Fatalf("%s = %v accepted", k, v)
			}
		}
	})
}

func FuzzParseDelayHistogram(f *testing.F) {
	f.Add([]byte(sampleDelay))
	f.Add([]byte(`conclave_forward_delay_seconds_bucket{le="+Inf"} 18446744073709551615` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseDelayHistogram(b)
		if err != nil {
			return
		}
		if len(h.Counts) != len(DelayBuckets)+1 {
			t.Fatalf("%d counts", len(h.Counts))
		}
	})
}
