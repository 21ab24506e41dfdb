// Command sidebyside measures two media servers one after the other under
// the same meeting shapes, each loaded by its own load tester, and both
// measured the same way from the outside (internal/sidebyside): server
// CPU and memory from /proc, the bytes it sends from an nftables counter
// on its media port, the datagrams its receivers took from the kernel's
// UDP counters. Everything runs in a network namespace of its own, with
// only loopback, created for the run.
//
//	sidebyside -out DIR -shapes 5x20,10x100,1x300 -runs 3 \
//	    -a-name conclave -a-load 'conclave loadtest -local -pubs {pubs} -subs {subs} ...' -a-match 'conclave serve' ... \
//	    -b-name peer -b-server 'PEER-SERVER ...' -b-load 'PEER-LOAD-TESTER ...' -b-match ... -b-ports 7882-7883 ...
//
// The runs of a pair alternate their order (run 1: a then b, run 2: b
// then a, ...), and each pair holds -lock (flock) so that no other heavy
// work of the project's tools starts in between. scripts/bench-sidebyside
// fills in Conclave's side; the other server is whatever binary and load
// tester are given (docs/benchmarks.md, "Side by side").
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"conclave/internal/sidebyside"
)

const nsEnv = "CONCLAVE_SIDEBYSIDE_NETNS"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
}

func systemFlags(fs *flag.FlagSet, p string, s *sidebyside.System) {
	fs.StringVar(&s.Name, p+"-name", "", "name of system "+p)
	fs.StringVar(&s.Server, p+"-server", "", "shell command starting system "+p+"'s server (empty: its load tester starts it)")
	fs.StringVar(&s.Load, p+"-load", "", "shell command of system "+p+"'s load tester; {pubs}, {subs}, {hold}, {dir} are filled in")
	fs.StringVar(&s.Match, p+"-match", "", "regular expression matching the command line of system "+p+"'s server process")
	fs.StringVar(&s.Ports, p+"-ports", "", "media UDP port(s) of system "+p+", PORT or FIRST-LAST (empty: the server's one listening UDP port)")
	fs.StringVar(&s.Ready, p+"-ready", "", "regular expression for the load tester's line saying everyone is connected")
	fs.StringVar(&s.Loss, p+"-loss", "", "regular expression whose first group is the loss in percent in the load tester's report")
	fs.StringVar(&s.Wait, p+"-wait", "", "TCP address the server must accept connections on before the load tester starts")
}

func run() error {
	fs := flag.NewFlagSet("sidebyside", flag.ExitOnError)
	var a, b sidebyside.System
	systemFlags(fs, "a", &a)
	systemFlags(fs, "b", &b)
	out := fs.String("out", "", "directory for logs and results (required)")
	shapes := fs.String("shapes", "5x20,10x100,1x300", "meeting shapes, PUBSxSUBS, comma-separated")
	runs := fs.Int("runs", 3, "pairs of runs per shape (orders alternate)")
	window := fs.Duration("window", 30*time.Second, "measurement window")
	settle := fs.Duration("settle", 10*time.Second, "wait after the ready line before the window")
	readyTimeout := fs.Duration("ready-timeout", 5*time.Minute, "longest wait for the ready line")
	rest := fs.Duration("rest", 10*time.Second, "pause between runs")
	lock := fs.String("lock", "/tmp/conclave-heavy.lock", "file to flock for each pair of runs (empty: none)")
	maxLoad := fs.Float64("max-load", 0, "before each pair, wait until the 1-minute load average is at most this (0: do not wait)")
	perLock := fs.Int("pairs-per-lock", 1, "pairs of runs measured under one hold of -lock (the runs of a shape, when others queue for it often)")
	_ = fs.Parse(os.Args[1:])
	if *out == "" || a.Name == "" || b.Name == "" || a.Name == b.Name {
		return fmt.Errorf("need -out and two systems with different -a-name and -b-name")
	}
	var list []sidebyside.Shape
	for _, s := range strings.Split(*shapes, ",") {
		sh, err := sidebyside.ParseShape(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		list = append(list, sh)
	}
	if *runs < 1 {
		return fmt.Errorf("-runs must be at least 1")
	}
	if os.Getenv(nsEnv) != "1" {
		return reexecInNamespace()
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring up lo in the run's namespace: %w", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	r := &sidebyside.Runner{Dir: *out, Log: os.Stderr,
		Timing: sidebyside.Timing{Settle: *settle, Window: *window, ReadyTimeout: *readyTimeout}}
	var results []sidebyside.Result
	save := func() {
		js, _ := json.MarshalIndent(results, "", "  ")
		_ = os.WriteFile(filepath.Join(*out, "results.json"), append(js, '\n'), 0o644)
		f, err := os.Create(filepath.Join(*out, "table.md"))
		if err == nil {
			sidebyside.WriteTable(f, results, a.Name, b.Name)
			f.Close()
		}
	}
	var unlock func()
	var err error
	held := 0 // pairs measured under the current hold
	for _, sh := range list {
		for i := 1; i <= *runs && ctx.Err() == nil; i++ {
			order := []sidebyside.System{a, b}
			if i%2 == 0 {
				order = []sidebyside.System{b, a}
			}
			if unlock == nil {
				if unlock, err = acquire(ctx, *lock, *maxLoad); err != nil {
					return err
				}
			} else {
				waitQuiet(ctx, *maxLoad)
			}
			for k, sys := range order {
				if k > 0 {
					select {
					case <-time.After(*rest):
					case <-ctx.Done():
					}
				}
				results = append(results, r.Measure(ctx, sys, sh, i, k+1))
				save()
			}
			if held++; held >= *perLock || i == *runs {
				unlock()
				unlock, held = nil, 0
			}
			select {
			case <-time.After(*rest):
			case <-ctx.Done():
			}
		}
	}
	sidebyside.WriteTable(os.Stdout, results, a.Name, b.Name)
	return ctx.Err()
}

// acquire takes the heavy-work lock, then waits for a quiet machine.
func acquire(ctx context.Context, path string, maxLoad float64) (func(), error) {
	unlock := func() {}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "%s waiting for %s\n", time.Now().Format("15:04:05"), path)
		// A blocking flock keeps this run's place among the waiters; a
		// signal ends the wait (and the process).
		got := make(chan error, 1)
		go func() { got <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
		select {
		case err := <-got:
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("flock %s: %w", path, err)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		unlock = func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }
	}
	waitQuiet(ctx, maxLoad)
	return unlock, nil
}

// waitQuiet waits until the 1-minute load average is at most maxLoad (0:
// does not wait), three minutes at most: the load is recorded with each
// run anyway.
func waitQuiet(ctx context.Context, maxLoad float64) {
	for deadline := time.Now().Add(3 * time.Minute); maxLoad > 0 && ctx.Err() == nil && time.Now().Before(deadline); {
		var l1 float64
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			fmt.Sscan(string(b), &l1)
		}
		if l1 <= maxLoad {
			break
		}
		fmt.Fprintf(os.Stderr, "%s load average %.2f above %.2f; waiting\n", time.Now().Format("15:04:05"), l1, maxLoad)
		select {
		case <-time.After(15 * time.Second):
		case <-ctx.Done():
		}
	}
}

// reexecInNamespace runs this program again in a new network namespace.
func reexecInNamespace() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the runs happen in a network namespace of their own, which needs root")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start in a new network namespace: %w", err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		os.Exit(ee.ExitCode())
	}
	return err
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
