package loadtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Report is what a load test measured. Rates and losses cover the
// measurement window only.
type Report struct {
	Start   time.Time    `json:"start"`
	Config  ReportConfig `json:"config"`
	Machine Machine      `json:"machine"`

	// Participants joined; JoinTime is how long joining took (seconds),
	// ReadyTime the wait until subscribers received what they show, and
	// NotReady how many still did not then.
	Participants int     `json:"participants"`
	JoinTime     float64 `json:"join_s"`
	ReadyTime    float64 `json:"ready_s"`
	NotReady     int     `json:"not_ready"`
	// Reconnections counts the signaling connections the participants
	// lost and reopened since they joined (a server that closed a
	// connection too slow to take its messages, among others).
	Reconnections int `json:"reconnections"`
	// Window is the measurement's length in seconds.
	Window float64 `json:"window_s"`

	Forwarded  Forwarded `json:"forwarded"`
	Loss       Loss      `json:"loss"`
	VideoDelay Quantiles `json:"video_delay"`
	AudioDelay Quantiles `json:"audio_delay"`
	// ServerDelay is the delay the server itself added to the RTP
	// packets it forwarded during the window, as its histogram counts it
	// (from the kernel's receive timestamp to the last copy sent; each
	// figure the upper bound of a bucket, 10 s for beyond 5 s); nil when
	// the server's histogram could not be read.
	ServerDelay *Quantiles     `json:"server_delay,omitempty"`
	ServerSends *SendFigures   `json:"server_sends,omitempty"`
	Server      *ServerFigures `json:"server,omitempty"`
	Generator   Generator      `json:"generator"`
	Notes       []string       `json:"notes,omitempty"`
}

// ReportConfig repeats what was asked.
type ReportConfig struct {
	URL             string  `json:"url"`
	Rooms           int     `json:"rooms"`
	VideoPublishers int     `json:"video_publishers"`
	AudioPublishers int     `json:"audio_publishers"`
	Subscribers     int     `json:"subscribers"`
	Layout          string  `json:"layout"`
	Duration        float64 `json:"duration_s"`
	Warmup          float64 `json:"warmup_s"`
	// Relay is the TURN transport all media went through ("any", "udp",
	// "tcp", "tls"), empty when direct.
	Relay string `json:"relay,omitempty"`
}

// Machine describes where the test ran.
type Machine struct {
	CPUs      int        `json:"cpus"`
	Model     string     `json:"cpu_model,omitempty"`
	Go        string     `json:"go"`
	LoadStart [3]float64 `json:"load_average_start"`
	LoadEnd   [3]float64 `json:"load_average_end"`
	// UDPDrops counts the datagrams the kernel dropped for lack of
	// receive buffer space during the window, on the whole machine (UDP
	// RcvbufErrors); -1 when unknown.
	UDPDrops int64 `json:"udp_receive_drops"`
}

// SendFigures are the server's batched sends over the window.
type SendFigures struct {
	GSO          bool    `json:"gso"`           // the kernel takes UDP segmentation offload on the media socket
	GSOSends     uint64  `json:"gso_sends"`     // system calls that sent several datagrams to one subscriber
	GSODatagrams uint64  `json:"gso_datagrams"` // the datagrams they sent
	Share        float64 `json:"gso_share"`     // GSODatagrams per forwarded packet
}

// Forwarded is what the receivers got from the server: RTP packets, header
// and payload (without SRTP's tag, UDP and IP headers, or RTCP).
type Forwarded struct {
	Mbps          float64 `json:"mbit_per_s"`
	PacketsPerSec float64 `json:"packets_per_s"`
	Bytes         uint64  `json:"bytes"`
	Packets       uint64  `json:"packets"`
}

// Loss is what did not arrive. Packets: RTP packets missing from the
// sequence numbers every receiver saw, after retransmissions (a fraction);
// WorstSubscriber: the same for the subscriber that lost most. Frames:
// frames missing from a stream's stamps (within runs of one simulcast
// layer), as a fraction of those expected. Undecryptable: frames the
// end-to-end encryption dropped (no key). Unstamped: decrypted frames
// without a valid stamp.
type Loss struct {
	Packets             float64 `json:"packets"`
	PacketsLost         int64   `json:"packets_lost"`
	WorstSubscriber     float64 `json:"worst_subscriber"`
	WorstSubscriberName string  `json:"worst_subscriber_name,omitempty"`
	Frames              float64 `json:"frames"`
	FramesReceived      uint64  `json:"frames_received"`
	FramesLost          uint64  `json:"frames_lost"`
	Undecryptable       uint64  `json:"undecryptable"`
	Unstamped           uint64  `json:"unstamped"`
}

// ServerFigures are the server process's CPU time and memory.
type ServerFigures struct {
	Source string `json:"source"`
	// InProcess: the server ran inside the load generator's process, so
	// its figures include the generator's (tests).
	InProcess  bool    `json:"in_process,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	Cores      float64 `json:"cores"`
	// CPUPerGbit is CPU seconds per forwarded gigabit; GbpsPerCore the
	// forwarded Gbit/s that one fully busy core would sustain.
	CPUPerGbit  float64 `json:"cpu_s_per_gbit"`
	GbpsPerCore float64 `json:"gbit_per_s_per_core"`
	// RSS at the end of the window, the most seen during it (sampled each
	// second), and the process's peak since it started (VmHWM), in bytes.
	RSS     int64 `json:"rss_bytes"`
	RSSMax  int64 `json:"rss_max_bytes"`
	Peak    int64 `json:"rss_peak_bytes"`
	Threads int   `json:"threads"`
	FDs     int   `json:"fds"`
	// UDPDrops counts the datagrams dropped during the window for lack of
	// receive buffer space on the server's sockets; -1 when unknown.
	UDPDrops int64 `json:"udp_receive_drops"`
}

// Generator is the load generator's own use of the machine.
type Generator struct {
	CPUSeconds float64 `json:"cpu_s"`
	Cores      float64 `json:"cores"`
	RSS        int64   `json:"rss_bytes"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"fds"`
	UDPDrops   int64   `json:"udp_receive_drops"` // on the generator's sockets during the window; -1 unknown
}

func (r *run) reportConfig() ReportConfig {
	c := r.cfg
	return ReportConfig{URL: c.URL, Rooms: c.Rooms, VideoPublishers: c.VideoPublishers, AudioPublishers: c.AudioPublishers,
		Subscribers: c.Subscribers, Layout: c.Layout.String(), Duration: c.Duration.Seconds(), Warmup: c.Warmup.Seconds(), Relay: c.Relay}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// udpReceiveErrors reads the machine's UDP and UDP6 RcvbufErrors
// counters, -1 where it cannot.
func udpReceiveErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var header []string
	total := int64(-1)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := 1; i < len(f) && i < len(header); i++ {
			if header[i] == "RcvbufErrors" {
				total, _ = strconv.ParseInt(f[i], 10, 64)
			}
		}
		break
	}
	if total < 0 {
		return -1
	}
	if b, err := os.ReadFile("/proc/net/snmp6"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6RcvbufErrors" {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				total += v
			}
		}
	}
	return total
}

// loadAverage reads /proc/loadavg (zeros where it cannot).
func loadAverage() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// WriteText prints the report for people.
func (rep *Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	c := rep.Config
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("Conclave load test, %s", rep.Start.Format(time.RFC3339))
	rooms := ""
	if c.Rooms > 1 {
		rooms = fmt.Sprintf(" in each of %d rooms", c.Rooms)
	}
	p("  %d video publishers (simulcast 320x180/640x360/1280x720), %d audio publishers, %d subscribers%s", c.VideoPublishers, c.AudioPublishers, c.Subscribers, rooms)
	path := "direct"
	if c.Relay != "" {
		path = "all media through the server's TURN relay (" + c.Relay + ")"
	}
	p("  layout %s; end-to-end encryption on; %s; server %s", c.Layout, path, c.URL)
	m := rep.Machine
	p("  machine: %d CPUs (%s), %s; load average %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end",
		m.CPUs, orUnknown(m.Model), m.Go, m.LoadStart[0], m.LoadStart[1], m.LoadStart[2], m.LoadEnd[0], m.LoadEnd[1], m.LoadEnd[2])
	p("  joined %d participants in %.1f s; ready after %.1f s more (%d not ready); warm-up %.0f s; measured %.1f s; %d signaling reconnections",
		rep.Participants, rep.JoinTime, rep.ReadyTime, rep.NotReady, c.Warmup, rep.Window, rep.Reconnections)
	p("")
	f := rep.Forwarded
	p("Forwarded        %.1f Mbit/s, %.0f packets/s (RTP header and payload received by all participants)", f.Mbps, f.PacketsPerSec)
	l := rep.Loss
	p("Packet loss      %.3f%% (%d packets); worst subscriber %.3f%% (%s)", 100*l.Packets, l.PacketsLost, 100*l.WorstSubscriber, orUnknown(l.WorstSubscriberName))
	p("Frame loss       %.3f%% (%d of %d frames); undecryptable %d; unstamped %d", 100*l.Frames, l.FramesLost, l.FramesLost+l.FramesReceived, l.Undecryptable, l.Unstamped)
	delay := func(name string, q Quantiles) {
		if q.Count == 0 {
			p("%-16s no frames", name)
			return
		}
		p("%-16s p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.1f ms (%d frames, end to end)", name, q.P50, q.P90, q.P99, q.Max, q.Count)
	}
	delay("Video delay", rep.VideoDelay)
	delay("Audio delay", rep.AudioDelay)
	if q := rep.ServerDelay; q != nil {
		p("Server delay     p50 ≤ %s ms, p90 ≤ %s ms, p99 ≤ %s ms, max ≤ %s ms (%d packets, kernel receive timestamp to last copy sent)",
			fmtMs(q.P50), fmtMs(q.P90), fmtMs(q.P99), fmtMs(q.Max), q.Count)
	}
	if s := rep.ServerSends; s != nil {
		if s.GSO {
			p("Server sends     %d datagrams in %d GSO system calls (%.0f%% of the forwarded packets; the others one per call)", s.GSODatagrams, s.GSOSends, 100*s.Share)
		} else {
			p("Server sends     one datagram per system call (no UDP segmentation offload on the media socket)")
		}
	}
	if s := rep.Server; s != nil {
		note := ""
		if s.InProcess {
			note = " (in-process server: includes the load generator)"
		}
		p("Server CPU       %.2f s = %.2f cores; %.2f CPU-s per forwarded Gbit = %.2f Gbit/s per core%s", s.CPUSeconds, s.Cores, s.CPUPerGbit, s.GbpsPerCore, note)
		p("Server memory    RSS %s at the end, %s at most during the window, peak %s since start; %d threads, %d fds (%s)",
			mib(s.RSS), mib(s.RSSMax), mib(s.Peak), s.Threads, s.FDs, s.Source)
	} else {
		p("Server CPU       not measured (give -local, -server-pid or -server-debug)")
	}
	g := rep.Generator
	p("Load generator   %.2f cores, RSS %s, %d goroutines, %d fds", g.Cores, mib(g.RSS), g.Goroutines, g.FDs)
	drops := func(n int64) string {
		if n < 0 {
			return "unknown"
		}
		return strconv.FormatInt(n, 10)
	}
	server := "unknown"
	if rep.Server != nil {
		server = drops(rep.Server.UDPDrops)
	}
	p("UDP drops        %s on the server's sockets, %s on the load generator's, %s on the whole machine (receive buffers full)",
		server, drops(g.UDPDrops), drops(m.UDPDrops))
	for _, n := range rep.Notes {
		p("Note: %s", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// fmtMs prints a bucket bound in milliseconds without needless digits.
func fmtMs(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
