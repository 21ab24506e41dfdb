package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/metrics"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/testutil/testserver"
)

// TestDebugListener: --debug-listen serves the process metrics and Go
// profiles on loopback; a non-loopback address is refused at start.
func TestDebugListener(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) { c.DebugListen = "127.0.0.1:0" }})
	base := "http://" + srv.DebugAddr().String()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return string(body)
	}
	body := get("/metrics")
	for _, name := range []string{"process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_resident_memory_peak_bytes ", "go_goroutines ",
		"conclave_media_gso ", "conclave_media_gso_sends_total 0", "conclave_media_gso_datagrams_total 0",
		`conclave_turn_allocations{transport="tls"} 0`, `conclave_turn_allocations_total{transport="udp"} 0`,
		`conclave_turn_relayed_bytes_total{direction="to_peer"} 0`, `conclave_turn_refusals_total{reason="expired"} 0`,
		`conclave_turn_dropped_packets_total{reason="rate"} 0`} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s:\n%s", name, body)
		}
	}
	// The figures as the load tester reads them (internal/metrics).
	if m, err := metrics.Parse([]byte(body), metrics.ProcessCPU, metrics.ProcessRSS, metrics.GoGoroutines); err != nil || len(m) != 3 {
		t.Errorf("figures as the load tester reads them: %v, %v", m, err)
	}
	if st, err := metrics.ParseSendStats([]byte(body)); err != nil || st.GSOSends != 0 {
		t.Errorf("send counters as the load tester reads them: %+v, %v", st, err)
	}
	// The server delay histogram: nothing forwarded yet.
	if h, err := metrics.ParseDelayHistogram([]byte(body)); err != nil {
		t.Errorf("server delay histogram: %v\n%s", err, body)
	} else if slices.ContainsFunc(h.Counts, func(c uint64) bool { return c != 0 }) {
		t.Errorf("server delay histogram before any media: %v", h.Counts)
	}
	if heap := get("/debug/pprof/heap?debug=1"); !strings.Contains(heap, "heap profile") {
		t.Errorf("heap profile: %.200s", heap)
	}

	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen, cfg.MediaUDP, cfg.MediaTCP = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Hosts = []string{"127.0.0.1"}
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "localhost"} {
		cfg.DebugListen = addr
		if s, err := server.Open(cfg, slog.New(slog.DiscardHandler), server.Options{}); err == nil {
			s.Close()
			t.Errorf("--debug-listen %s accepted", addr)
		}
	}
}

// TestMaxParticipants: --max-participants bounds a meeting.
func TestMaxParticipants(t *testing.T) {
	cfg := config.Defaults()
	cfg.MaxParticipants = 2
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{-1, config.MaxParticipantsLimit + 1} {
		cfg.MaxParticipants = n
		if cfg.Validate() == nil {
			t.Errorf("--max-participants %d accepted", n)
		}
	}
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) { c.MaxParticipants = 2 }}, "board")
	dial(t, srv).join("board", "Alice")
	dial(t, srv).join("board", "Bob")
	carol := dial(t, srv)
	carol.sendRaw(`{"v":1,"type":"join","room":"board","name":"Carol"}`)
	carol.expectError(signal.CodeRoomFull)
}
