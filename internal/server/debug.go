package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"time"

	"conclave/internal/metrics"
	"conclave/internal/procstat"
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
// media, if not nil, is the SFU whose figures /metrics adds.
func startDebug(addr string, log *slog.Logger, media mediaFigures) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("debug listener on %s: not a loopback address", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { serveMetrics(w, r, media) })
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
var runtimeMetrics = []struct {
	m      metrics.Metric
	sample string
}{
	{metrics.GoMemoryTotal, "/memory/classes/total:bytes"},
	{metrics.GoHeapObjectsBytes, "/memory/classes/heap/objects:bytes"},
	{metrics.GoGCCycles, "/gc/cycles/total:gc-cycles"},
}

// mediaFigures are the SFU's own figures (*sfu.Engine).
type mediaFigures interface {
	ForwardDelay() metrics.DelayHistogram
	SendStats() metrics.SendStats
}

// serveMetrics writes the process's figures in the Prometheus text
// exposition format (internal/metrics), with the standard process_* names.
// Figures that cannot be read on this system are left out.
func serveMetrics(w http.ResponseWriter, _ *http.Request, media mediaFigures) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s, err := procstat.Read(os.Getpid()); err == nil {
		metrics.Write(w, metrics.ProcessCPU, strconv.FormatFloat(s.CPU.Seconds(), 'f', 3, 64))
		metrics.Write(w, metrics.ProcessRSS, strconv.FormatInt(s.RSS, 10))
		metrics.Write(w, metrics.ProcessRSSPeak, strconv.FormatInt(s.Peak, 10))
		metrics.Write(w, metrics.ProcessThreads, strconv.Itoa(s.Threads))
		if s.FDs >= 0 {
			metrics.Write(w, metrics.ProcessOpenFDs, strconv.Itoa(s.FDs))
		}
		if s.UDPDrops >= 0 {
			metrics.Write(w, metrics.UDPReceiveDrops, strconv.FormatInt(s.UDPDrops, 10))
		}
	}
	if media != nil {
		metrics.WriteDelayHistogram(w, media.ForwardDelay())
		metrics.WriteSendStats(w, media.SendStats())
	}
	metrics.Write(w, metrics.GoGoroutines, strconv.Itoa(runtime.NumGoroutine()))
	samples := make([]rtmetrics.Sample, len(runtimeMetrics))
	for i, rm := range runtimeMetrics {
		samples[i].Name = rm.sample
	}
	rtmetrics.Read(samples)
	for i, rm := range runtimeMetrics {
		if samples[i].Value.Kind() == rtmetrics.KindUint64 {
			metrics.Write(w, rm.m, strconv.FormatUint(samples[i].Value.Uint64(), 10))
		}
	}
}
