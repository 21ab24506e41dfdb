package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"conclave/internal/metrics"
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

// startDebug listens on addr, which must be a loopback address, and
// serves the node's metrics (the same as the HTTPS listener's /metrics)
// without authentication.
func startDebug(addr string, log *slog.Logger, handler http.Handler, extra ...debugRoute) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("debug listener on %s: not a loopback address", addr)
	}
	mux := http.NewServeMux()
	if handler != nil {
		mux.Handle("GET /metrics", handler)
	}
	for _, r := range extra {
		mux.HandleFunc(r.pattern, r.handler)
	}
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

// mediaFigures are the SFU's own figures (*sfu.Engine).
type mediaFigures interface {
	ForwardDelay() metrics.DelayHistogram
	SendStats() metrics.SendStats
}

// debugRoute is one more endpoint of the debug listener.
type debugRoute struct {
	pattern string
	handler http.HandlerFunc
}

// relayCapture serves GET /debug/relay-capture?seconds=N&packets=M: what
// the other nodes relay to this one, as a pcap file (cascade.Mesh.Capture;
// docs/cluster.md), for at most N seconds (default 5, at most 60) and M
// packets (default 10000).
func relayCapture(mesh interface {
	Capture(ctx context.Context, w io.Writer, max int) (int, error)
}) debugRoute {
	return debugRoute{pattern: "GET /debug/relay-capture", handler: func(w http.ResponseWriter, r *http.Request) {
		secs, max := 5, 10000
		if v := r.URL.Query().Get("seconds"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 60 {
				http.Error(w, "seconds must be between 1 and 60", http.StatusBadRequest)
				return
			}
			secs = n
		}
		if v := r.URL.Query().Get("packets"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1_000_000 {
				http.Error(w, "packets must be between 1 and 1000000", http.StatusBadRequest)
				return
			}
			max = n
		}
		w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
		w.Header().Set("Content-Disposition", `attachment; filename="relay.pcap"`)
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(secs)*time.Second)
		defer cancel()
		mesh.Capture(ctx, w, max)
	}}
}
