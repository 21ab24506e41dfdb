package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"conclave/internal/procstat"
	"conclave/internal/sfu"
)

// debugServer is the opt-in debug listener (--debug-listen): process
// metrics in the Prometheus text format and Go's profiles, over plain
// HTTP on a loopback address, for `conclave loadtest` and operators on
// the machine. It has no authentication, so it listens on loopback only
// and answers loopback clients only; docs/api.md describes it.
type debugServer struct {
	ln  net.Listener
	srv *http.Server
}

// startDebug listens on addr, which must be a loopback address.
// media, if not nil, is the SFU whose figures /metrics adds; more write
// other parts' figures (TURN).
func startDebug(addr string, log *slog.Logger, media mediaFigures, more ...func(io.Writer)) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("debug listener on %s: not a loopback address", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { serveMetrics(w, r, media, more...) })
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, allocs...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	d := &debugServer{ln: ln, srv: &http.Server{
		Handler:           loopbackOnly(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug listener stopped", "err", err)
		}
	}()
	return d, nil
}

// Addr is the listener's address.
func (d *debugServer) Addr() net.Addr { return d.ln.Addr() }

func (d *debugServer) Close() error { return d.srv.Close() }

// loopbackOnly refuses clients that are not on this machine (a second
// guard behind the loopback listener), and requests whose Host is not a
// loopback address or "localhost": a web page that rebinds its own DNS
// name to 127.0.0.1 makes the browser send that name as Host, so DNS
// rebinding cannot reach the listener through a victim's browser.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().IsLoopback() {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if !loopbackHost(r.Host) {
			http.Error(w, "forbidden: the Host header must name a loopback address or localhost", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine:
// "localhost" or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// runtimeMetrics are read from the Go runtime for /metrics.
var runtimeMetrics = []struct{ name, help, sample string }{
	{"go_memory_total_bytes", "Memory mapped by the Go runtime, in bytes.", "/memory/classes/total:bytes"},
	{"go_heap_objects_bytes", "Memory held by live and not yet swept heap objects, in bytes.", "/memory/classes/heap/objects:bytes"},
	{"go_gc_cycles_total", "Completed garbage collection cycles.", "/gc/cycles/total:gc-cycles"},
}

// mediaFigures are the SFU's own figures (*sfu.Engine).
type mediaFigures interface {
	ForwardDelay() sfu.DelayHistogram
	SendStats() sfu.SendStats
}

// serveMetrics writes the process's figures in the Prometheus text
// exposition format, with the standard process_* names. Figures that
// cannot be read on this system are left out.
func serveMetrics(w http.ResponseWriter, _ *http.Request, media mediaFigures, more ...func(io.Writer)) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	m := func(name, typ, help, value string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, typ, name, value)
	}
	if s, err := procstat.Read(os.Getpid()); err == nil {
		m("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", strconv.FormatFloat(s.CPU.Seconds(), 'f', 3, 64))
		m("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", strconv.FormatInt(s.RSS, 10))
		m("process_resident_memory_peak_bytes", "gauge", "Highest resident memory size in bytes (VmHWM).", strconv.FormatInt(s.Peak, 10))
		m("process_threads", "gauge", "Number of OS threads.", strconv.Itoa(s.Threads))
		if s.FDs >= 0 {
			m("process_open_fds", "gauge", "Number of open file descriptors.", strconv.Itoa(s.FDs))
		}
		if s.UDPDrops >= 0 {
			m("conclave_udp_receive_drops", "gauge", "Datagrams the kernel dropped for lack of receive buffer space on the UDP sockets open now (media), since each opened.", strconv.FormatInt(s.UDPDrops, 10))
		}
	}
	if media != nil {
		writeDelayHistogram(w, media.ForwardDelay())
		st := media.SendStats()
		gso := "0"
		if st.GSO {
			gso = "1"
		}
		m("conclave_media_gso", "gauge", "1 if the media socket sends several datagrams per system call (UDP segmentation offload), 0 if one each.", gso)
		m("conclave_media_gso_sends_total", "counter", "System calls that sent several datagrams to one subscriber at once (UDP segmentation offload).", strconv.FormatUint(st.GSOSends, 10))
		m("conclave_media_gso_datagrams_total", "counter", "Datagrams sent by those system calls.", strconv.FormatUint(st.GSODatagrams, 10))
	}
	for _, f := range more {
		f(w)
	}
	m("go_goroutines", "gauge", "Number of goroutines that currently exist.", strconv.Itoa(runtime.NumGoroutine()))
	samples := make([]metrics.Sample, len(runtimeMetrics))
	for i, rm := range runtimeMetrics {
		samples[i].Name = rm.sample
	}
	metrics.Read(samples)
	for i, rm := range runtimeMetrics {
		if samples[i].Value.Kind() == metrics.KindUint64 {
			typ := "gauge"
			if rm.name == "go_gc_cycles_total" {
				typ = "counter"
			}
			m(rm.name, typ, rm.help, strconv.FormatUint(samples[i].Value.Uint64(), 10))
		}
	}
}

// writeDelayHistogram writes the server delay histogram (sfu.DelayBuckets)
// in the Prometheus format: cumulative buckets, sum and count.
func writeDelayHistogram(w io.Writer, h sfu.DelayHistogram) {
	const name = "conclave_forward_delay_seconds"
	fmt.Fprintf(w, "# HELP %s Delay the server adds to the RTP packets it forwards: from the kernel's receive timestamp to the last copy sent.\n# TYPE %s histogram\n", name, name)
	var total uint64
	for i, c := range h.Counts {
		total += c
		le := "+Inf"
		if i < len(sfu.DelayBuckets) {
			le = strconv.FormatFloat(sfu.DelayBuckets[i], 'g', -1, 64)
		}
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, le, total)
	}
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", name, strconv.FormatFloat(h.Sum.Seconds(), 'f', 6, 64), name, total)
}
