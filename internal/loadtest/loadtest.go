// Package loadtest is the engine of `conclave loadtest`: it joins video
// publishers (a three-layer simulcast camera from pre-encoded clips),
// audio-only publishers and subscribers to meetings as native participants
// with end-to-end encryption on (internal/client/secure), each subscriber
// showing a Layout of the video tracks, and measures what the server
// forwards: bit rate, packet and frame loss, end-to-end delay from a stamp
// inside every encrypted frame, and the server's CPU time and memory.
//
// Every frame is stamped (stamp.go) before it is encrypted, so a receiver
// measures the delay from the publisher's hand-off to its own decryption:
// packetization, the server, the network, reassembly and decryption. On
// one machine both ends read the same clock. The load generator runs on
// the same machine as the server in the usual setup and competes with it
// for CPU: the report gives the server's CPU time per forwarded gigabit,
// which does not depend on the competition, and the generator's own CPU.
package loadtest

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/loadtest/clips"
	"conclave/internal/metrics"
	"conclave/internal/procstat"
)

// RelayAny relays media over whichever TURN transport connects first
// (Config.Relay).
const RelayAny = "any"

// Config describes a load test.
type Config struct {
	// URL is the meeting link of an open room, https://host/r/<alias>.
	// With Rooms > 1 the rooms are <alias>-1 ... <alias>-N.
	URL string
	// SubscriberURLs, with one room, are links of the same room on other
	// nodes of a cluster: subscribers join URL and these in turn (a
	// meeting that spans nodes, docs/cluster.md); publishers join URL.
	SubscriberURLs []string
	// Rooms is the number of meetings, each with the participants below
	// (default 1).
	Rooms int
	// VideoPublishers publish a simulcast camera (clips: 320x180,
	// 640x360, 1280x720); AudioPublishers a microphone only;
	// Subscribers publish nothing. Per room.
	VideoPublishers, AudioPublishers, Subscribers int
	// Layout is what each subscriber shows (default: speaker, six
	// tracks). Publishers show no video: like LiveKit's load test, only
	// subscribers watch.
	Layout Layout
	// Duration is the measurement window (default 30 s). Warmup runs
	// after every subscriber receives what it shows, for the layers to
	// settle (default 10 s); ReadyTimeout bounds the wait for that
	// (default 60 s).
	Duration, Warmup, ReadyTimeout time.Duration
	// Relay sends every participant's media through the server's TURN
	// relay: "" connects directly (ICE picks the path), "any" relays over
	// whichever transport connects first, "udp", "tcp" or "tls" over that
	// one only (client.RelayUDP, ...).
	Relay string
	// JoinRate bounds joins per second (default 20). Each join also waits
	// until the newcomer has verified the others' announcements, so a
	// large meeting joins as fast as the machine verifies signatures.
	JoinRate float64

	// RootCAs trust the server's certificate (nil: the system roots);
	// InsecureSkipVerify trusts any.
	RootCAs            *x509.CertPool
	InsecureSkipVerify bool

	// Server reads the server's CPU time and memory; nil leaves them out
	// of the report. ServerInProcess says that they are this process's
	// own, load generator included (tests).
	Server          Probe
	ServerInProcess bool
	// ServerDelay, if set, reads the server's histogram of the delay it
	// adds to what it forwards (from its debug listener, or in process),
	// before and after the window.
	ServerDelay func(context.Context) (metrics.DelayHistogram, error)
	// ServerSends, if set, reads the server's counts of batched sends
	// (datagrams sent several at a time with UDP segmentation offload),
	// before and after the window.
	ServerSends func(context.Context) (metrics.SendStats, error)
	// Debug, with CPUProfile or HeapProfile set, fetches the server's
	// CPU profile over the measurement window and its heap profile at its
	// end.
	Debug                   *DebugServer
	CPUProfile, HeapProfile io.Writer
	// GeneratorProfile receives a CPU profile of this process (the load
	// generator) over the measurement window.
	GeneratorProfile io.Writer

	// Logger receives the participants' logs (nil: discarded); Progress
	// is told what happens (nil: nothing).
	Logger   *slog.Logger
	Progress func(string)
	// OnReport, when set, gets the report as soon as it is measured,
	// before the participants leave (which takes a while in a large
	// meeting: every leave makes the others rotate their keys).
	OnReport func(*Report)
}

func (c *Config) check() error {
	if c.Rooms == 0 {
		c.Rooms = 1
	}
	if c.Layout == nil {
		c.Layout, _ = ParseLayout("speaker")
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 10 * time.Second
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.JoinRate == 0 {
		c.JoinRate = 20
	}
	switch {
	case c.Rooms < 1 || c.Rooms > 1000:
		return errors.New("rooms must be between 1 and 1000")
	case c.VideoPublishers < 0 || c.AudioPublishers < 0 || c.Subscribers < 0:
		return errors.New("participant counts cannot be negative")
	case c.VideoPublishers+c.AudioPublishers == 0:
		return errors.New("nobody publishes: give video or audio publishers")
	case c.Subscribers == 0:
		return errors.New("nobody subscribes: give subscribers")
	case c.Duration < time.Second || c.Warmup < 0 || c.ReadyTimeout < time.Second:
		return errors.New("the measurement lasts at least 1 s, and waits cannot be negative")
	case c.JoinRate < 0.1:
		return errors.New("the join rate must be at least 0.1 per second")
	case c.Relay != "" && c.Relay != RelayAny && c.Relay != client.RelayUDP && c.Relay != client.RelayTCP && c.Relay != client.RelayTLS:
		return fmt.Errorf("relay %q is not one of any, udp, tcp, tls", c.Relay)
	case (c.CPUProfile != nil || c.HeapProfile != nil) && c.Debug == nil:
		return errors.New("profiles need the server's debug listener")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	_, err := RoomURLs(c.URL, c.Rooms)
	if err != nil {
		return err
	}
	if len(c.SubscriberURLs) > 0 && c.Rooms > 1 {
		return errors.New("subscribers on other nodes need one room")
	}
	for _, u := range c.SubscriberURLs {
		if _, err := client.ParseMeetingURL(u); err != nil {
			return err
		}
	}
	return nil
}

// RoomURLs returns the meeting links of rooms rooms: url itself for one,
// <alias>-1 ... <alias>-N for more.
func RoomURLs(url string, rooms int) ([]string, error) {
	m, err := client.ParseMeetingURL(url)
	if err != nil {
		return nil, err
	}
	if rooms <= 1 {
		return []string{strings.TrimRight(strings.TrimSpace(url), "/")}, nil
	}
	out := make([]string, rooms)
	for i := range out {
		out[i] = fmt.Sprintf("%s/r/%s-%d", m.Base, m.Room, i+1)
	}
	return out, nil
}

// Participant roles.
const (
	roleVideo      = "video publisher"
	roleAudio      = "audio publisher"
	roleSubscriber = "subscriber"
)

// member is one participant of the load test.
type member struct {
	role  string
	room  *room
	index int // within its role and room
	name  string

	sess   *client.Session
	sec    *secure.Session
	counts receiveCounts
	want   int // remote tracks it should receive (subscribers)
	// reconnects counts the signaling connections it lost and got back
	// (client.Reconnecting events).
	reconnects atomic.Int64
}

// room is one meeting of the load test.
type room struct {
	url       string
	publisher map[string]int // video publishers' participant ids -> index; complete before subscribers join
	members   []*member
}

// run is the state of one load test.
type run struct {
	cfg    Config
	rooms  []*room
	all    []*member
	video  histogram // delays of video frames
	audio  histogram
	ended  chan *member // sessions that ended before the test did
	media  gate         // holds the publishers' media until everyone joined
	notes  []string
	notesM sync.Mutex
}

// gate holds the publishers' sources until it opens. Joining a meeting of
// hundreds costs the machine much (every newcomer verifies everyone's
// announcement and exchanges keys with everyone); media flows once that
// is done, so that joins neither slow the media nor time out under it.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// gatedSource is a FrameSource that waits for the gate.
type gatedSource struct {
	client.FrameSource
	open <-chan struct{}
}

// NextFrame implements client.FrameSource.
func (s gatedSource) NextFrame(buf []byte) ([]byte, time.Duration, error) {
	<-s.open
	return s.FrameSource.NextFrame(buf)
}

// Run runs the load test and reports what it measured. ctx ends it early:
// the report then covers what was measured.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	urls, _ := RoomURLs(cfg.URL, cfg.Rooms)
	r := &run{cfg: cfg, ended: make(chan *member, 1024), media: gate{ch: make(chan struct{})}}
	for _, u := range urls {
		r.rooms = append(r.rooms, &room{url: u, publisher: map[string]int{}})
	}
	defer r.leaveAll()
	rep := &Report{Start: time.Now().UTC(), Config: r.reportConfig(), Machine: machine()}

	joinStart := time.Now()
	if err := r.joinAll(ctx); err != nil {
		return nil, err
	}
	rep.JoinTime = seconds(time.Since(joinStart))
	cfg.Progress("media starts")
	r.media.open()
	readyStart := time.Now()
	rep.NotReady = r.waitReady(ctx)
	rep.ReadyTime = seconds(time.Since(readyStart))
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted before the measurement: %w", ctx.Err())
	}
	cfg.Progress(fmt.Sprintf("warming up for %v", cfg.Warmup))
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("interrupted before the measurement: %w", ctx.Err())
	case <-time.After(cfg.Warmup):
	}
	if err := r.measure(ctx, rep); err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, r.notes...)
	if cfg.OnReport != nil {
		cfg.OnReport(rep)
	}
	return rep, nil
}

func (r *run) note(format string, args ...any) {
	r.notesM.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.notesM.Unlock()
}

// joinAll joins every participant: the publishers of every room first,
// then the subscribers, round robin over the rooms.
func (r *run) joinAll(ctx context.Context) error {
	c := r.cfg
	type plan struct {
		room  *room
		role  string
		index int
	}
	var plans []plan
	for _, rm := range r.rooms {
		for i := range c.VideoPublishers {
			plans = append(plans, plan{rm, roleVideo, i})
		}
		for i := range c.AudioPublishers {
			plans = append(plans, plan{rm, roleAudio, i})
		}
	}
	for i := range c.Subscribers {
		for _, rm := range r.rooms {
			plans = append(plans, plan{rm, roleSubscriber, i})
		}
	}
	interval := time.Duration(float64(time.Second) / c.JoinRate)
	next := time.Now()
	lastReport := time.Now()
	for n, p := range plans {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("interrupted while joining: %w", ctx.Err())
			case <-time.After(d):
			}
		}
		next = time.Now().Add(interval)
		if err := r.join(ctx, p.room, p.role, p.index); err != nil {
			return err
		}
		if time.Since(lastReport) > 5*time.Second || n+1 == len(plans) {
			lastReport = time.Now()
			c.Progress(fmt.Sprintf("joined %d of %d participants", n+1, len(plans)))
		}
	}
	return nil
}

// joinTimeout bounds one join, and verifyTimeout the wait for the
// newcomer to verify the others' announcements.
const (
	joinTimeout   = 30 * time.Second
	verifyTimeout = 20 * time.Second
)

// join joins one participant.
func (r *run) join(ctx context.Context, rm *room, role string, index int) error {
	c := r.cfg
	m := &member{role: role, room: rm, index: index}
	prefix := map[string]string{roleVideo: "pub", roleAudio: "audio", roleSubscriber: "sub"}[role]
	m.name = fmt.Sprintf("%s-%03d", prefix, index+1)
	if len(r.rooms) > 1 {
		m.name = fmt.Sprintf("%s-r%d", m.name, roomIndex(r.rooms, rm)+1)
	}
	device, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("device key: %w", err)
	}
	var sec *secure.Session
	url := rm.url
	if role == roleSubscriber && len(c.SubscriberURLs) > 0 {
		if k := index % (len(c.SubscriberURLs) + 1); k > 0 {
			url = c.SubscriberURLs[k-1]
		}
	}
	opts := client.Options{
		URL:                url,
		Name:               m.name,
		RootCAs:            c.RootCAs,
		InsecureSkipVerify: c.InsecureSkipVerify,
		Logger:             c.Logger.With("participant", m.name),
	}
	if c.Relay != "" {
		opts.ForceRelay = true
		if c.Relay != RelayAny {
			opts.RelayOver = c.Relay
		}
	}
	switch role {
	case roleVideo:
		for _, src := range clips.Sources() {
			opts.CameraLayers = append(opts.CameraLayers, gatedSource{src, r.media.ch})
		}
	case roleAudio:
		opts.Microphone = gatedSource{client.NewTestAudio(), r.media.ch}
	}
	opts.Hooks.OnEvent = func(e client.Event) {
		if e.Kind == client.Reconnecting {
			m.reconnects.Add(1)
		}
	}
	opts.NewSink = func(t client.TrackInfo) (client.FrameSink, error) {
		h := &r.video
		if t.Kind == "audio" {
			h = &r.audio
		}
		return &trackSink{counts: &m.counts, delays: h}, nil
	}
	if role == roleSubscriber {
		n := c.VideoPublishers
		sizes := c.Layout.sizes(index, n)
		m.want = min(c.Layout.Tracks(), n) + c.AudioPublishers
		opts.Layout = func(tracks []client.TrackInfo) map[string]client.Size {
			out := map[string]client.Size{}
			for _, t := range tracks {
				if t.Kind != "video" {
					continue
				}
				if i, ok := rm.publisher[t.Participant]; ok {
					out[t.Mid] = sizes[i]
				} else {
					out[t.Mid] = client.Size{} // not ours: not watched
				}
			}
			return out
		}
	} else {
		opts.Layout = hideVideo
	}
	before := len(rm.members)
	var s *client.Session
	for attempt := 1; ; attempt++ {
		s, err = r.dial(ctx, opts, m, device)
		if err == nil {
			break
		}
		var se *client.ServerError
		switch {
		case errors.As(err, &se) && se.Code == "room-full":
			return fmt.Errorf("join %s: %w; start the server with a larger --max-participants", m.name, err)
		case errors.As(err, &se), ctx.Err() != nil, attempt == joinAttempts:
			return fmt.Errorf("join %s: %w", m.name, err)
		}
		r.note("%s: join attempt %d failed (%v); trying again", m.name, attempt, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %w", m.name, ctx.Err())
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	m.sess, sec = s, m.sec
	rm.members = append(rm.members, m)
	r.all = append(r.all, m)
	if role == roleVideo {
		rm.publisher[s.Self().ID] = index
	}
	go func() {
		<-s.Done()
		select {
		case r.ended <- m:
		default:
		}
	}()
	// Let the newcomer verify the announcements of those already there
	// (each an ECDSA verification and an ECDH) before the next one comes.
	deadline := time.Now().Add(verifyTimeout)
	for len(sec.Participants()) < before+1 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while joining: %w", ctx.Err())
		case <-s.Done():
			return fmt.Errorf("join %s: the session ended: %v", m.name, s.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got := len(sec.Participants()) - 1; got < before {
		r.note("%s verified %d of the %d announcements before it within %v", m.name, got, before, verifyTimeout)
	}
	return nil
}

// joinAttempts bounds the tries to join one participant: a join that
// times out on a busy machine is tried again.
const joinAttempts = 3

// dial joins with a fresh end-to-end encryption session (a session that
// failed to join is closed for good).
func (r *run) dial(ctx context.Context, opts client.Options, m *member, device *ecdsa.PrivateKey) (*client.Session, error) {
	sec, err := secure.New(secure.Config{Device: device, Name: m.name, Logger: r.cfg.Logger})
	if err != nil {
		return nil, err
	}
	sec.Wire(&opts)
	opts.SendTransform = newStamper(opts.SendTransform)
	dctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	s, err := client.Dial(dctx, opts)
	if err != nil {
		return nil, err
	}
	m.sec = sec
	return s, nil
}

// describe says what a participant received, for a note.
func (m *member) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s received stamped frames from %d of %d tracks;", m.name, m.counts.tracks.Load(), m.want)
	for _, st := range m.sess.Stats() {
		if !st.Active {
			continue
		}
		fmt.Fprintf(&b, " %s/%s: %d packets, %d frames, %d undecryptable;", st.Name, st.Source, st.Packets, st.Frames, st.TransformErrors)
	}
	if e := m.sec.Participants(); len(e) > 0 {
		fmt.Fprintf(&b, " %d participants verified", len(e)-1)
	}
	return b.String()
}

// hideVideo is the layout of publishers: no video.
func hideVideo(tracks []client.TrackInfo) map[string]client.Size {
	out := map[string]client.Size{}
	for _, t := range tracks {
		if t.Kind == "video" {
			out[t.Mid] = client.Size{}
		}
	}
	return out
}

func roomIndex(rooms []*room, rm *room) int {
	for i, x := range rooms {
		if x == rm {
			return i
		}
	}
	return -1
}

// waitReady waits until every subscriber receives stamped frames from
// every track it shows, or ReadyTimeout; it returns how many are not.
func (r *run) waitReady(ctx context.Context) int {
	c := r.cfg
	c.Progress("waiting for every subscriber to receive what it shows")
	deadline := time.Now().Add(c.ReadyTimeout)
	for {
		missing := 0
		for _, m := range r.all {
			if m.role == roleSubscriber && m.counts.tracks.Load() < int64(m.want) {
				missing++
			}
		}
		if missing == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			r.note("%d subscribers did not receive every track they show within %v", missing, c.ReadyTimeout)
			shown := 0
			for _, m := range r.all {
				if m.role == roleSubscriber && m.counts.tracks.Load() < int64(m.want) && shown < 5 {
					shown++
					r.note("%s", m.describe())
				}
			}
			return missing
		}
		select {
		case <-ctx.Done():
			return missing
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// snapshot is the counters at one moment.
type snapshot struct {
	at           time.Time
	server       procstat.Sample
	serverErr    error
	self         procstat.Sample
	selfErr      error
	video, audio []uint64
	rtp          []rtpCounts // by member
	frames, lost []uint64
	unstamped    uint64
	load         [3]float64
	udpErrors    int64 // machine-wide UDP receive buffer errors, -1 unknown
	delay        metrics.DelayHistogram
	delayErr     error
	sends        metrics.SendStats
	sendsErr     error
}

func (r *run) snap(ctx context.Context) snapshot {
	s := snapshot{at: time.Now(), video: r.video.snapshot(), audio: r.audio.snapshot()}
	for _, m := range r.all {
		s.rtp = append(s.rtp, sumStats(m.sess.Stats()))
		s.frames = append(s.frames, m.counts.frames.Load())
		s.lost = append(s.lost, m.counts.lost.Load())
		s.unstamped += m.counts.unstamped.Load()
	}
	if r.cfg.Server != nil {
		s.server, s.serverErr = r.cfg.Server.Sample(ctx)
	}
	if r.cfg.ServerDelay != nil {
		s.delay, s.delayErr = r.cfg.ServerDelay(ctx)
	}
	if r.cfg.ServerSends != nil {
		s.sends, s.sendsErr = r.cfg.ServerSends(ctx)
	}
	s.self, s.selfErr = procstat.Read(os.Getpid())
	s.load = loadAverage()
	s.udpErrors = udpReceiveErrors()
	return s
}

// measure takes the measurement window.
func (r *run) measure(ctx context.Context, rep *Report) error {
	c := r.cfg
	c.Progress(fmt.Sprintf("measuring for %v", c.Duration))
	var wg sync.WaitGroup
	var cpuProfile []byte
	var cpuErr error
	if c.CPUProfile != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cpuProfile, cpuErr = c.Debug.CPUProfile(context.WithoutCancel(ctx), c.Duration)
		}()
	}
	if c.GeneratorProfile != nil {
		if err := pprof.StartCPUProfile(c.GeneratorProfile); err != nil {
			r.note("load generator profile: %v", err)
		} else {
			defer pprof.StopCPUProfile()
		}
	}
	start := r.snap(ctx)
	maxRSS := start.server.RSS
	tick := time.NewTicker(time.Second)
	end := time.NewTimer(c.Duration)
	ended := 0
	interrupted := false
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-end.C:
			break loop
		case m := <-r.ended:
			ended++
			r.note("%s's session ended during the test: %v", m.name, m.sess.Err())
		case <-tick.C:
			if c.Server != nil {
				if s, err := c.Server.Sample(ctx); err == nil {
					maxRSS = max(maxRSS, s.RSS)
				}
			}
		}
	}
	tick.Stop()
	end.Stop()
	stop := r.snap(context.WithoutCancel(ctx))
	maxRSS = max(maxRSS, stop.server.RSS)
	if interrupted {
		r.note("interrupted after %.1f s of the %v measurement", stop.at.Sub(start.at).Seconds(), c.Duration)
	}
	if c.HeapProfile != nil {
		heap, err := c.Debug.HeapProfile(context.WithoutCancel(ctx))
		if err == nil {
			_, err = c.HeapProfile.Write(heap)
		}
		if err != nil {
			r.note("heap profile: %v", err)
		}
	}
	wg.Wait()
	if c.CPUProfile != nil {
		if cpuErr == nil {
			_, cpuErr = c.CPUProfile.Write(cpuProfile)
		}
		if cpuErr != nil {
			r.note("CPU profile: %v", cpuErr)
		}
	}
	r.fill(rep, start, stop, maxRSS)
	return nil
}

// fill computes the report's figures from the two snapshots.
func (r *run) fill(rep *Report, a, b snapshot, serverMaxRSS int64) {
	c := r.cfg
	window := b.at.Sub(a.at)
	rep.Window = seconds(window)
	rep.Machine.LoadStart, rep.Machine.LoadEnd = a.load, b.load
	rep.Machine.UDPDrops = -1
	if a.udpErrors >= 0 && b.udpErrors >= 0 {
		rep.Machine.UDPDrops = b.udpErrors - a.udpErrors
	}
	rep.Participants = len(r.all)
	if c.ServerDelay != nil {
		if err := cmp.Or(a.delayErr, b.delayErr); err != nil {
			r.note("server delay: %v", err)
		} else if q := delayQuantiles(a.delay, b.delay); q.Count > 0 {
			rep.ServerDelay = &q
		}
	}

	var total rtpCounts
	var lost, worst float64
	worstName := ""
	var frames, framesLost uint64
	for i, m := range r.all {
		d := b.rtp[i].sub(a.rtp[i])
		total.packets += d.packets
		total.bytes += d.bytes
		total.expected += d.expected
		total.undecryptable += d.undecryptable
		frames += b.frames[i] - a.frames[i]
		framesLost += b.lost[i] - a.lost[i]
		if m.role == roleSubscriber && d.expected > 0 {
			l := max(0, float64(int64(d.expected)-int64(d.packets))) / float64(d.expected)
			if l > worst || worstName == "" {
				worst, worstName = l, m.name
			}
		}
	}
	if total.expected > 0 {
		lost = max(0, float64(int64(total.expected)-int64(total.packets))) / float64(total.expected)
	}
	secs := window.Seconds()
	rep.Forwarded = Forwarded{
		Mbps:          float64(total.bytes) * 8 / secs / 1e6,
		PacketsPerSec: float64(total.packets) / secs,
		Bytes:         total.bytes,
		Packets:       total.packets,
	}
	if c.ServerSends != nil {
		if err := cmp.Or(a.sendsErr, b.sendsErr); err != nil {
			r.note("server sends: %v", err)
		} else if b.sends.GSOSends < a.sends.GSOSends || b.sends.GSODatagrams < a.sends.GSODatagrams {
			r.note("server sends: the counters went back during the window (a restarted server?)")
		} else {
			f := &SendFigures{GSO: b.sends.GSO, GSOSends: b.sends.GSOSends - a.sends.GSOSends,
				GSODatagrams: b.sends.GSODatagrams - a.sends.GSODatagrams}
			if total.packets > 0 {
				f.Share = float64(f.GSODatagrams) / float64(total.packets)
			}
			rep.ServerSends = f
		}
	}
	rep.Loss = Loss{
		Packets:             lost,
		PacketsLost:         int64(total.expected) - int64(total.packets),
		WorstSubscriber:     worst,
		WorstSubscriberName: worstName,
		FramesReceived:      frames,
		FramesLost:          framesLost,
		Undecryptable:       total.undecryptable,
		Unstamped:           b.unstamped - a.unstamped,
	}
	if frames+framesLost > 0 {
		rep.Loss.Frames = float64(framesLost) / float64(frames+framesLost)
	}
	for _, m := range r.all {
		rep.Reconnections += int(m.reconnects.Load())
	}
	rep.VideoDelay = quantiles(a.video, b.video)
	rep.AudioDelay = quantiles(a.audio, b.audio)

	if c.Server != nil {
		sv := &ServerFigures{Source: c.Server.String(), InProcess: c.ServerInProcess}
		switch {
		case a.serverErr != nil:
			r.note("server figures: %v", a.serverErr)
		case b.serverErr != nil:
			r.note("server figures: %v", b.serverErr)
		default:
			cpu := (b.server.CPU - a.server.CPU).Seconds()
			sv.CPUSeconds = cpu
			sv.Cores = cpu / secs
			if gbit := float64(total.bytes) * 8 / 1e9; gbit > 0 {
				sv.CPUPerGbit = cpu / gbit
			}
			if cpu > 0 {
				sv.GbpsPerCore = float64(total.bytes) * 8 / 1e9 / cpu
			}
			sv.RSS, sv.RSSMax, sv.Peak = b.server.RSS, serverMaxRSS, b.server.Peak
			sv.Threads, sv.FDs = b.server.Threads, b.server.FDs
			sv.UDPDrops = dropsDelta(a.server, b.server)
			rep.Server = sv
		}
	}
	if a.selfErr == nil && b.selfErr == nil {
		cpu := (b.self.CPU - a.self.CPU).Seconds()
		rep.Generator = Generator{CPUSeconds: cpu, Cores: cpu / secs, RSS: b.self.RSS, Goroutines: runtime.NumGoroutine(), FDs: b.self.FDs,
			UDPDrops: dropsDelta(a.self, b.self)}
	}
	used := rep.Generator.Cores
	if rep.Server != nil && !rep.Server.InProcess {
		used += rep.Server.Cores
	}
	if cpus := float64(rep.Machine.CPUs); cpus > 0 && used >= saturated*cpus {
		r.note("the server and the load generator used %.2f of the %d CPUs: the machine was saturated, so loss and delay measure it more than the server; run the load generator on another machine (-url with -server-debug) to measure the server alone",
			used, rep.Machine.CPUs)
	}
}

// saturated is the share of the machine's CPUs above which the report
// warns that the test measured the machine rather than the server.
const saturated = 0.85

// dropsDelta is the UDP receive drops between two samples, -1 if unknown.
func dropsDelta(a, b procstat.Sample) int64 {
	if a.UDPDrops < 0 || b.UDPDrops < 0 {
		return -1
	}
	return max(0, b.UDPDrops-a.UDPDrops)
}

// leaveTimeout bounds the wait for the participants to leave.
const leaveTimeout = 30 * time.Second

// leaveAll makes every participant leave, all at once, so that the
// remaining ones have little time to rotate their keys after each leave
// (a rotation sends a key message to everyone left). It waits at most
// leaveTimeout: the sessions still leaving end with the process.
func (r *run) leaveAll() {
	r.media.open() // a player waiting at the gate would hold its session
	if len(r.all) == 0 {
		return
	}
	r.cfg.Progress(fmt.Sprintf("%d participants leaving", len(r.all)))
	var wg sync.WaitGroup
	for _, m := range r.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.sess.Leave()
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(leaveTimeout):
		r.cfg.Progress(fmt.Sprintf("participants still leaving after %v; not waiting", leaveTimeout))
	}
}

func seconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }
