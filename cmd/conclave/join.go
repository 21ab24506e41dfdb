package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/client/termpass"
	"conclave/internal/e2ee"
	"conclave/internal/pki"
)

const joinUsage = `Usage: conclave join [flags] <meeting URL>

Joins a meeting as a native participant, e.g.
  conclave join --name Probe --test-media --record out/ https://meet.example.org/r/board

Media, chat keys and files are end-to-end encrypted (docs/e2ee.md). The
device key lives in --key-dir (device.key, encrypted with a passphrase from
CONCLAVE_KEY_PASSPHRASE or asked on the terminal), next to the pinned
organisation keys (known-orgs). With --user the device is certified by the
organisation after a login (password from CONCLAVE_PASSWORD or asked).
Compare the printed meeting code aloud with the other participants.

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

	user             string
	keyDir           string
	plainDeviceKey   bool
	requireCertified bool
	relay            string
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
	fs.StringVar(&f.video, "video", "", "publish this VP8 IVF file as camera, in a loop; two or three files separated by commas, lowest resolution first, are published as simulcast layers")
	fs.StringVar(&f.audio, "audio", "", "publish this Ogg Opus file as microphone, in a loop")
	fs.BoolVar(&f.testMedia, "test-media", false, "publish the built-in test pattern and tone (unless --video/--audio are given)")
	fs.StringVar(&f.record, "record", "", "write every received track into this directory (IVF video, Ogg Opus audio)")
	fs.StringVar(&f.ca, "ca", "", "trust the CA certificate(s) in this PEM file instead of the system roots")
	fs.StringVar(&f.data, "data", os.Getenv("CONCLAVE_DATA"), "server data directory: trust its <data>/tls/ca.crt (on the server machine; env CONCLAVE_DATA)")
	fs.BoolVar(&f.insecure, "insecure", false, "accept any server certificate (DANGEROUS: anyone on the path can read and change signaling)")
	fs.DurationVar(&f.duration, "duration", 0, "leave after this long, e.g. 30s (default: until interrupted)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.StringVar(&f.user, "user", "", "sign in as this user to have the device certified by the organisation (password: env CONCLAVE_PASSWORD, or asked)")
	fs.StringVar(&f.keyDir, "key-dir", os.Getenv("CONCLAVE_KEY_DIR"), "directory of the device key and the pinned organisation keys (default: <user config dir>/conclave; env CONCLAVE_KEY_DIR)")
	fs.BoolVar(&f.plainDeviceKey, "plain-device-key", false, "keep the device key unencrypted (tests and load tests only: anyone who reads the file can impersonate this device)")
	fs.StringVar(&f.relay, "relay", "", "send and receive media only through the server's TURN relay: any, udp, tcp or tls (default: direct when possible)")
	fs.BoolVar(&f.requireCertified, "require-certified", false, "send keys only to participants certified by the organisation (guests cannot decrypt this participant)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, errors.New("give exactly one meeting URL")
	}
	f.meetingURL = fs.Arg(0)
	switch f.relay {
	case "", "any", client.RelayUDP, client.RelayTCP, client.RelayTLS:
	default:
		return nil, fmt.Errorf("--relay %q is not one of any, udp, tcp, tls", f.relay)
	}
	if f.keyDir == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("no --key-dir and no user config directory: %w", err)
		}
		f.keyDir = filepath.Join(dir, "conclave")
	}
	return f, nil
}

func defaultName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username + " (native)"
	}
	return "Native client"
}

// roots returns the CAs to trust for the meeting's server (trustedRoots).
func (f *joinFlags) roots() (*x509.CertPool, error) { return trustedRoots(f.ca, f.data) }

// maxVideoLayers is how many simulcast layers --video takes (the RIDs q,
// h and f).
const maxVideoLayers = 3

// sources opens the media to publish: video holds one source (a plain
// camera) or two or three (simulcast layers, lowest first).
func (f *joinFlags) sources() (video []client.FrameSource, audio client.FrameSource, closers []io.Closer, err error) {
	if f.video != "" {
		paths := strings.Split(f.video, ",")
		if len(paths) > maxVideoLayers {
			return nil, nil, closers, fmt.Errorf("--video: %d files; give one, or two or three simulcast layers", len(paths))
		}
		for _, path := range paths {
			if path == "" {
				return nil, nil, closers, fmt.Errorf("--video %q: an empty file name", f.video)
			}
			file, err := os.Open(path)
			if err != nil {
				return nil, nil, closers, fmt.Errorf("open video: %w", err)
			}
			closers = append(closers, file)
			src, err := client.NewIVFSource(file)
			if err != nil {
				return nil, nil, closers, fmt.Errorf("%s: %w", path, err)
			}
			video = append(video, src)
		}
	} else if f.testMedia {
		video = []client.FrameSource{client.NewTestVideo()}
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

// setCamera puts the video sources in opts: one is the camera, more are
// its simulcast layers.
func setCamera(opts *client.Options, video []client.FrameSource) {
	switch len(video) {
	case 0:
	case 1:
		opts.Camera = video[0]
	default:
		opts.CameraLayers = video
	}
}

func join(args []string, stdout, stderr io.Writer) int {
	f, err := parseJoinFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	level, ok := logLevel("join", "--log-level", f.logLevel, stderr)
	if !ok {
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
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := client.Options{
		URL:                f.meetingURL,
		Name:               f.name,
		PIN:                f.pin,
		RootCAs:            roots,
		InsecureSkipVerify: f.insecure,
		Logger:             logger,
		Microphone:         audio,
		ForceRelay:         f.relay != "",
	}
	if f.relay != "any" {
		opts.RelayOver = f.relay
	}
	setCamera(&opts, video)
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
	sec, err := f.setupE2EE(ctx, &opts, out, logger)
	if err != nil {
		if ctx.Err() != nil {
			return 130
		}
		return fail(err)
	}
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
	printSummary(stdout, s, sec)
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
	mu    sync.Mutex
	w     io.Writer
	room  string
	start time.Time

	codeShown bool // the meeting code's explanation was printed
	// gateways are the members the server marks as breaking end-to-end
	// encryption (docs/protocol.md, "Gateways"), by id.
	gateways map[string]string
}

func (p *joinPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%6.1fs  %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *joinPrinter) event(e client.Event) {
	switch e.Kind {
	case client.Joined:
		p.mu.Lock()
		p.gateways = map[string]string{}
		p.mu.Unlock()
		p.printf("Joined %s as %s (%s).", p.room, e.Participant.Name, e.Participant.ID)
	case client.ParticipantJoined:
		p.printf("+ %s joined (%s)%s", e.Participant.Name, e.Participant.ID, sending(e.Participant.Audio, e.Participant.Video, e.Participant.Screen))
		if e.Participant.Gateway != "" {
			p.mu.Lock()
			if p.gateways == nil {
				p.gateways = map[string]string{}
			}
			_, known := p.gateways[e.Participant.ID]
			p.gateways[e.Participant.ID] = e.Participant.Name
			p.mu.Unlock()
			if !known {
				p.printf("WARNING: NOT END-TO-END: %s is a telephone connected through the server, which hears everything said in this meeting while it is present.", e.Participant.Name)
			}
		}
	case client.ParticipantLeft:
		p.printf("- %s left (%s)", e.Participant.Name, e.Participant.ID)
		p.mu.Lock()
		_, was := p.gateways[e.Participant.ID]
		delete(p.gateways, e.Participant.ID)
		left := len(p.gateways)
		p.mu.Unlock()
		if was && left == 0 {
			p.printf("No telephone is connected through the server any more: after the key rotation the meeting is end-to-end again.")
		}
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
// participant and track, and the end-to-end encryption counts.
func printSummary(w io.Writer, s *client.Session, sec *secure.Session) {
	defer printE2EESummary(w, sec)
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

// setupE2EE sets up the end-to-end encryption of the session: the device key,
// the organisation pin, the credential with --user, and the secure.Session
// wired into opts.
func (f *joinFlags) setupE2EE(ctx context.Context, opts *client.Options, out *joinPrinter, logger *slog.Logger) (*secure.Session, error) {
	m, err := client.ParseMeetingURL(f.meetingURL)
	if err != nil {
		return nil, err
	}
	device, created, err := secure.LoadOrCreateDeviceKey(filepath.Join(f.keyDir, "device.key"), askPassphrase, f.plainDeviceKey)
	if err != nil {
		return nil, err
	}
	if fp, err := e2ee.Fingerprint(&device.PublicKey); err == nil {
		if created {
			out.printf("Made a new device key in %s (fingerprint %s).", f.keyDir, fp)
		} else {
			out.printf("Device key fingerprint %s.", fp)
		}
	}
	tlsConfig := pki.ClientTLSConfig(opts.RootCAs)
	tlsConfig.InsecureSkipVerify = opts.InsecureSkipVerify
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 15 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}}
	defer hc.CloseIdleConnections()
	opts.Jar = jar

	cfg := secure.Config{Device: device, Name: f.name, RequireCertified: f.requireCertified,
		Logger: logger, OnNotice: out.notice}
	server := strings.TrimPrefix(m.Origin, "https://")
	orgChanged := false
	var logKey string
	org, err := secure.FetchOrg(ctx, hc, m.Base)
	if err != nil {
		out.printf("WARNING: %v; nobody can be shown as certified.", err)
	} else {
		pinned, status, err := secure.CheckPin(filepath.Join(f.keyDir, "known-orgs"), server, org)
		switch {
		case err != nil:
			return nil, err
		case status == secure.PinChanged:
			orgChanged = true
			out.printf("WARNING: THE ORGANISATION KEY OF %s CHANGED (pinned %q, now %q). Someone may be impersonating the organisation: nobody is shown as certified. If the administrators replaced the key on purpose, remove the line of %s from %s.",
				server, fingerprint(pinned.PublicKey), fingerprint(org.PublicKey), server, filepath.Join(f.keyDir, "known-orgs"))
		default:
			if status == secure.PinNew {
				out.printf("Pinned the organisation key of %s: %s, fingerprint %s.", server, org.Name, fingerprint(org.PublicKey))
			}
			cfg.OrgKey, _ = pinned.Key()
			cfg.OrgName = pinned.Name
			logKey = pinLog(f.keyDir, server, org.LogKey, out)
		}
	}
	if f.user != "" && orgChanged {
		out.printf("WARNING: not asking for a credential under an organisation key that contradicts the pin: joining as not certified.")
	} else if f.user != "" {
		password := []byte(os.Getenv("CONCLAVE_PASSWORD"))
		if len(password) == 0 {
			if password, err = termpass.Read(fmt.Sprintf("Password of %s: ", f.user)); err != nil {
				return nil, fmt.Errorf("password of %s: %w (or set CONCLAVE_PASSWORD)", f.user, err)
			}
		}
		csrf, err := secure.Login(ctx, hc, m.Base, f.user, string(password))
		clear(password)
		if err != nil {
			return nil, err
		}
		cred, notAfter, err := secure.RequestCredential(ctx, hc, m.Base, csrf, device, org.ID, f.user)
		if err != nil {
			return nil, err
		}
		c, err := e2ee.ParseCredential(cred)
		if err != nil {
			return nil, fmt.Errorf("the server's credential: %w", err)
		}
		cfg.Credential, cfg.UserID = cred, c.UserID
		out.printf("Signed in as %s; device certified until %s.", f.user, notAfter.Local().Format(time.DateTime))
	}
	if logKey != "" {
		mon, err := secure.NewLogMonitor(secure.LogMonitorConfig{API: secure.HTTPLog{Client: hc, Base: m.Base},
			VerifierKey: logKey, OrgKey: cfg.OrgKey, OrgID: org.ID, StatePath: logStatePath(f.keyDir, server),
			UserID: cfg.UserID, Device: &device.PublicKey})
		if err != nil {
			return nil, err
		}
		if err := mon.Refresh(ctx); err != nil {
			out.printf("WARNING: cannot read the identity log (%v); nobody is shown as certified until it can be read.", err)
		}
		if split := mon.Split(); split != "" {
			out.printf("WARNING: THE SERVER SHOWED DIFFERENT VERSIONS OF THE IDENTITY LOG BEFORE (%s): identities cannot be trusted.", split)
		}
		cfg.Log = mon
		go mon.Run(ctx, meetingLogInterval, func(err error) { logger.Warn("identity log refresh failed", "err", err) })
	}
	sec, err := secure.New(cfg)
	if err != nil {
		return nil, err
	}
	sec.Wire(opts)
	return sec, nil
}

// meetingLogInterval is how often the identity log is read during a
// meeting: a revocation is shown, and a new device of the own account
// reported, within a few seconds.
const meetingLogInterval = 3 * time.Second

// pinLog pins the server's log key (known-logs, next to the device key) and
// returns it, or "" with a warning when it is missing or changed.
func pinLog(keyDir, server, vkey string, out *joinPrinter) string {
	pinned, status, err := secure.CheckLogPin(filepath.Join(keyDir, "known-logs"), server, vkey)
	switch {
	case err != nil && vkey == "":
		out.printf("WARNING: the server publishes no identity log; nobody can be shown as certified.")
		return ""
	case err != nil:
		out.printf("WARNING: %v; nobody can be shown as certified.", err)
		return ""
	case status == secure.PinWithheld:
		out.printf("WARNING: %s NO LONGER PUBLISHES THE IDENTITY LOG KEY pinned in %s (%s): nobody is shown as certified, and devices added to your account cannot be reported. Someone may be switching the checks off.",
			server, filepath.Join(keyDir, "known-logs"), pinned)
		return ""
	case status == secure.PinChanged:
		out.printf("WARNING: THE IDENTITY LOG KEY OF %s CHANGED (pinned %s). Someone may be impersonating the organisation: nobody is shown as certified. If the administrators replaced it on purpose, remove the line of %s from %s.",
			server, pinned, server, filepath.Join(keyDir, "known-logs"))
		return ""
	case status == secure.PinNew:
		out.printf("Pinned the identity log key of %s.", server)
	}
	return vkey
}

// logStatePath is where the log monitor keeps what it verified of a
// server's log.
func logStatePath(keyDir, server string) string {
	return filepath.Join(keyDir, "log-"+strings.NewReplacer(":", "_", "/", "_", "[", "", "]", "").Replace(server)+".json")
}

func fingerprint(point []byte) string {
	k, err := e2ee.ParsePublicKey(point)
	if err != nil {
		return "invalid key"
	}
	fp, _ := e2ee.Fingerprint(k)
	return fp
}

// askPassphrase gets the device key's passphrase from
// CONCLAVE_KEY_PASSPHRASE or the terminal (twice for a new key).
func askPassphrase(confirm bool) ([]byte, error) {
	if p := os.Getenv("CONCLAVE_KEY_PASSPHRASE"); p != "" {
		return []byte(p), nil
	}
	p, err := termpass.Read("Device key passphrase: ")
	if err != nil {
		return nil, fmt.Errorf("device key passphrase: %w (set CONCLAVE_KEY_PASSPHRASE, or use --plain-device-key for tests)", err)
	}
	if confirm {
		again, err := termpass.Read("Again: ")
		if err != nil {
			return nil, err
		}
		if string(again) != string(p) {
			return nil, errors.New("the two passphrases differ")
		}
	}
	return p, nil
}

// notice prints what the end-to-end encryption reports.
func (p *joinPrinter) notice(n secure.Notice) {
	switch n.Kind {
	case secure.CodeChanged:
		hint := ""
		if !p.codeShown {
			p.codeShown = true
			hint = "  (compare it aloud: everyone who sees the same code sees the same participants and keys; it changes when someone joins or leaves)"
		}
		if n.Code == "" {
			p.printf("Meeting code: verifying...")
			return
		}
		p.printf("Meeting code: %s%s", n.Code, hint)
	case secure.Announced:
		p.printf("  %s: device %s, %s", shownName(n.Participant), n.Participant.Fingerprint, certification(n.Participant))
	case secure.Revoked:
		p.printf("WARNING: %s: DEVICE REVOKED by the organisation; it gets no more keys", shownName(n.Participant))
	case secure.NewDevice:
		p.printf("WARNING: %s", n.Text)
	case secure.Verified:
		p.printf("  %s: end-to-end verified", shownName(n.Participant))
	case secure.Warning:
		p.printf("WARNING: %s", n.Text)
	}
}

func certification(p secure.Participant) string {
	switch {
	case p.Certified && p.NewDevice:
		return fmt.Sprintf("certified by %s (NEW DEVICE, first certified %s)", p.Org, p.FirstCertified.Local().Format(time.DateTime))
	case p.Certified:
		return fmt.Sprintf("certified by %s", p.Org)
	case p.Revoked:
		return "REVOKED"
	case p.Pending:
		return "NOT certified (its credential is not in the identity log)"
	}
	return "NOT certified"
}

// shownName is how a participant is named: a certified one by its
// credential (display name and account), with the free-text name beside
// it when it differs; others by their free-text name.
func shownName(p secure.Participant) string {
	if !p.Certified {
		return fmt.Sprintf("%q (%s)", p.Name, p.ID)
	}
	s := fmt.Sprintf("%s (@%s, %s)", p.CertifiedName, p.Account, p.ID)
	if e2ee.Skeleton(p.Name) != e2ee.Skeleton(p.CertifiedName) {
		s += fmt.Sprintf(" calls themselves %q", p.Name)
	}
	return s
}

// printE2EESummary prints the participants as verified and the frames
// decrypted and dropped per participant.
func printE2EESummary(w io.Writer, sec *secure.Session) {
	if sec == nil {
		return
	}
	enc, dropped := sec.Sent()
	fmt.Fprintf(w, "\nEnd-to-end encryption (meeting code %s): %d frames encrypted, %d dropped\n", sec.MeetingCode(), enc, dropped)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PARTICIPANT\tDECRYPTED\tDROPPED\tNO KEY\tAUTH FAILED\tNOT VERIFIED\tKEY MSGS\tREFUSED")
	for _, st := range sec.Stats() {
		name := st.Name
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(tw, "  %s (%s)\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", name, st.Participant, st.Decrypted, st.Dropped,
			st.NoKey, st.AuthFailed, st.Unverified, st.KeyMessages, st.Replays+st.BadKeyMessages+st.BadAnnouncements)
	}
	tw.Flush()
}
