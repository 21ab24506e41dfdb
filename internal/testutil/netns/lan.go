package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// LAN is a small network of the test's own: one namespace per host,
// each joined by a veth pair to a bridge in a hub namespace, all on one
// /24 in 10.218.0.0/16 that only they see. A cluster test puts each node
// in its own namespace (its own process, started with [LAN.Command]) and
// the browsers in another; killing a node's process leaves the others'
// network as it was.
type LAN struct {
	hub   string
	names map[string]string // host -> namespace
	addrs map[string]string // host -> IPv4 address
	base  netip.Prefix
}

// NewLAN creates the hosts' namespaces and the bridge, and removes them
// when the test ends. It fails the test when it cannot (not root, no ip).
func NewLAN(t testing.TB, hosts ...string) *LAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("netns: network namespaces need root (euid %d): run the suite with scripts/test as root", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netns: ip not found: install iproute2 (scripts/test does)")
	}
	id := fmt.Sprintf("%x", random(t, 3))
	sub := random(t, 1)[0]
	l := &LAN{hub: "conclave-" + id + "-hub", names: map[string]string{}, addrs: map[string]string{},
		base: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 218, sub, 0}), 24)}
	t.Cleanup(func() {
		for _, ns := range l.names {
			run(nil, "ip", "netns", "del", ns)
		}
		run(nil, "ip", "netns", "del", l.hub)
	})
	in := func(ns string, args ...string) []string { return append([]string{"ip", "netns", "exec", ns}, args...) }
	run(t, "ip", "netns", "add", l.hub)
	run(t, in(l.hub, "ip", "link", "add", "br0", "type", "bridge")...)
	run(t, in(l.hub, "ip", "link", "set", "br0", "up")...)
	run(t, in(l.hub, "ip", "link", "set", "lo", "up")...)
	for i, h := range hosts {
		ns := fmt.Sprintf("conclave-%s-%d", id, i)
		addr := fmt.Sprintf("10.218.%d.%d", sub, i+1)
		l.names[h], l.addrs[h] = ns, addr
		near, far := fmt.Sprintf("cl%s%dh", id, i), fmt.Sprintf("cl%s%dn", id, i)
		steps := [][]string{
			{"ip", "netns", "add", ns},
			{"ip", "link", "add", far, "type", "veth", "peer", "name", near},
			{"ip", "link", "set", near, "netns", l.hub},
			{"ip", "link", "set", far, "netns", ns},
			in(l.hub, "ip", "link", "set", near, "master", "br0"),
			in(l.hub, "ip", "link", "set", near, "up"),
			// No IPv6 link-local addresses (see New).
			in(ns, "ip", "link", "set", "dev", far, "addrgenmode", "none"),
			in(ns, "ip", "addr", "add", addr+"/24", "dev", far),
			in(ns, "ip", "link", "set", "lo", "up"),
			in(ns, "ip", "link", "set", far, "up"),
		}
		for _, s := range steps {
			run(t, s...)
		}
	}
	return l
}

// Addr is host's address.
func (l *LAN) Addr(host string) string { return l.addrs[host] }

// NS is host's namespace.
func (l *LAN) NS(host string) string { return l.names[host] }

// Owns reports whether addr is one of the LAN's, or loopback.
func (l *LAN) Owns(addr netip.Addr) bool {
	addr = addr.Unmap()
	return addr.IsLoopback() || l.base.Contains(addr)
}

// Command is a command that runs program inside host's namespace.
func (l *LAN) Command(host, program string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.names[host], program}, args...)...)
}

// Wrapper writes an executable script that runs program inside host's
// namespace (see Link.Wrapper) and returns its path.
func (l *LAN) Wrapper(t testing.TB, host, program string) string {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("netns: ip not found: %v", err)
	}
	path := filepath.Join(t.TempDir(), "in-"+host)
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", ip, l.names[host], shellQuote(program))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatalf("netns: write wrapper: %v", err)
	}
	return path
}

// DialContext dials from inside host's namespace: the connection's socket
// belongs there (a loopback address there is host's own).
func (l *LAN) DialContext(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		done := make(chan result, 1)
		go func() {
			// The thread is never unlocked: it ends with this goroutine
			// rather than go back to the scheduler inside the namespace.
			runtime.LockOSThread()
			f, err := os.Open(filepath.Join("/run/netns", l.names[host]))
			if err != nil {
				done <- result{err: err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				done <- result{err: err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			done <- result{c, err}
		}()
		r := <-done
		return r.c, r.err
	}
}
