package netns

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestLink: a server started by Do listens inside Near and a program run
// through the wrapper inside Far reaches it; the cap installs a tbf and
// goes away; the root namespace's addresses do not change; nothing is
// left after the test.
func TestLink(t *testing.T) {
	before := run(t, "ip", "-o", "addr", "show")
	var l *Link
	t.Run("link", func(t *testing.T) {
		l = New(t)
		var ln net.Listener
		l.Do(t, func() {
			var err error
			if ln, err = net.Listen("tcp", l.NearIP+":0"); err != nil {
				t.Fatal(err)
			}
		})
		defer ln.Close()
		if _, err := net.Listen("tcp", l.NearIP+":0"); err == nil {
			t.Fatal("the root namespace has Near's address")
		}
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			got <- c.RemoteAddr().(*net.TCPAddr).IP.String() + " " + string(b)
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		if out, err := exec.Command(l.Wrapper(t, l.Far, "/bin/bash"), "-c", fmt.Sprintf("echo hello >/dev/tcp/%s/%d", l.NearIP, port)).CombinedOutput(); err != nil {
			t.Fatalf("connect from Far: %v\n%s", err, out)
		}
		if s := <-got; s != l.FarIP+" hello\n" {
			t.Fatalf("received %q", s)
		}
		for ns, dev := range map[string]string{l.Near: l.NearIf, l.Far: l.FarIf} {
			if out := l.Output(t, ns, "ip", "-o", "addr", "show", "dev", dev); strings.Contains(out, "inet6") {
				t.Errorf("IPv6 address in %s: %s", ns, out)
			}
		}
		l.Cap(t, "600kbit")
		if out := l.Output(t, l.Near, "tc", "qdisc", "show", "dev", l.NearIf); !strings.Contains(out, "tbf") || !strings.Contains(out, "600Kbit") {
			t.Fatalf("after Cap: %s", out)
		}
		l.Uncap(t)
		if out := l.Output(t, l.Near, "tc", "qdisc", "show", "dev", l.NearIf); strings.Contains(out, "tbf") {
			t.Fatalf("after Uncap: %s", out)
		}
		if after := run(t, "ip", "-o", "addr", "show"); after != before {
			t.Errorf("root namespace addresses changed:\n%s\nthen\n%s", before, after)
		}
	})
	if out := run(t, "ip", "netns", "list"); strings.Contains(out, l.Near) || strings.Contains(out, l.Far) {
		t.Errorf("namespaces left: %s", out)
	}
	if out := run(t, "ip", "-o", "link"); strings.Contains(out, l.NearIf) || strings.Contains(out, l.FarIf) {
		t.Errorf("interfaces left: %s", out)
	}
}

// TestAllowOnlyTCP: with the firewall in Far, a program there reaches the
// allowed TCP port of Near and nothing else: another TCP port and UDP are
// dropped (and counted), the allowed port still answers.
func TestAllowOnlyTCP(t *testing.T) {
	l := New(t)
	var open, closed net.Listener
	var udp net.PacketConn
	l.Do(t, func() {
		var err error
		if open, err = net.Listen("tcp", l.NearIP+":0"); err != nil {
			t.Fatal(err)
		}
		if closed, err = net.Listen("tcp", l.NearIP+":0"); err != nil {
			t.Fatal(err)
		}
		if udp, err = net.ListenPacket("udp", l.NearIP+":0"); err != nil {
			t.Fatal(err)
		}
	})
	defer open.Close()
	defer closed.Close()
	defer udp.Close()
	fw := l.AllowOnlyTCP(t, l.Far, l.NearIP, open.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := open.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "open\n")
			c.Close()
		}
	}()
	sh := func(script string) (string, error) {
		out, err := exec.Command(l.Wrapper(t, l.Far, "/bin/bash"), "-c", script).CombinedOutput()
		return string(out), err
	}
	if out, err := sh(fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && cat <&3", l.NearIP, open.Addr().(*net.TCPAddr).Port)); err != nil || out != "open\n" {
		t.Fatalf("the allowed port from Far: %q, %v", out, err)
	}
	if out, err := sh(fmt.Sprintf("timeout 2 bash -c 'echo x >/dev/tcp/%s/%d'", l.NearIP, closed.Addr().(*net.TCPAddr).Port)); err == nil {
		t.Errorf("another TCP port reached from Far: %q", out)
	}
	if out, err := sh(fmt.Sprintf("echo x >/dev/udp/%s/%d", l.NearIP, udp.LocalAddr().(*net.UDPAddr).Port)); err == nil || !strings.Contains(out, "not permitted") {
		t.Logf("UDP from Far: %q, %v", out, err)
	}
	dropUDP, dropTCP := fw.Dropped(t)
	if dropUDP == 0 || dropTCP == 0 {
		t.Errorf("dropped %d UDP and %d TCP packets, want both counted", dropUDP, dropTCP)
	}
}
