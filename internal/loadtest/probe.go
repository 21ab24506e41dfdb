package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"conclave/internal/procstat"
	"conclave/internal/sfu"
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

// maxMetricsSize bounds what is read of /metrics.
const maxMetricsSize = 1 << 20

// Sample implements Probe.
func (d *DebugServer) Sample(ctx context.Context) (procstat.Sample, error) {
	body, err := d.metrics(ctx)
	if err != nil {
		return procstat.Sample{}, err
	}
	m, err := ParseMetrics(body, "process_cpu_seconds_total", "process_resident_memory_bytes",
		"process_resident_memory_peak_bytes", "process_threads", "process_open_fds", "conclave_udp_receive_drops")
	if err != nil {
		return procstat.Sample{}, fmt.Errorf("%s: %w", d, err)
	}
	cpu, ok := m["process_cpu_seconds_total"]
	rss, ok2 := m["process_resident_memory_bytes"]
	if !ok || !ok2 {
		return procstat.Sample{}, fmt.Errorf("%s has no process_cpu_seconds_total or process_resident_memory_bytes (a server on another system than Linux?)", d)
	}
	s := procstat.Sample{CPU: time.Duration(cpu * float64(time.Second)), RSS: int64(rss), Peak: int64(m["process_resident_memory_peak_bytes"]),
		Threads: int(m["process_threads"]), FDs: -1, UDPDrops: -1}
	if v, ok := m["process_open_fds"]; ok {
		s.FDs = int(v)
	}
	if v, ok := m["conclave_udp_receive_drops"]; ok {
		s.UDPDrops = int64(v)
	}
	return s, nil
}

// metrics fetches /metrics.
func (d *DebugServer) metrics(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return d.get(ctx, "/metrics", maxMetricsSize)
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

// ParseMetrics reads the unlabelled samples of the given names from a
// Prometheus text exposition (the body of /metrics, which comes from the
// network). Comments, labelled samples and other names are skipped;
// malformed lines are errors.
func ParseMetrics(body []byte, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), maxMetricsSize)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		f := strings.Fields(text)
		if len(f) < 2 || len(f) > 3 {
			if strings.ContainsRune(f[0], '{') {
				continue // labels with spaces in their values
			}
			return nil, fmt.Errorf("metrics line %d is malformed", line)
		}
		if !want[f[0]] {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e18 {
			return nil, fmt.Errorf("metrics line %d: %s has no usable value", line, f[0])
		}
		out[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if len(out) == 0 && len(names) > 0 {
		return nil, errors.New("metrics hold none of the figures needed")
	}
	return out, nil
}

// SendStats reads the server's batched-send counters from /metrics.
func (d *DebugServer) SendStats(ctx context.Context) (sfu.SendStats, error) {
	body, err := d.metrics(ctx)
	if err != nil {
		return sfu.SendStats{}, err
	}
	const on, sends, dgrams = "conclave_media_gso", "conclave_media_gso_sends_total", "conclave_media_gso_datagrams_total"
	m, err := ParseMetrics(body, on, sends, dgrams)
	if err != nil {
		return sfu.SendStats{}, fmt.Errorf("%s: %w", d, err)
	}
	g, ok0 := m[on]
	s, ok1 := m[sends]
	n, ok2 := m[dgrams]
	if !ok0 || !ok1 || !ok2 {
		return sfu.SendStats{}, fmt.Errorf("%s: the server reports no batched-send counters", d)
	}
	return sfu.SendStats{GSO: g == 1, GSOSends: uint64(s), GSODatagrams: uint64(n)}, nil
}

// delayMetric is the server delay histogram's name in /metrics.
const delayMetric = "conclave_forward_delay_seconds"

// ForwardDelay reads the server's delay histogram from /metrics.
func (d *DebugServer) ForwardDelay(ctx context.Context) (sfu.DelayHistogram, error) {
	body, err := d.metrics(ctx)
	if err != nil {
		return sfu.DelayHistogram{}, err
	}
	h, err := ParseDelayHistogram(body)
	if err != nil {
		return sfu.DelayHistogram{}, fmt.Errorf("%s: %w", d, err)
	}
	return h, nil
}

// ParseDelayHistogram reads conclave_forward_delay_seconds from a
// Prometheus text exposition: its cumulative buckets must be the
// server's (sfu.DelayBuckets, then +Inf) and never decrease. A server
// without the histogram (an older one) is an error.
func ParseDelayHistogram(body []byte) (sfu.DelayHistogram, error) {
	n := len(sfu.DelayBuckets) + 1
	cum := make([]uint64, n)
	seen := make([]bool, n)
	prefix := delayMetric + `_bucket{le="`
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return sfu.DelayHistogram{}, fmt.Errorf("malformed %s line %q", delayMetric, line)
		}
		i := len(sfu.DelayBuckets)
		if le != "+Inf" {
			bound, err := strconv.ParseFloat(le, 64)
			i = slices.Index(sfu.DelayBuckets, bound)
			if err != nil || i < 0 {
				return sfu.DelayHistogram{}, fmt.Errorf("%s: unknown bucket le=%q", delayMetric, le)
			}
		}
		count, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil || seen[i] {
			return sfu.DelayHistogram{}, fmt.Errorf("malformed or repeated %s line %q", delayMetric, line)
		}
		cum[i], seen[i] = count, true
	}
	h := sfu.DelayHistogram{Counts: make([]uint64, n)}
	var prev uint64
	for i, c := range cum {
		if !seen[i] {
			return sfu.DelayHistogram{}, fmt.Errorf("the server reports no %s (or not all its buckets)", delayMetric)
		}
		if c < prev {
			return sfu.DelayHistogram{}, fmt.Errorf("%s: buckets decrease", delayMetric)
		}
		h.Counts[i], prev = c-prev, c
	}
	return h, nil
}
