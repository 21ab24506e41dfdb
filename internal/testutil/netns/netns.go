// Package netns gives a test two network namespaces joined by a veth
// pair: a small network of its own, whose link from one side (Near) to
// the other (Far) the test caps with a token bucket filter (tbf) and lifts
// again. The test's server listens inside Near (Do runs code there, so
// that the sockets it opens belong to Near), and browsers run inside
// either namespace through a wrapper script (ip netns exec): a browser in
// Far receives the server's media through the capped link.
//
// Nothing is added to the root namespace's addresses: a browser that sees
// an address appear or disappear aborts its page loads
// (net::ERR_NETWORK_CHANGED), and the root namespace's browsers may
// belong to other tests running at the same time.
//
// It needs root and the iproute2 tools (ip, tc); without them the test
// fails, it is never skipped: scripts/test runs as root and installs
// iproute2. The kernel needs veth and the tbf qdisc (netem is not used).
//
// Each link has unique names, so that tests may run in parallel, and a
// /30 in 10.213.0.0/16 that only its namespaces see; everything is removed
// when the test ends, whether it passed or not.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"golang.org/x/sys/unix"
)

// Link is two namespaces and the veth pair that joins them.
type Link struct {
	// Near and Far are the namespaces' names (ip netns).
	Near, Far string
	// NearIf and NearIP are Near's end of the pair, FarIf and FarIP
	// Far's. Far's default route goes to NearIP.
	NearIf, NearIP string
	FarIf, FarIP   string
}

// New creates the namespaces and the veth pair between them, and removes
// them when the test ends. It fails the test when it cannot: not root,
// no ip or tc command, no veth.
func New(t testing.TB) *Link {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("netns: network namespaces need root (euid %d): run the suite with scripts/test as root", os.Geteuid())
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("netns: %s not found: install iproute2 (scripts/test does)", tool)
		}
	}
	id := hex.EncodeToString(random(t, 3))
	b := random(t, 2)
	base := fmt.Sprintf("10.213.%d.", b[0])
	l := &Link{
		Near: "conclave-" + id + "-near", Far: "conclave-" + id + "-far",
		NearIf: "cnc" + id + "n", FarIf: "cnc" + id + "f",
		NearIP: base + fmt.Sprint(b[1]&^3+1), FarIP: base + fmt.Sprint(b[1]&^3+2),
	}
	t.Cleanup(func() {
		// Deleting a namespace deletes its end of the pair, and so the
		// pair; the ends are deleted from the root namespace in case
		// they never left it.
		run(nil, "ip", "netns", "del", l.Near)
		run(nil, "ip", "netns", "del", l.Far)
		run(nil, "ip", "link", "del", l.NearIf)
		run(nil, "ip", "link", "del", l.FarIf)
	})
	in := func(ns string, args ...string) []string {
		return append([]string{"ip", "netns", "exec", ns}, args...)
	}
	// No IPv6 link-local addresses either (addrgenmode none): they would
	// appear a second after the links come up (duplicate address
	// detection), to the surprise of the browsers inside.
	steps := [][]string{
		{"ip", "netns", "add", l.Near},
		{"ip", "netns", "add", l.Far},
		{"ip", "link", "add", l.NearIf, "type", "veth", "peer", "name", l.FarIf},
		{"ip", "link", "set", l.NearIf, "netns", l.Near},
		{"ip", "link", "set", l.FarIf, "netns", l.Far},
		in(l.Near, "ip", "link", "set", "dev", l.NearIf, "addrgenmode", "none"),
		in(l.Far, "ip", "link", "set", "dev", l.FarIf, "addrgenmode", "none"),
		in(l.Near, "ip", "addr", "add", l.NearIP+"/30", "dev", l.NearIf),
		in(l.Far, "ip", "addr", "add", l.FarIP+"/30", "dev", l.FarIf),
		in(l.Near, "ip", "link", "set", "lo", "up"),
		in(l.Far, "ip", "link", "set", "lo", "up"),
		in(l.Near, "ip", "link", "set", l.NearIf, "up"),
		in(l.Far, "ip", "link", "set", l.FarIf, "up"),
		in(l.Far, "ip", "route", "add", "default", "via", l.NearIP),
	}
	for _, s := range steps {
		run(t, s...)
	}
	return l
}

// Cap limits what Near sends to Far (the egress of NearIf) to rate, e.g.
// "600kbit", with a token bucket filter of 16 kbit of burst and 50 ms of
// queue: packets beyond that are dropped, as on a slow access link.
func (l *Link) Cap(t testing.TB, rate string) {
	t.Helper()
	run(t, "ip", "netns", "exec", l.Near, "tc", "qdisc", "replace", "dev", l.NearIf, "root", "tbf",
		"rate", rate, "burst", "16kbit", "latency", "50ms")
}

// Uncap removes the cap.
func (l *Link) Uncap(t testing.TB) {
	t.Helper()
	run(t, "ip", "netns", "exec", l.Near, "tc", "qdisc", "del", "dev", l.NearIf, "root")
}

// Do runs fn inside Near, on an operating system thread of its own:
// sockets that fn opens belong to Near, and keep doing so when used from
// other goroutines. The thread is not reused afterwards. fn may fail the
// test (t.Fatal); Do then fails it too.
func (l *Link) Do(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		finished := false
		defer func() {
			if !finished {
				done <- fmt.Errorf("netns: the function run in %s failed the test", l.Near)
			}
		}()
		// Never unlocked: the thread ends with this goroutine, rather
		// than go back to the scheduler inside Near.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", l.Near))
		if err != nil {
			finished = true
			done <- fmt.Errorf("netns: open %s: %w", l.Near, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			finished = true
			done <- fmt.Errorf("netns: enter %s: %w", l.Near, err)
			return
		}
		fn()
		finished = true
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// ListenUDP opens a UDP socket inside Near, like net.ListenUDP, from a
// thread of its own: a server that Do started there opens its later
// sockets (TURN relays) with it. It has net.ListenUDP's signature, to be
// given where a server takes one.
func (l *Link) ListenUDP(network string, laddr *net.UDPAddr) (*net.UDPConn, error) {
	type result struct {
		c   *net.UDPConn
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", l.Near))
		if err != nil {
			done <- result{nil, fmt.Errorf("netns: open %s: %w", l.Near, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("netns: enter %s: %w", l.Near, err)}
			return
		}
		c, err := net.ListenUDP(network, laddr)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// Net returns a network stack for Pion (ICE) that lists Near's
// interfaces: a server started by Do announces their addresses, though
// its peer connections are created on threads outside Near.
func (l *Link) Net(t testing.TB) transport.Net {
	t.Helper()
	var n *stdnet.Net
	l.Do(t, func() {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			t.Fatalf("netns: list %s's interfaces: %v", l.Near, err)
		}
	})
	return n
}

// Wrapper writes an executable script that runs program, with the
// script's arguments, inside namespace ns (Near or Far), and returns its
// path (in a directory removed when the test ends). The script replaces
// itself with the program (exec), so that the program inherits the
// caller's file descriptors: chromedp talks to chromium over descriptors
// 3 and 4.
func (l *Link) Wrapper(t testing.TB, ns, program string) string {
	t.Helper()
	if ns != l.Near && ns != l.Far {
		t.Fatalf("netns: %q is neither %s nor %s", ns, l.Near, l.Far)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("netns: ip not found: %v", err)
	}
	path := filepath.Join(t.TempDir(), "in-"+ns)
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", ip, ns, shellQuote(program))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatalf("netns: write wrapper: %v", err)
	}
	return path
}

// Output runs a command inside namespace ns and returns its combined
// output, failing the test if it fails.
func (l *Link) Output(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// run runs a command; with t set, a failure fails the test.
func run(t testing.TB, args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil && t != nil {
		t.Helper()
		t.Fatalf("netns: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("netns: random: %v", err)
	}
	return b
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
