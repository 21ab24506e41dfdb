package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"conclave/internal/metrics"
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

// TestDebugServer: a server's debug listener is a Probe and serves
// profiles.
func TestDebugServer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(sampleMetrics)) })
	mux.HandleFunc("GET /debug/pprof/heap", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("heap")) })
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("cpu " + r.URL.Query().Get("seconds")))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	d, err := NewDebugServer(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU != 12500*time.Millisecond || s.RSS != 100<<20 || s.Peak != 200<<20 || s.FDs != 42 || s.UDPDrops != 3 {
		t.Errorf("sample %+v", s)
	}
	if st, err := d.SendStats(context.Background()); err != nil || !st.GSO || st.GSOSends != 250 || st.GSODatagrams != 1500 {
		t.Errorf("send stats %+v, %v", st, err)
	}
	if p, err := d.CPUProfile(context.Background(), 1400*time.Millisecond); err != nil || string(p) != "cpu 1" {
		t.Errorf("CPU profile %q, %v", p, err)
	}
	if p, err := d.HeapProfile(context.Background()); err != nil || string(p) != "heap" {
		t.Errorf("heap profile %q, %v", p, err)
	}
	for _, bad := range []string{"https://127.0.0.1:6060", "127.0.0.1:6060", "http://127.0.0.1:6060/metrics", "http://"} {
		if _, err := NewDebugServer(bad); err == nil {
			t.Errorf("NewDebugServer(%q) accepted", bad)
		}
	}
	if !strings.HasSuffix(d.String(), "/metrics") {
		t.Errorf("String() = %q", d)
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

// The server delay's quantiles over a window: bucket upper bounds, from
// what the window added.
func TestDelayQuantiles(t *testing.T) {
	h, err := metrics.ParseDelayHistogram([]byte(sampleMetrics + sampleDelay))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{10, 20, 30, 30, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0}
	if !slices.Equal(h.Counts, want) {
		t.Fatalf("counts %v, want %v", h.Counts, want)
	}
	q := delayQuantiles(metrics.DelayHistogram{}, h)
	if q.Count != 100 || q.P50 != 2 || q.P90 != 5 || q.P99 != 10 || q.Max != 50 {
		t.Errorf("quantiles %+v", q)
	}
	// Only what the window added counts.
	if q := delayQuantiles(h, h); q.Count != 0 {
		t.Errorf("no packets in the window: %+v", q)
	}
}

// FuzzDelayQuantiles: whatever a server's /metrics says, the quantiles of
// what parses are in order.
func FuzzDelayQuantiles(f *testing.F) {
	f.Add([]byte(sampleDelay))
	f.Add([]byte(`conclave_forward_delay_seconds_bucket{le="+Inf"} 18446744073709551615` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := metrics.ParseDelayHistogram(b)
		if err != nil {
			return
		}
		if len(h.Counts) != len(metrics.DelayBuckets)+1 {
			t.Fatalf("%d counts", len(h.Counts))
		}
		q := delayQuantiles(metrics.DelayHistogram{}, h)
		if q.Count > 0 && (q.P50 > q.P99 || q.P99 > q.Max) {
			t.Fatalf("quantiles out of order: %+v", q)
		}
	})
}
