// Package metrics is the one definition of the figures a Conclave server
// publishes on its debug listener (docs/api.md) and `conclave loadtest`
// reads back: their names, types and help texts, the bounds of the
// server delay histogram, and the Prometheus text format both ends use.
// The server writes with Write*, the load tester reads with Parse*, and
// metrics_test.go checks that what one writes the other reads.
package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metric is one figure: its name, Prometheus type and help text.
type Metric struct {
	Name, Type, Help string
}

// The figures of the debug listener.
var (
	ProcessCPU         = Metric{"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."}
	ProcessRSS         = Metric{"process_resident_memory_bytes", "gauge", "Resident memory size in bytes."}
	ProcessRSSPeak     = Metric{"process_resident_memory_peak_bytes", "gauge", "Highest resident memory size in bytes (VmHWM)."}
	ProcessThreads     = Metric{"process_threads", "gauge", "Number of OS threads."}
	ProcessOpenFDs     = Metric{"process_open_fds", "gauge", "Number of open file descriptors."}
	UDPReceiveDrops    = Metric{"conclave_udp_receive_drops", "gauge", "Datagrams the kernel dropped for lack of receive buffer space on the UDP sockets open now (media), since each opened."}
	ForwardDelay       = Metric{"conclave_forward_delay_seconds", "histogram", "Delay the server adds to the RTP packets it forwards: from the kernel's receive timestamp to the last copy sent."}
	MediaGSO           = Metric{"conclave_media_gso", "gauge", "1 if the media socket sends several datagrams per system call (UDP segmentation offload), 0 if one each."}
	MediaGSOSends      = Metric{"conclave_media_gso_sends_total", "counter", "System calls that sent several datagrams to one subscriber at once (UDP segmentation offload)."}
	MediaGSODatagrams  = Metric{"conclave_media_gso_datagrams_total", "counter", "Datagrams sent by those system calls."}
	GoGoroutines       = Metric{"go_goroutines", "gauge", "Number of goroutines that currently exist."}
	GoMemoryTotal      = Metric{"go_memory_total_bytes", "gauge", "Memory mapped by the Go runtime, in bytes."}
	GoHeapObjectsBytes = Metric{"go_heap_objects_bytes", "gauge", "Memory held by live and not yet swept heap objects, in bytes."}
	GoGCCycles         = Metric{"go_gc_cycles_total", "counter", "Completed garbage collection cycles."}
)

// Write writes one unlabelled sample of m with its HELP and TYPE lines.
func Write(w io.Writer, m Metric, value string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", m.Name, m.Help, m.Name, m.Type, m.Name, value)
}

// DelayBuckets are the upper bounds, in seconds, of the server delay
// histogram (ForwardDelay), the last one infinite.
var DelayBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}

// DelayHistogram is a reading of the server delay histogram: Counts[i]
// packets took at most DelayBuckets[i] (not cumulative; the last entry is
// beyond the last bucket).
type DelayHistogram struct {
	Counts []uint64
	Sum    time.Duration
}

// WriteDelayHistogram writes h as ForwardDelay in the Prometheus format:
// cumulative buckets, sum and count.
func WriteDelayHistogram(w io.Writer, h DelayHistogram) {
	m := ForwardDelay
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.Name, m.Help, m.Name, m.Type)
	var total uint64
	for i, c := range h.Counts {
		total += c
		le := "+Inf"
		if i < len(DelayBuckets) {
			le = strconv.FormatFloat(DelayBuckets[i], 'g', -1, 64)
		}
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", m.Name, le, total)
	}
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", m.Name, strconv.FormatFloat(h.Sum.Seconds(), 'f', 6, 64), m.Name, total)
}

// SendStats are figures of the media socket's batched sends.
type SendStats struct {
	GSO          bool   // the kernel takes UDP segmentation offload on the media socket
	GSOSends     uint64 // system calls that sent several datagrams at once
	GSODatagrams uint64 // the datagrams they sent
}

// WriteSendStats writes s as MediaGSO, MediaGSOSends and MediaGSODatagrams.
func WriteSendStats(w io.Writer, s SendStats) {
	gso := "0"
	if s.GSO {
		gso = "1"
	}
	Write(w, MediaGSO, gso)
	Write(w, MediaGSOSends, strconv.FormatUint(s.GSOSends, 10))
	Write(w, MediaGSODatagrams, strconv.FormatUint(s.GSODatagrams, 10))
}

// MaxSize bounds what a reader takes of a /metrics body.
const MaxSize = 1 << 20

// Parse reads the unlabelled samples of the given metrics from a
// Prometheus text exposition (the body of /metrics, which comes from the
// network), by name. Comments, labelled samples and other names are
// skipped; malformed lines are errors, and so are values that are not
// finite numbers between 0 and 1e18.
func Parse(body []byte, ms ...Metric) (map[string]float64, error) {
	want := make(map[string]bool, len(ms))
	for _, m := range ms {
		want[m.Name] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), MaxSize)
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
	if len(out) == 0 && len(ms) > 0 {
		return nil, errors.New("metrics hold none of the figures needed")
	}
	return out, nil
}

// ParseSendStats reads the batched-send figures (WriteSendStats).
func ParseSendStats(body []byte) (SendStats, error) {
	m, err := Parse(body, MediaGSO, MediaGSOSends, MediaGSODatagrams)
	if err != nil {
		return SendStats{}, err
	}
	g, ok0 := m[MediaGSO.Name]
	s, ok1 := m[MediaGSOSends.Name]
	n, ok2 := m[MediaGSODatagrams.Name]
	if !ok0 || !ok1 || !ok2 {
		return SendStats{}, errors.New("the server reports no batched-send counters")
	}
	return SendStats{GSO: g == 1, GSOSends: uint64(s), GSODatagrams: uint64(n)}, nil
}

// ParseDelayHistogram reads ForwardDelay from a Prometheus text
// exposition: its cumulative buckets must be DelayBuckets, then +Inf, and
// never decrease. A body without the histogram (an older server) is an
// error.
func ParseDelayHistogram(body []byte) (DelayHistogram, error) {
	name := ForwardDelay.Name
	n := len(DelayBuckets) + 1
	cum := make([]uint64, n)
	seen := make([]bool, n)
	prefix := name + `_bucket{le="`
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return DelayHistogram{}, fmt.Errorf("malformed %s line %q", name, line)
		}
		i := len(DelayBuckets)
		if le != "+Inf" {
			bound, err := strconv.ParseFloat(le, 64)
			i = slices.Index(DelayBuckets, bound)
			if err != nil || i < 0 {
				return DelayHistogram{}, fmt.Errorf("%s: unknown bucket le=%q", name, le)
			}
		}
		count, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil || seen[i] {
			return DelayHistogram{}, fmt.Errorf("malformed or repeated %s line %q", name, line)
		}
		cum[i], seen[i] = count, true
	}
	h := DelayHistogram{Counts: make([]uint64, n)}
	var prev uint64
	for i, c := range cum {
		if !seen[i] {
			return DelayHistogram{}, fmt.Errorf("the server reports no %s (or not all its buckets)", name)
		}
		if c < prev {
			return DelayHistogram{}, fmt.Errorf("%s: buckets decrease", name)
		}
		h.Counts[i], prev = c-prev, c
	}
	return h, nil
}
