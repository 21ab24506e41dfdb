// Package sidebyside measures media servers from the outside, the same way
// whichever server it is: each is started (or started by its own load
// tester), loaded by its own load tester, and measured by what the kernel
// counts, not by what the server or the tester report about themselves.
//
//   - CPU and memory: /proc/<pid>/stat and status of the server process;
//   - bytes the server sends: an nftables counter on its media port(s)
//     (output hook, udp sport);
//   - datagrams the server's receivers took: the namespace's UDP
//     InDatagrams (/proc/net/snmp) less the datagrams counted into the
//     media port (input hook, udp dport), so a UDP segmentation offload
//     send, which the output hook sees as one packet, counts as the
//     datagrams it carries;
//   - loss: read from the load tester's own report with a pattern given
//     per server (the only figure taken from the tester).
//
// The runs happen inside a network namespace of their own (cmd/sidebyside
// enters it) so that the namespace's counters hold nothing but the run's
// traffic. docs/benchmarks.md, "Side by side", says how it is used.
package sidebyside

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"conclave/internal/procstat"
)

// System is one media server and its load tester.
type System struct {
	// Name labels the system in reports and file names.
	Name string
	// Server is a shell command that starts the server; empty when the
	// load tester starts it itself.
	Server string
	// Load is the shell command of the load tester. Placeholders:
	// {pubs}, {subs}, {hold} (how long the media must flow, a Go
	// duration such as "50s"), {dir} (the run's directory).
	Load string
	// Match is a regular expression for the server process's command
	// line, looked for among the processes the commands start.
	Match string
	// Ports are the media ports, "7882" or "7882-7883"; empty: the UDP
	// port the server process listens on (it must have exactly one).
	Ports string
	// Ready is a regular expression for the load tester's output line
	// after which every participant is connected.
	Ready string
	// Loss is a regular expression on the load tester's output whose
	// first group is the packet loss in percent (the last match counts).
	Loss string
	// Wait is a TCP address the server must accept connections on before
	// the load tester starts (its signaling port); empty: no wait.
	Wait string
}

// Shape is a meeting's size: video publishers and subscribers.
type Shape struct{ Pubs, Subs int }

func (s Shape) String() string { return fmt.Sprintf("%dx%d", s.Pubs, s.Subs) }

// ParseShape reads "10x100".
func ParseShape(s string) (Shape, error) {
	a, b, ok := strings.Cut(s, "x")
	p, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || p < 1 || n < 0 || p > 1000 || n > 10000 {
		return Shape{}, fmt.Errorf("shape %q: want PUBSxSUBS, such as 10x100", s)
	}
	return Shape{p, n}, nil
}

// Timing is how a run is timed.
type Timing struct {
	// Settle is the wait after the ready line before measuring.
	Settle time.Duration
	// Window is the measurement.
	Window time.Duration
	// ReadyTimeout bounds the wait for the ready line.
	ReadyTimeout time.Duration
}

// Hold is how long the load tester must keep the media flowing after it is
// ready: the settling, the window and a margin.
func (t Timing) Hold() time.Duration { return t.Settle + t.Window + 10*time.Second }

// Result is one system's figures over one window.
type Result struct {
	System string    `json:"system"`
	Shape  string    `json:"shape"`
	Run    int       `json:"run"`
	Order  int       `json:"order"` // 1: measured first in its pair
	Start  time.Time `json:"start"`
	Window float64   `json:"window_s"`

	ServerPID   int     `json:"server_pid"`
	Ports       string  `json:"ports"`
	SentBytes   uint64  `json:"sent_bytes"`   // IP bytes out of the media ports, each datagram's headers counted
	SentSkbs    uint64  `json:"sent_packets"` // packets the output hook saw (a GSO train is one)
	Datagrams   uint64  `json:"datagrams"`    // datagrams the receivers took from the server
	ServerCPU   float64 `json:"server_cpu_s"`
	MaxRSS      int64   `json:"max_rss_bytes"`
	EndRSS      int64   `json:"end_rss_bytes"`
	GenCPU      float64 `json:"generator_cpu_s"`
	RcvbufDrops uint64  `json:"rcvbuf_drops"` // datagrams dropped for receive buffer, whole namespace
	LossPercent float64 `json:"loss_percent"` // from the load tester's report; -1 unknown
	LoadStart   string  `json:"loadavg_start"`
	LoadEnd     string  `json:"loadavg_end"`
	Err         string  `json:"error,omitempty"`
}

// Mbps is the forwarded rate in Mbit/s, IP headers included.
func (r Result) Mbps() float64 { return float64(r.SentBytes) * 8 / r.Window / 1e6 }

// Cores is the server's CPU use in cores.
func (r Result) Cores() float64 { return r.ServerCPU / r.Window }

// GbpsPerCore is forwarded Gbit/s per core of server CPU.
func (r Result) GbpsPerCore() float64 {
	if r.ServerCPU == 0 {
		return 0
	}
	return float64(r.SentBytes) * 8 / r.ServerCPU / 1e9
}

// MicrosPerPacket is the server's CPU per forwarded datagram, in µs.
func (r Result) MicrosPerPacket() float64 {
	if r.Datagrams == 0 {
		return 0
	}
	return r.ServerCPU / float64(r.Datagrams) * 1e6
}

// Runner runs systems one at a time.
type Runner struct {
	Timing Timing
	// Dir receives each run's logs and results.
	Dir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// Measure runs one system at one shape and measures its window. The
// namespace must be the caller's own (nftables table "sidebyside" is
// replaced).
func (r *Runner) Measure(ctx context.Context, sys System, shape Shape, run, order int) (res Result) {
	res = Result{System: sys.Name, Shape: shape.String(), Run: run, Order: order, LossPercent: -1}
	dir := filepath.Join(r.Dir, fmt.Sprintf("%s-%s-run%d", shape, sys.Name, run))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Err = err.Error()
		return res
	}
	if err := r.measure(ctx, sys, shape, dir, &res); err != nil {
		res.Err = err.Error()
		r.logf("%s %s run %d: %v", sys.Name, shape, run, err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	_ = os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644)
	return res
}

func expand(cmd string, shape Shape, hold time.Duration, dir string) string {
	return strings.NewReplacer("{pubs}", strconv.Itoa(shape.Pubs), "{subs}", strconv.Itoa(shape.Subs),
		"{hold}", hold.String(), "{dir}", dir).Replace(cmd)
}

func (r *Runner) measure(ctx context.Context, sys System, shape Shape, dir string, res *Result) error {
	match, err := regexp.Compile(sys.Match)
	if err != nil || sys.Match == "" {
		return fmt.Errorf("server pattern %q: %v", sys.Match, err)
	}
	ready, err := regexp.Compile(sys.Ready)
	if err != nil || sys.Ready == "" {
		return fmt.Errorf("ready pattern %q: %v", sys.Ready, err)
	}
	var loss *regexp.Regexp
	if sys.Loss != "" {
		if loss, err = regexp.Compile(sys.Loss); err != nil {
			return fmt.Errorf("loss pattern: %w", err)
		}
	}
	hold := r.Timing.Hold()
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			stop(procs[i])
		}
	}()
	if sys.Server != "" {
		c, err := startShell(expand(sys.Server, shape, hold, dir), filepath.Join(dir, "server.log"), nil)
		if err != nil {
			return fmt.Errorf("start server: %w", err)
		}
		procs = append(procs, c)
	}
	if sys.Wait != "" {
		if err := waitTCP(ctx, sys.Wait, time.Minute); err != nil {
			return err
		}
	}
	lines := make(chan string, 1024)
	loadLog := filepath.Join(dir, "load.log")
	load, err := startShell(expand(sys.Load, shape, hold, dir), loadLog, lines)
	if err != nil {
		return fmt.Errorf("start load tester: %w", err)
	}
	procs = append(procs, load)
	r.logf("%s %s: started (%s)", sys.Name, shape, dir)
	loadDone := load.done

	// Wait for the ready line, finding the server on the way.
	deadline := time.NewTimer(r.Timing.ReadyTimeout)
	defer deadline.Stop()
	for waiting := true; waiting; {
		select {
		case l := <-lines:
			if ready.MatchString(l) {
				waiting = false
			}
		case <-loadDone:
			return fmt.Errorf("load tester ended before it was ready (%v); see %s", load.err, loadLog)
		case <-deadline.C:
			return fmt.Errorf("no line matching %q from the load tester within %v; see %s", sys.Ready, r.Timing.ReadyTimeout, loadLog)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	roots := []int{load.cmd.Process.Pid}
	if len(procs) == 2 {
		roots = append(roots, procs[0].cmd.Process.Pid)
	}
	pid, err := findProcess(roots, match)
	if err != nil {
		return err
	}
	res.ServerPID = pid
	ports := sys.Ports
	if ports == "" {
		p, err := listeningUDPPort(pid)
		if err != nil {
			return err
		}
		ports = strconv.Itoa(p)
	}
	res.Ports = ports
	if err := installCounters(ports); err != nil {
		return err
	}
	defer removeCounters()
	r.logf("%s %s: ready; server pid %d, media port %s; settling %v", sys.Name, shape, pid, ports, r.Timing.Settle)
	go drain(lines)
	select {
	case <-time.After(r.Timing.Settle):
	case <-loadDone:
		return fmt.Errorf("load tester ended while settling (%v); see %s", load.err, loadLog)
	case <-ctx.Done():
		return ctx.Err()
	}

	s0, err := r.sample(pid, load.cmd.Process.Pid)
	if err != nil {
		return err
	}
	res.Start = s0.at
	res.LoadStart = s0.loadavg
	maxRSS := s0.proc.RSS
	tick := time.NewTicker(time.Second)
	end := time.NewTimer(r.Timing.Window)
	for measuring := true; measuring; {
		select {
		case <-tick.C:
			if p, err := procstat.Read(pid); err == nil {
				maxRSS = max(maxRSS, p.RSS)
			}
		case <-end.C:
			measuring = false
		case <-loadDone:
			tick.Stop()
			return fmt.Errorf("load tester ended during the window (%v); see %s", load.err, loadLog)
		case <-ctx.Done():
			tick.Stop()
			return ctx.Err()
		}
	}
	tick.Stop()
	s1, err := r.sample(pid, load.cmd.Process.Pid)
	if err != nil {
		return err
	}
	maxRSS = max(maxRSS, s1.proc.RSS)
	res.Window = s1.at.Sub(s0.at).Seconds()
	res.LoadEnd = s1.loadavg
	res.ServerCPU = (s1.proc.CPU - s0.proc.CPU).Seconds()
	res.GenCPU = (s1.genCPU - s0.genCPU).Seconds()
	res.MaxRSS, res.EndRSS = maxRSS, s1.proc.RSS
	res.SentSkbs = s1.out.packets - s0.out.packets
	in := s1.in.packets - s0.in.packets
	rcvd := s1.udp.in - s0.udp.in
	if rcvd > in {
		res.Datagrams = rcvd - in
	}
	// Each datagram's IP and UDP headers: a GSO train is counted by the
	// output hook as one packet with one set of headers.
	res.SentBytes = s1.out.bytes - s0.out.bytes
	if res.Datagrams > res.SentSkbs {
		res.SentBytes += (res.Datagrams - res.SentSkbs) * 28
	}
	res.RcvbufDrops = s1.udp.rcvbuf - s0.udp.rcvbuf
	r.logf("%s %s: %.1f Mbit/s, %.0f datagrams/s, server %.2f cores, %.2f Gbit/s per core, %.1f µs per datagram, RSS %d MiB",
		sys.Name, shape, res.Mbps(), float64(res.Datagrams)/res.Window, res.Cores(), res.GbpsPerCore(), res.MicrosPerPacket(), res.MaxRSS>>20)

	// Let the load tester finish and print its report.
	select {
	case <-loadDone:
	case <-time.After(hold + 2*time.Minute):
		r.logf("%s %s: load tester still running; stopping it", sys.Name, shape)
	case <-ctx.Done():
	}
	if loss != nil {
		if b, err := os.ReadFile(loadLog); err == nil {
			res.LossPercent = lastPercent(loss, b)
		}
	}
	return nil
}

// waitTCP waits until addr accepts a TCP connection.
func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server does not accept connections on %s after %v: %w", addr, timeout, err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lastPercent is the first group of re's last match in b, -1 if none.
func lastPercent(re *regexp.Regexp, b []byte) float64 {
	m := re.FindAllSubmatch(b, -1)
	if len(m) == 0 || len(m[len(m)-1]) < 2 {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	if err != nil {
		return -1
	}
	return v
}

func drain(lines <-chan string) {
	for range lines {
	}
}

type snapshot struct {
	at      time.Time
	proc    procstat.Sample
	genCPU  time.Duration
	out, in counter
	udp     udpCounters
	loadavg string
}

func (r *Runner) sample(server, load int) (snapshot, error) {
	var s snapshot
	var err error
	s.at = time.Now()
	if s.proc, err = procstat.Read(server); err != nil {
		return s, fmt.Errorf("server process: %w", err)
	}
	// The generator: the load tester's process tree, less the server.
	for _, p := range descendants([]int{load}) {
		if p == server {
			continue
		}
		if ps, err := procstat.Read(p); err == nil {
			s.genCPU += ps.CPU
		}
	}
	if s.out, s.in, err = readCounters(); err != nil {
		return s, err
	}
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return s, err
	}
	if s.udp, err = parseSNMP(b); err != nil {
		return s, err
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			s.loadavg = strings.Join(f[:3], " ")
		}
	}
	return s, nil
}

type udpCounters struct{ in, out, rcvbuf uint64 }

// parseSNMP reads the Udp lines of /proc/net/snmp.
func parseSNMP(b []byte) (udpCounters, error) {
	var names, values []string
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(line[5:])
		} else {
			values = strings.Fields(line[5:])
			break
		}
	}
	if len(names) == 0 || len(names) != len(values) {
		return udpCounters{}, errors.New("/proc/net/snmp: no Udp counters")
	}
	var c udpCounters
	found := 0
	for i, n := range names {
		v, err := strconv.ParseUint(values[i], 10, 64)
		if err != nil {
			return udpCounters{}, fmt.Errorf("/proc/net/snmp: Udp %s: %w", n, err)
		}
		switch n {
		case "InDatagrams":
			c.in = v
			found++
		case "OutDatagrams":
			c.out = v
			found++
		case "RcvbufErrors":
			c.rcvbuf = v
			found++
		}
	}
	if found != 3 {
		return udpCounters{}, errors.New("/proc/net/snmp: Udp lacks InDatagrams, OutDatagrams or RcvbufErrors")
	}
	return c, nil
}

// proc is a command the runner started.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the shell has ended
	err  error         // its exit status, once done
}

// startShell runs cmd with sh -c in a process group of its own, its output
// into logPath and, when lines is not nil, line by line into lines
// (dropped when the channel is full).
func startShell(cmd, logPath string, lines chan<- string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := exec.Command("sh", "-c", cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "# %s\n", cmd)
	p := &proc{cmd: c, done: make(chan struct{})}
	if lines == nil {
		c.Stdout, c.Stderr = f, f
		if err := c.Start(); err != nil {
			f.Close()
			return nil, err
		}
		go func() {
			p.err = c.Wait()
			f.Close()
			close(p.done)
		}()
		return p, nil
	}
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = pw, pw
	if err := c.Start(); err != nil {
		f.Close()
		return nil, err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f.Write(sc.Bytes())
			f.Write([]byte{'\n'})
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(f, pr)
		f.Close()
	}()
	go func() {
		p.err = c.Wait()
		pw.Close()
		<-copied
		close(p.done)
	}()
	return p, nil
}

// stop ends a command's process group: SIGINT, then SIGKILL after 10 s.
func stop(p *proc) {
	pg := -p.cmd.Process.Pid
	if syscall.Kill(pg, syscall.SIGINT) != nil {
		return
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	// Whatever of the group is left (a server its load tester started).
	for i := 0; i < 50 && syscall.Kill(pg, 0) == nil; i++ {
		if i == 0 {
			_ = syscall.Kill(pg, syscall.SIGINT)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pg, syscall.SIGKILL)
}

// descendants lists roots and every process below them.
func descendants(roots []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pp, ok := parentPID(b); ok {
			children[pp] = append(children[pp], pid)
		}
	}
	var out []int
	queue := append([]int(nil), roots...)
	seen := map[int]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// parentPID reads field 4 of /proc/<pid>/stat.
func parentPID(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(string(f[1]))
	return p, err == nil
}

// findProcess finds the one process below roots whose command line
// matches re (the shells the runner starts do not count).
func findProcess(roots []int, re *regexp.Regexp) (int, error) {
	var found []int
	for _, p := range descendants(roots) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if args[0] == "sh" && len(args) > 1 && args[1] == "-c" {
			continue
		}
		if re.MatchString(strings.Join(args, " ")) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no process matching %q among those the commands started", re)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%d processes match %q (%v); make the pattern narrower", len(found), re, found)
}

// listeningUDPPort is the port of the one bound, unconnected UDP socket of
// process pid.
func listeningUDPPort(pid int) (int, error) {
	inodes := map[uint64]bool{}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, fd := range fds {
		l, err := os.Readlink(dir + fd.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(l[len("socket:["):], "]"), 10, 64); err == nil {
				inodes[ino] = true
			}
		}
	}
	ports := map[int]bool{}
	for _, t := range []string{"/net/udp", "/net/udp6"} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + t)
		if err != nil {
			continue
		}
		for _, p := range udpListeners(b, inodes) {
			ports[p] = true
		}
	}
	if len(ports) != 1 {
		return 0, fmt.Errorf("server process %d has %d listening UDP ports (%v): give the media port", pid, len(ports), ports)
	}
	for p := range ports {
		return p, nil
	}
	return 0, nil
}

// udpListeners lists the local ports of the unconnected sockets of a
// /proc/net/udp table whose inodes are in inodes.
func udpListeners(b []byte, inodes map[uint64]bool) []int {
	var out []int
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil || !inodes[ino] {
			continue
		}
		_, lp, ok1 := strings.Cut(f[1], ":")
		_, rp, ok2 := strings.Cut(f[2], ":")
		if !ok1 || !ok2 || rp != "0000" {
			continue
		}
		if p, err := strconv.ParseUint(lp, 16, 16); err == nil && p != 0 {
			out = append(out, int(p))
		}
	}
	return out
}
