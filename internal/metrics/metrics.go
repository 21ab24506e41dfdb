// Package metrics is the one definition of the figures a Conclave server
// publishes (/metrics on the HTTPS listener and the debug listener,
// docs/admin.md and docs/api.md) and `conclave loadtest` reads back: their
// names, types, help texts and labels, the bounds of the server delay
// histogram, and the reading of the Prometheus text format. The server's
// collector (internal/server/prom.go) describes its figures with these
// definitions, the load tester reads them with Parse*, and the server's
// tests read a running server's /metrics with Parse* too.
package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric is one figure: its name, Prometheus type, help text and labels.
type Metric struct {
	Name, Type, Help string
	Labels           []string
}

// The process's figures, under the standard names of Prometheus' process
// and Go collectors.
var (
	ProcessCPU     = Metric{Name: "process_cpu_seconds_total", Type: "counter", Help: "Total user and system CPU time spent in seconds."}
	ProcessRSS     = Metric{Name: "process_resident_memory_bytes", Type: "gauge", Help: "Resident memory size in bytes."}
	ProcessOpenFDs = Metric{Name: "process_open_fds", Type: "gauge", Help: "Number of open file descriptors."}
	GoGoroutines   = Metric{Name: "go_goroutines", Type: "gauge", Help: "Number of goroutines that currently exist."}
)

// Conclave's own figures.
var (
	ProcessRSSPeak    = Metric{Name: "process_resident_memory_peak_bytes", Type: "gauge", Help: "Highest resident memory size in bytes (VmHWM)."}
	ProcessThreads    = Metric{Name: "process_threads", Type: "gauge", Help: "Number of OS threads."}
	UDPReceiveDrops   = Metric{Name: "conclave_udp_receive_drops", Type: "gauge", Help: "Datagrams the kernel dropped for lack of receive buffer space on the UDP sockets open now (media), since each opened."}
	ForwardDelay      = Metric{Name: "conclave_forward_delay_seconds", Type: "histogram", Help: "Delay the server adds to the RTP packets it forwards: from the kernel's receive timestamp to the last copy sent."}
	ForwardedPackets  = Metric{Name: "conclave_forwarded_packets_total", Type: "counter", Help: "RTP and RTCP datagrams the SFU sent on the media socket."}
	ForwardedBytes    = Metric{Name: "conclave_forwarded_bytes_total", Type: "counter", Help: "Bytes (UDP payload) of those datagrams."}
	MediaGSO          = Metric{Name: "conclave_media_gso", Type: "gauge", Help: "1 if the media socket sends several datagrams per system call (UDP segmentation offload), 0 if one each."}
	MediaGSOSends     = Metric{Name: "conclave_media_gso_sends_total", Type: "counter", Help: "System calls that sent several datagrams to one subscriber at once (UDP segmentation offload)."}
	MediaGSODatagrams = Metric{Name: "conclave_media_gso_datagrams_total", Type: "counter", Help: "Datagrams sent by those system calls."}
	Meetings          = Metric{Name: "conclave_meetings", Type: "gauge", Help: "Meetings in progress."}
	Participants      = Metric{Name: "conclave_participants", Type: "gauge", Help: "Participants in meetings, waiting ones included."}
	Alarms            = Metric{Name: "conclave_alarms", Type: "gauge", Help: "Active alarms by kind and severity.", Labels: []string{"kind", "severity"}}
	AuditFilesBytes   = Metric{Name: "conclave_audit_files_bytes", Type: "gauge", Help: "Size of the audit files."}
	ClockSynchronized = Metric{Name: "conclave_clock_synchronized", Type: "gauge", Help: "1 if the kernel reports the system clock synchronised, else 0."}
	CertificateExpiry = Metric{Name: "conclave_certificate_expiry_timestamp_seconds", Type: "gauge", Help: "When a certificate expires (Unix time).", Labels: []string{"role"}}
	SyslogUp          = Metric{Name: "conclave_syslog_up", Type: "gauge", Help: "1 while a syslog server is reachable.", Labels: []string{"server"}}
	Logins            = Metric{Name: "conclave_logins_total", Type: "counter", Help: "Sign-ins to accounts by outcome (success, failure).", Labels: []string{"outcome"}}
	AuditRecords      = Metric{Name: "conclave_audit_records_total", Type: "counter", Help: "Audit records written by this process, by action.", Labels: []string{"action"}}
	BuildInfo         = Metric{Name: "conclave_build_info", Type: "gauge", Help: "The running build (always 1)."}

	TURNAllocations      = Metric{Name: "conclave_turn_allocations", Type: "gauge", Help: "TURN allocations open now, by the transport clients reach the TURN server over (udp, tcp, tls).", Labels: []string{"transport"}}
	TURNAllocationsTotal = Metric{Name: "conclave_turn_allocations_total", Type: "counter", Help: "TURN allocations opened, by transport.", Labels: []string{"transport"}}
	TURNRelayedBytes     = Metric{Name: "conclave_turn_relayed_bytes_total", Type: "counter", Help: "Bytes (UDP payload) relayed by TURN: to_peer from clients to the SFU, to_client back.", Labels: []string{"direction"}}
	TURNRefusals         = Metric{Name: "conclave_turn_refusals_total", Type: "counter", Help: "TURN requests refused, by reason (docs/admin.md).", Labels: []string{"reason"}}
	TURNDropped          = Metric{Name: "conclave_turn_dropped_packets_total", Type: "counter", Help: "Relayed datagrams dropped: to or from a port that is not the SFU's (peer), beyond an allocation's bit rate (rate).", Labels: []string{"reason"}}
)

// Conclave lists Conclave's own figures, those the server's collector
// publishes.
var Conclave = []Metric{ProcessRSSPeak, ProcessThreads, UDPReceiveDrops, ForwardDelay, ForwardedPackets, ForwardedBytes,
	MediaGSO, MediaGSOSends, MediaGSODatagrams, Meetings, Participants, Alarms, AuditFilesBytes, ClockSynchronized,
	CertificateExpiry, SyslogUp, Logins, AuditRecords, BuildInfo,
	TURNAllocations, TURNAllocationsTotal, TURNRelayedBytes, TURNRefusals, TURNDropped}

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

// SendStats are figures of the media socket's batched sends.
type SendStats struct {
	GSO          bool   // the kernel takes UDP segmentation offload on the media socket
	GSOSends     uint64 // system calls that sent several datagrams at once
	GSODatagrams uint64 // the datagrams they sent
	Packets      uint64 // datagrams forwarded on the media socket (ForwardedPackets)
	Bytes        uint64 // their bytes, UDP payload (ForwardedBytes)
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

// ParseSendStats reads the batched-send figures. Packets and Bytes are
// read when present (a server older than them has none).
func ParseSendStats(body []byte) (SendStats, error) {
	m, err := Parse(body, MediaGSO, MediaGSOSends, MediaGSODatagrams, ForwardedPackets, ForwardedBytes)
	if err != nil {
		return SendStats{}, err
	}
	g, ok0 := m[MediaGSO.Name]
	s, ok1 := m[MediaGSOSends.Name]
	n, ok2 := m[MediaGSODatagrams.Name]
	if !ok0 || !ok1 || !ok2 {
		return SendStats{}, errors.New("the server reports no batched-send counters")
	}
	return SendStats{GSO: g == 1, GSOSends: uint64(s), GSODatagrams: uint64(n),
		Packets: uint64(m[ForwardedPackets.Name]), Bytes: uint64(m[ForwardedBytes.Name])}, nil
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

// Desc describes m for a Prometheus collector.
func (m Metric) Desc() *prometheus.Desc {
	return prometheus.NewDesc(m.Name, m.Help, m.Labels, nil)
}
