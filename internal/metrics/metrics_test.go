package metrics

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// What a collector built on these definitions publishes, in
// client_golang's text format (internal/server/prom.go's way), the load
// tester reads back: every figure, the histogram's every bucket, the send
// counters.
func TestPublishThenParse(t *testing.T) {
	h := DelayHistogram{Counts: []uint64{1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4}, Sum: 1500 * time.Millisecond}
	st := SendStats{GSO: true, GSOSends: 9, GSODatagrams: 40, Packets: 1000, Bytes: 1_000_000}
	values := map[string]float64{}
	c := collectFunc(func(ch chan<- prometheus.Metric) {
		for i, m := range []Metric{ProcessRSSPeak, ProcessThreads, UDPReceiveDrops, Meetings, Participants, AuditFilesBytes, ClockSynchronized} {
			v := float64(7 * (i + 1))
			values[m.Name] = v
			ch <- prometheus.MustNewConstMetric(m.Desc(), prometheus.GaugeValue, v)
		}
		gso := 0.0
		if st.GSO {
			gso = 1
		}
		ch <- prometheus.MustNewConstMetric(MediaGSO.Desc(), prometheus.GaugeValue, gso)
		ch <- prometheus.MustNewConstMetric(MediaGSOSends.Desc(), prometheus.CounterValue, float64(st.GSOSends))
		ch <- prometheus.MustNewConstMetric(MediaGSODatagrams.Desc(), prometheus.CounterValue, float64(st.GSODatagrams))
		ch <- prometheus.MustNewConstMetric(ForwardedPackets.Desc(), prometheus.CounterValue, float64(st.Packets))
		ch <- prometheus.MustNewConstMetric(ForwardedBytes.Desc(), prometheus.CounterValue, float64(st.Bytes))
		buckets := map[float64]uint64{}
		var total uint64
		for i, n := range h.Counts {
			total += n
			if i < len(DelayBuckets) {
				buckets[DelayBuckets[i]] = total
			}
		}
		ch <- prometheus.MustNewConstHistogram(ForwardDelay.Desc(), total, h.Sum.Seconds(), buckets)
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.Bytes()

	got, err := Parse(body, ProcessRSSPeak, ProcessThreads, UDPReceiveDrops, Meetings, Participants, AuditFilesBytes, ClockSynchronized)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range values {
		if got[name] != want {
			t.Errorf("%s read back as %v, want %v", name, got[name], want)
		}
	}
	back, err := ParseDelayHistogram(body)
	if err != nil || !slices.Equal(back.Counts, h.Counts) {
		t.Errorf("histogram read back as %v, %v; want %v\n%s", back.Counts, err, h.Counts, body)
	}
	if sent, err := ParseSendStats(body); err != nil || sent != st {
		t.Errorf("send stats read back as %+v, %v; want %+v", sent, err, st)
	}
}

// collectFunc is a prometheus.Collector of const metrics, unchecked.
type collectFunc func(chan<- prometheus.Metric)

func (collectFunc) Describe(chan<- *prometheus.Desc)      {}
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

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
