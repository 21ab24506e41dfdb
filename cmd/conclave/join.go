package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"conclave/internal/client"
	"conclave/internal/pki"
)

const joinUsage = `Usage: conclave join [flags] <meeting URL>

Joins a meeting as a native participant, e.g.
  conclave join --name Probe --test-media --record out/ https://meet.example.org/r/board

Flags:
`

// joinFlags are the options of 'conclave join'.
type joinFlags struct {
	name, pin    string
	video, audio string
	testMedia    bool
	record       string
	ca, data     string
	insecure     bool
	duration     time.Duration
	logLevel     string
	meetingURL   string
}

func parseJoinFlags(args []string, stderr io.Writer) (*joinFlags, error) {
	f := &joinFlags{}
	fs := flag.NewFlagSet("conclave join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, joinUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.name, "name", defaultName(), "display name shown to the others")
	fs.StringVar(&f.pin, "pin", os.Getenv("CONCLAVE_PIN"), "host or guest PIN of a PIN-protected room (env CONCLAVE_PIN)")
	fs.StringVar(&f.video, "video", "", "publish this VP8 IVF file as camera, in a loop")
	fs.StringVar(&f.audio, "audio", "", "publish this Ogg Opus file as microphone, in a loop")
	fs.BoolVar(&f.testMedia, "test-media", false, "publish the built-in test pattern and tone (unless --video/--audio are given)")
	fs.StringVar(&f.record, "record", "", "write every received track into this directory (IVF video, Ogg Opus audio)")
	fs.StringVar(&f.ca, "ca", "", "trust the CA certificate(s) in this PEM file instead of the system roots")
	fs.StringVar(&f.data, "data", os.Getenv("CONCLAVE_DATA"), "server data directory: trust its <data>/tls/ca.crt (on the server machine; env CONCLAVE_DATA)")
	fs.BoolVar(&f.insecure, "insecure", false, "accept any server certificate (DANGEROUS: anyone on the path can read and change signaling)")
	fs.DurationVar(&f.duration, "duration", 0, "leave after this long, e.g. 30s (default: until interrupted)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, errors.New("give exactly one meeting URL")
	}
	f.meetingURL = fs.Arg(0)
	return f, nil
}

func defaultName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username + " (native)"
	}
	return "Native client"
}

// roots returns the CAs to trust: --ca, else <data>/tls/ca.crt when it
// exists, else nil (the system roots).
func (f *joinFlags) roots() (*x509.CertPool, error) {
	path := f.ca
	if path == "" && f.data != "" {
		p := filepath.Join(f.data, "tls", pki.CACertFile)
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	}
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// sources opens the media to publish.
func (f *joinFlags) sources() (video, audio client.FrameSource, closers []io.Closer, err error) {
	if f.video != "" {
		file, err := os.Open(f.video)
		if err != nil {
			return nil, nil, closers, fmt.Errorf("open video: %w", err)
		}
		closers = append(closers, file)
		if video, err = client.NewIVFSource(file); err != nil {
			return nil, nil, closers, fmt.Errorf("%s: %w", f.video, err)
		}
	} else if f.testMedia {
		video = client.NewTestVideo()
	}
	if f.audio != "" {
		file, err := os.Open(f.audio)
		if err != nil {
			return nil, nil, closers, fmt.Errorf("open audio: %w", err)
		}
		closers = append(closers, file)
		if audio, err = client.NewOggSource(file); err != nil {
			return nil, nil, closers, fmt.Errorf("%s: %w", f.audio, err)
		}
	} else if f.testMedia {
		audio = client.NewTestAudio()
	}
	return video, audio, closers, nil
}

func join(args []string, stdout, stderr io.Writer) int {
	f, err := parseJoinFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "conclave join: --log-level %q: use debug, info, warn or error\n", f.logLevel)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave join: %v\n", err)
		return 1
	}
	roots, err := f.roots()
	if err != nil {
		return fail(err)
	}
	if f.insecure {
		fmt.Fprintln(stderr, "conclave join: WARNING: --insecure accepts any server certificate; signaling can be read and changed on the path.")
	}
	video, audio, closers, err := f.sources()
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if err != nil {
		return fail(err)
	}
	opts := client.Options{
		URL:                f.meetingURL,
		Name:               f.name,
		PIN:                f.pin,
		RootCAs:            roots,
		InsecureSkipVerify: f.insecure,
		Logger:             slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Camera:             video,
		Microphone:         audio,
	}
	if f.record != "" {
		if err := os.MkdirAll(f.record, 0o755); err != nil {
			return fail(fmt.Errorf("create the recording directory: %w", err))
		}
		opts.NewSink = client.Recorder(f.record)
	}
	out := &joinPrinter{w: stdout, room: roomAlias(f.meetingURL), start: time.Now()}
	opts.Hooks.OnEvent = out.event

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := client.Dial(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return 130
		}
		return fail(err)
	}
	var timeout <-chan time.Time
	if f.duration > 0 {
		timeout = time.After(f.duration)
	}
	select {
	case <-ctx.Done():
	case <-timeout:
	case <-s.Done():
	}
	err = s.Leave()
	printSummary(stdout, s)
	if err != nil {
		return fail(err)
	}
	return 0
}

func roomAlias(meetingURL string) string {
	m, err := client.ParseMeetingURL(meetingURL)
	if err != nil {
		return meetingURL
	}
	return m.Room
}

// joinPrinter prints the session's events as they come.
type joinPrinter struct {
	w     io.Writer
	room  string
	start time.Time
}

func (p *joinPrinter) printf(format string, args ...any) {
	fmt.Fprintf(p.w, "%6.1fs  %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *joinPrinter) event(e client.Event) {
	switch e.Kind {
	case client.Joined:
		p.printf("Joined %s as %s (%s).", p.room, e.Participant.Name, e.Participant.ID)
	case client.ParticipantJoined:
		p.printf("+ %s joined (%s)%s", e.Participant.Name, e.Participant.ID, sending(e.Participant.Audio, e.Participant.Video, e.Participant.Screen))
	case client.ParticipantLeft:
		p.printf("- %s left (%s)", e.Participant.Name, e.Participant.ID)
	case client.TrackStarted:
		p.printf("  %s: %s started (%s)", e.Track.Name, e.Track.Source, e.Track.Codec)
	case client.TrackStopped:
		p.printf("  %s: %s stopped", e.Track.Name, e.Track.Source)
	case client.Reconnecting:
		p.printf("Connection lost; reconnecting…")
	case client.Rejoined:
		if e.Resumed {
			p.printf("Reconnected.")
		} else {
			p.printf("Reconnected as a new participant.")
		}
	case client.Waiting:
		if e.Wait == "lobby" {
			p.printf("Waiting in the lobby for a host to admit you…")
		} else {
			p.printf("Waiting for a host to join…")
		}
	case client.Muted:
		p.printf("A host muted your microphone.")
	}
}

func sending(audio, video, screen bool) string {
	var s []string
	if audio {
		s = append(s, "microphone")
	}
	if video {
		s = append(s, "camera")
	}
	if screen {
		s = append(s, "screen")
	}
	if len(s) == 0 {
		return ""
	}
	return ", sending " + strings.Join(s, " and ")
}

// printSummary prints what was sent, and what was received per
// participant and track.
func printSummary(w io.Writer, s *client.Session) {
	fmt.Fprintln(w, "\nSent:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	sent := s.Sent()
	if len(sent) == 0 {
		fmt.Fprintln(tw, "  nothing")
	}
	for _, t := range sent {
		fmt.Fprintf(tw, "  %s\t%s\t%d frames\t%s\n", t.Source, t.Codec, t.Frames, bytesLabel(t.Bytes))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nReceived:")
	stats := s.Stats()
	if len(stats) == 0 {
		fmt.Fprintln(w, "  nothing")
		return
	}
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PARTICIPANT\tSOURCE\tCODEC\tFRAMES\tKEY FRAMES\tBYTES\tLOSSES")
	type total struct{ frames, bytes uint64 }
	totals := map[string]*total{}
	var order []string
	for _, t := range stats {
		who := fmt.Sprintf("%s (%s)", t.Name, t.Participant)
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%s\t%d\n", who, t.Source, t.Codec, t.Frames, t.KeyFrames, bytesLabel(t.Bytes), t.Losses)
		if totals[who] == nil {
			totals[who] = &total{}
			order = append(order, who)
		}
		totals[who].frames += t.Frames
		totals[who].bytes += t.Bytes
	}
	tw.Flush()
	fmt.Fprintln(w, "\nPer participant:")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, who := range order {
		fmt.Fprintf(tw, "  %s\t%d frames\t%s\n", who, totals[who].frames, bytesLabel(totals[who].bytes))
	}
	tw.Flush()
}

func bytesLabel(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
