package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"conclave/internal/client"
	"conclave/internal/loadtest"
)

const loadtestUsage = `Usage: conclave loadtest [flags] (-local | -url <meeting URL>)

Joins video publishers, audio-only publishers and subscribers to a meeting
as native participants, end-to-end encrypted like 'conclave join', and
measures what the server forwards. Video publishers send a three-layer
simulcast camera (pre-encoded clips: 320x180, 640x360 and 1280x720 at about
150, 500 and 1700 kbit/s); each subscriber shows -layout tracks. The report
gives the forwarded bit rate, packet and frame loss, end-to-end delay
(from a time stamp inside every encrypted frame), and the server's CPU
time per forwarded gigabit and memory.

  conclave loadtest -local -pubs 10 -subs 100 -duration 60s
  conclave loadtest -url https://meet.example.org/r/bench -server-debug http://127.0.0.1:6060 -pubs 5 -subs 20

With -local it starts 'conclave serve' itself on loopback (a temporary data
directory, the room, --max-participants and the debug listener set up), and
reads its CPU time and memory from /proc. With -url the room must exist and
be open; give -server-pid (a server on this machine) or -server-debug (its
--debug-listen address) for the server's figures, and start the server with
--max-participants above the participant count. docs/benchmarks.md has the
reference runs.

Flags:
`

// loadtestFlags are the options of 'conclave loadtest'.
type loadtestFlags struct {
	url, layout              string
	subURLs                  []string
	serverPIDs               []int
	local                    bool
	pubs, audio, subs, rooms int
	duration, warmup, ready  time.Duration
	joinRate                 float64
	serverPID                int
	serverDebug              string
	cpuProfile, memProfile   string
	genProfile               string
	jsonOut                  string
	serverLog                string
	ca, data                 string
	insecure                 bool
	logLevel                 string
	relay                    string
}

func parseLoadtestFlags(args []string, stderr io.Writer) (*loadtestFlags, loadtest.Layout, error) {
	f := &loadtestFlags{}
	fs := flag.NewFlagSet("conclave loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, loadtestUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.url, "url", "", "meeting URL of an open room on a running server, https://host/r/<room>")
	fs.BoolVar(&f.local, "local", false, "start a server on loopback for the test (this binary's 'serve')")
	fs.IntVar(&f.pubs, "pubs", 0, "video publishers per room (simulcast camera, no microphone)")
	fs.IntVar(&f.audio, "audio", 0, "audio-only publishers per room")
	fs.IntVar(&f.subs, "subs", 0, "subscribers per room (publish nothing)")
	fs.IntVar(&f.rooms, "rooms", 1, "rooms, each with -pubs, -audio and -subs; with -url, rooms <room>-1 ... <room>-N")
	fs.StringVar(&f.layout, "layout", "speaker", "tracks each subscriber shows: speaker (1:1280x720,5:320x180), 3x3, 4x4, 5x5, or COUNT:WxH,...")
	fs.DurationVar(&f.duration, "duration", 30*time.Second, "length of the measurement")
	fs.DurationVar(&f.warmup, "warmup", 10*time.Second, "wait before measuring, once every subscriber receives what it shows")
	fs.DurationVar(&f.ready, "ready-timeout", 60*time.Second, "longest wait for every subscriber to receive what it shows")
	fs.Float64Var(&f.joinRate, "join-rate", 20, "most participants joining per second")
	fs.Func("server-pid", "process id of the server (on this machine), for its CPU time and memory; repeat it for the nodes of a cluster (their figures add up)", func(v string) error {
		pid, err := strconv.Atoi(v)
		if err != nil || pid <= 0 {
			return fmt.Errorf("%q is not a process id", v)
		}
		f.serverPIDs = append(f.serverPIDs, pid)
		f.serverPID = f.serverPIDs[0]
		return nil
	})
	fs.Func("sub-url", "with -url, a link of the same room on another node of a cluster: subscribers join -url and the -sub-url links in turn (repeatable)", func(v string) error {
		f.subURLs = append(f.subURLs, v)
		return nil
	})
	fs.StringVar(&f.serverDebug, "server-debug", "", "the server's debug listener (--debug-listen), e.g. http://127.0.0.1:6060, for its figures and profiles")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write the server's CPU profile over the measurement to this file (needs -local or -server-debug)")
	fs.StringVar(&f.memProfile, "memprofile", "", "write the server's heap profile at the end of the measurement to this file (needs -local or -server-debug)")
	fs.StringVar(&f.genProfile, "generator-cpuprofile", "", "write the load generator's own CPU profile over the measurement to this file")
	fs.StringVar(&f.jsonOut, "json", "", "also write the report as JSON to this file; - prints JSON instead of the text report")
	fs.StringVar(&f.serverLog, "server-log", "", "with -local, write the server's log to this file")
	fs.StringVar(&f.ca, "ca", "", "with -url, trust the CA certificate(s) in this PEM file")
	fs.StringVar(&f.data, "data", os.Getenv("CONCLAVE_DATA"), "with -url, the server's data directory: trust its <data>/tls/ca.crt (env CONCLAVE_DATA)")
	fs.BoolVar(&f.insecure, "insecure", false, "with -url, accept any server certificate")
	fs.StringVar(&f.relay, "relay", "", "send all media through the server's TURN relay: any, udp, tcp or tls (default: direct)")
	fs.StringVar(&f.logLevel, "log-level", "error", "participants' log level: debug, info, warn or error (to standard error)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	bad := func(format string, args ...any) (*loadtestFlags, loadtest.Layout, error) {
		err := fmt.Errorf(format, args...)
		fmt.Fprintf(stderr, "conclave loadtest: %v\n", err)
		return nil, nil, err
	}
	if fs.NArg() != 0 {
		return bad("unexpected argument %q; the meeting URL goes after -url", fs.Arg(0))
	}
	switch {
	case f.local == (f.url != ""):
		return bad("give either -local or -url")
	case f.local && (f.serverPID != 0 || f.serverDebug != "" || f.ca != "" || f.insecure):
		return bad("-server-pid, -server-debug, -ca and -insecure go with -url, not -local")
	case len(f.subURLs) > 0 && f.local:
		return bad("-sub-url goes with -url")
	case f.serverLog != "" && !f.local:
		return bad("-server-log goes with -local")
	case f.pubs < 0 || f.audio < 0 || f.subs < 0:
		return bad("-pubs, -audio and -subs cannot be negative")
	case f.pubs+f.audio == 0:
		return bad("nobody publishes: give -pubs or -audio")
	case f.subs == 0:
		return bad("nobody subscribes: give -subs")
	case f.rooms < 1:
		return bad("-rooms must be at least 1")
	case f.duration < time.Second:
		return bad("-duration must be at least 1s")
	case f.relay != "" && f.relay != loadtest.RelayAny && f.relay != client.RelayUDP && f.relay != client.RelayTCP && f.relay != client.RelayTLS:
		return bad("-relay %q is not one of any, udp, tcp, tls", f.relay)
	case (f.cpuProfile != "" || f.memProfile != "") && !f.local && f.serverDebug == "":
		return bad("-cpuprofile and -memprofile need -local or -server-debug")
	}
	if f.serverPID != 0 && f.serverDebug != "" {
		return bad("give -server-pid or -server-debug, not both")
	}
	if f.url != "" {
		if _, err := loadtest.RoomURLs(f.url, f.rooms); err != nil {
			return bad("-url: %v", err)
		}
	}
	layout, err := loadtest.ParseLayout(f.layout)
	if err != nil {
		return bad("-layout: %v", err)
	}
	if f.pubs > 0 && layout.Tracks() > f.pubs {
		fmt.Fprintf(stderr, "conclave loadtest: the layout has room for %d tracks and there are %d video publishers: subscribers show every publisher\n", layout.Tracks(), f.pubs)
	}
	return f, layout, nil
}

func runLoadtest(args []string, stdout, stderr io.Writer) int {
	f, layout, err := parseLoadtestFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	level, ok := logLevel("loadtest", "-log-level", f.logLevel, stderr)
	if !ok {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave loadtest: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := func(s string) { fmt.Fprintf(stderr, "conclave loadtest: %s\n", s) }

	cfg := loadtest.Config{
		URL:             f.url,
		SubscriberURLs:  f.subURLs,
		Rooms:           f.rooms,
		VideoPublishers: f.pubs,
		AudioPublishers: f.audio,
		Subscribers:     f.subs,
		Layout:          layout,
		Duration:        f.duration,
		Warmup:          f.warmup,
		ReadyTimeout:    f.ready,
		JoinRate:        f.joinRate,
		Relay:           f.relay,
		Logger:          slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Progress:        progress,
	}
	if f.local {
		srv, err := startLocalServer(ctx, f, progress)
		if err != nil {
			return fail(err)
		}
		defer func() {
			if err := srv.Close(); err != nil {
				progress(err.Error())
			}
		}()
		cfg.URL = srv.URL + "/r/loadtest"
		cfg.RootCAs = srv.Roots
		cfg.Server, cfg.Debug = loadtest.ProcProbe(srv.PID), srv.Debug
		cfg.ServerDelay = srv.Debug.ForwardDelay
		cfg.ServerSends = srv.Debug.SendStats
	} else {
		if cfg.RootCAs, err = trustedRoots(f.ca, f.data); err != nil {
			return fail(err)
		}
		cfg.InsecureSkipVerify = f.insecure
		switch {
		case f.serverPID != 0:
			cfg.Server = loadtest.ProcProbe(f.serverPID)
			if len(f.serverPIDs) > 1 {
				var sum loadtest.SumProbe
				for _, pid := range f.serverPIDs {
					sum = append(sum, loadtest.ProcProbe(pid))
				}
				cfg.Server = sum
			}
			if _, err := cfg.Server.Sample(ctx); err != nil {
				return fail(fmt.Errorf("-server-pid %v: %w", f.serverPIDs, err))
			}
		case f.serverDebug != "":
			d, err := loadtest.NewDebugServer(f.serverDebug)
			if err != nil {
				return fail(err)
			}
			if _, err := d.Sample(ctx); err != nil {
				return fail(fmt.Errorf("-server-debug: %w", err))
			}
			cfg.Server, cfg.Debug = d, d
			cfg.ServerDelay = d.ForwardDelay
			cfg.ServerSends = d.SendStats
		}
	}
	for _, p := range []struct {
		path string
		dst  *io.Writer
	}{{f.cpuProfile, &cfg.CPUProfile}, {f.memProfile, &cfg.HeapProfile}, {f.genProfile, &cfg.GeneratorProfile}} {
		if p.path == "" {
			continue
		}
		file, err := os.Create(p.path)
		if err != nil {
			return fail(err)
		}
		defer file.Close()
		*p.dst = file
	}

	// The report is printed as soon as it is measured: the participants
	// of a large meeting take a while to leave.
	var outErr error
	cfg.OnReport = func(rep *loadtest.Report) { outErr = writeLoadtestReport(rep, f.jsonOut, stdout) }
	if _, err := loadtest.Run(ctx, cfg); err != nil {
		return fail(err)
	}
	if outErr != nil {
		return fail(outErr)
	}
	return 0
}

// writeLoadtestReport prints the report, as text or (-json -) JSON, and
// writes the JSON file of -json.
func writeLoadtestReport(rep *loadtest.Report, jsonOut string, stdout io.Writer) error {
	if jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if jsonOut == "-" {
			_, err = stdout.Write(data)
			return err
		}
		if err := os.WriteFile(jsonOut, data, 0o644); err != nil {
			return err
		}
	}
	return rep.WriteText(stdout)
}

// startLocalServer starts this binary's 'serve' for the test, with its
// rooms and a participant limit that fits.
func startLocalServer(ctx context.Context, f *loadtestFlags, progress func(string)) (*loadtest.LocalServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start the server: %w", err)
	}
	rooms := []string{"loadtest"}
	if f.rooms > 1 {
		rooms = rooms[:0]
		for i := range f.rooms {
			rooms = append(rooms, fmt.Sprintf("loadtest-%d", i+1))
		}
	}
	opts := loadtest.LocalOptions{Exe: exe, Rooms: rooms, MaxParticipants: max(100, f.pubs+f.audio+f.subs+10)}
	if f.serverLog != "" {
		logFile, err := os.Create(f.serverLog)
		if err != nil {
			return nil, err
		}
		// The file stays open until the process exits; the server writes
		// to it until then.
		opts.Log = logFile
	}
	srv, err := loadtest.StartLocal(ctx, opts)
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("started a server at %s (process %d, debug listener %s)", srv.URL, srv.PID, strings.TrimSuffix(srv.Debug.String(), "/metrics")))
	return srv, nil
}
