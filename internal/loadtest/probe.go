package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"conclave/internal/metrics"
	"conclave/internal/procstat"
)

// A Probe reads the server's CPU time and memory.
type Probe interface {
	Sample(ctx context.Context) (procstat.Sample, error)
	// String says where the figures come from, for the report.
	String() string
}

// ProcProbe reads the figures of a process on this machine from /proc.
type ProcProbe int

// Sample implements Probe.
func (p ProcProbe) Sample(context.Context) (procstat.Sample, error) { return procstat.Read(int(p)) }

func (p ProcProbe) String() string { return fmt.Sprintf("/proc/%d", int(p)) }

// SumProbe adds the figures of several processes: the nodes of a
// cluster that serve one meeting together.
type SumProbe []Probe

// Sample implements Probe: CPU time, memory, threads, descriptors and
// drops added up (Peak is the sum of the peaks).
func (s SumProbe) Sample(ctx context.Context) (procstat.Sample, error) {
	var out procstat.Sample
	for _, p := range s {
		x, err := p.Sample(ctx)
		if err != nil {
			return procstat.Sample{}, fmt.Errorf("%s: %w", p, err)
		}
		out.CPU += x.CPU
		out.RSS += x.RSS
		out.Peak += x.Peak
		out.Threads += x.Threads
		out.FDs += x.FDs
		out.UDPDrops += x.UDPDrops
	}
	return out, nil
}

func (s SumProbe) String() string {
	parts := make([]string, len(s))
	for i, p := range s {
		parts[i] = p.String()
	}
	return strings.Join(parts, " + ")
}

// DebugServer is a Conclave server's debug listener (--debug-listen,
// docs/api.md): its metrics are a Probe, and it serves Go profiles.
type DebugServer struct {
	base string // http://host:port
	hc   *http.Client
}

// NewDebugServer checks the listener's base URL, e.g.
// http://127.0.0.1:6060.
func NewDebugServer(base string) (*DebugServer, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(base), "/"))
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("debug listener %q: give its base URL, like http://127.0.0.1:6060", base)
	}
	return &DebugServer{base: u.Scheme + "://" + u.Host, hc: &http.Client{}}, nil
}

func (d *DebugServer) String() string { return d.base + "/metrics" }

// Sample implements Probe.
func (d *DebugServer) Sample(ctx context.Context) (procstat.Sample, error) {
	body, err := d.metrics(ctx)
	if err != nil {
		return procstat.Sample{}, err
	}
	m, err := metrics.Parse(body, metrics.ProcessCPU, metrics.ProcessRSS, metrics.ProcessRSSPeak,
		metrics.ProcessThreads, metrics.ProcessOpenFDs, metrics.UDPReceiveDrops)
	if err != nil {
		return procstat.Sample{}, fmt.Errorf("%s: %w", d, err)
	}
	cpu, ok := m[metrics.ProcessCPU.Name]
	rss, ok2 := m[metrics.ProcessRSS.Name]
	if !ok || !ok2 {
		return procstat.Sample{}, fmt.Errorf("%s has no %s or %s (a server on another system than Linux?)", d, metrics.ProcessCPU.Name, metrics.ProcessRSS.Name)
	}
	s := procstat.Sample{CPU: time.Duration(cpu * float64(time.Second)), RSS: int64(rss), Peak: int64(m[metrics.ProcessRSSPeak.Name]),
		Threads: int(m[metrics.ProcessThreads.Name]), FDs: -1, UDPDrops: -1}
	if v, ok := m[metrics.ProcessOpenFDs.Name]; ok {
		s.FDs = int(v)
	}
	if v, ok := m[metrics.UDPReceiveDrops.Name]; ok {
		s.UDPDrops = int64(v)
	}
	return s, nil
}

// metrics fetches /metrics.
func (d *DebugServer) metrics(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return d.get(ctx, "/metrics", metrics.MaxSize)
}

// CPUProfile fetches a CPU profile of the server over the next d.
func (d *DebugServer) CPUProfile(ctx context.Context, dur time.Duration) ([]byte, error) {
	secs := max(1, int(dur.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	return d.get(ctx, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), 256<<20)
}

// HeapProfile fetches the server's heap profile.
func (d *DebugServer) HeapProfile(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return d.get(ctx, "/debug/pprof/heap", 256<<20)
}

func (d *DebugServer) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("debug listener: GET %s: %s", path, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("debug listener: GET %s: %w", path, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("debug listener: GET %s: more than %d bytes", path, limit)
	}
	return body, nil
}

// SendStats reads the server's batched-send counters from /metrics.
func (d *DebugServer) SendStats(ctx context.Context) (metrics.SendStats, error) {
	body, err := d.metrics(ctx)
	if err != nil {
		return metrics.SendStats{}, err
	}
	s, err := metrics.ParseSendStats(body)
	if err != nil {
		return metrics.SendStats{}, fmt.Errorf("%s: %w", d, err)
	}
	return s, nil
}

// ForwardDelay reads the server's delay histogram from /metrics.
func (d *DebugServer) ForwardDelay(ctx context.Context) (metrics.DelayHistogram, error) {
	body, err := d.metrics(ctx)
	if err != nil {
		return metrics.DelayHistogram{}, err
	}
	h, err := metrics.ParseDelayHistogram(body)
	if err != nil {
		return metrics.DelayHistogram{}, fmt.Errorf("%s: %w", d, err)
	}
	return h, nil
}
