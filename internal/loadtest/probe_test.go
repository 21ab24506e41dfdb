package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
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
`

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics([]byte(sampleMetrics), "process_cpu_seconds_total", "process_resident_memory_bytes", "process_threads", "http_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if m["process_cpu_seconds_total"] != 12.5 || m["process_resident_memory_bytes"] != 1<<20*100 || len(m) != 2 {
		t.Errorf("ParseMetrics = %v", m)
	}
	for _, bad := range []string{"process_cpu_seconds_total\n", "process_cpu_seconds_total x\n", "process_cpu_seconds_total NaN\n",
		"process_cpu_seconds_total -1\n", "a b c d\n", "other 1\n"} {
		if _, err := ParseMetrics([]byte(bad), "process_cpu_seconds_total"); err == nil {
			t.Errorf("ParseMetrics(%q) accepted", bad)
		}
	}
}

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

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte(sampleMetrics))
	f.Add([]byte("process_cpu_seconds_total 1e309\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetrics(b, "process_cpu_seconds_total", "process_resident_memory_bytes")
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
