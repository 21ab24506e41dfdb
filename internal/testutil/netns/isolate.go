package netns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// isolatedEnv marks the copy of a test binary that Isolate started in a
// network namespace of its own.
const isolatedEnv = "CONCLAVE_TEST_NETNS_ISOLATED"

// Isolate runs the tests of a package inside a new network namespace that
// has only the loopback interface. Call it from TestMain:
//
//	func TestMain(m *testing.M) { netns.Isolate(m) }
//
// The test binary starts itself again with CLONE_NEWNET, brings lo up in
// the new namespace and runs the tests there; the first process only
// waits for it, passes signals on and exits with its status. Everything
// the tests start — servers, browsers, native clients — then sees only
// 127.0.0.1 and ::1: a browser cannot gather a candidate on the machine's
// own interfaces, so all of its ICE traffic stays on loopback (Firefox
// ignores media.peerconnection.ice.force_interface, so nothing else keeps
// it there). Namespaces the tests create with [New] still work inside.
//
// It needs root (CAP_SYS_ADMIN); without it the tests fail, they are
// never run outside the namespace: scripts/test runs as root.
//
// after run in the namespace once the tests are done, before the process
// exits (to stop a server the tests shared, such as pgtest.Stop).
func Isolate(m *testing.M, after ...func()) {
	if os.Getenv(isolatedEnv) == "1" {
		if err := loopbackUp(); err != nil {
			fmt.Fprintf(os.Stderr, "netns: bring up lo in the test namespace: %v\n", err)
			os.Exit(2)
		}
		code := m.Run()
		for _, f := range after {
			f()
		}
		os.Exit(code)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "netns: these tests run in a loopback-only network namespace, which needs root (euid %d): run them with scripts/test as root\n", os.Geteuid())
		os.Exit(2)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns: find the test binary: %v\n", err)
		os.Exit(2)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), isolatedEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "netns: start the tests in a new network namespace: %v\n", err)
		os.Exit(2)
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if err == nil {
		os.Exit(0)
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() >= 0 {
		os.Exit(ee.ExitCode())
	}
	fmt.Fprintf(os.Stderr, "netns: the tests in the loopback-only namespace: %v\n", err)
	os.Exit(2)
}

// loopbackUp sets the IFF_UP flag of lo in the current namespace.
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

// LoopbackOnly reports whether the current network namespace has no
// interface but loopback ones, as inside [Isolate]: then nothing a test
// starts can reach or gather an address outside 127.0.0.0/8 and ::1.
func LoopbackOnly() (bool, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return false, err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return false, nil
		}
	}
	return true, nil
}

// Owns reports whether addr is one of the test's own: loopback, or an
// address of the link between Near and Far.
func (l *Link) Owns(addr netip.Addr) bool {
	if addr = addr.Unmap(); addr.IsLoopback() {
		return true
	}
	near, err := netip.ParseAddr(l.NearIP)
	if err != nil {
		return false
	}
	return netip.PrefixFrom(near, 30).Masked().Contains(addr)
}
