// Package sshd runs Debian's OpenSSH server (openssh-server) on a loopback
// port for tests: a fresh ECDSA host key, one authorised client key for
// the user running the test, and the internal SFTP server. scripts/test
// installs openssh-server; a test fails, never skips, without it.
package sshd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Server is a running sshd.
type Server struct {
	// Addr is host:port.
	Addr string
	// User is the login name (the test's own user).
	User string
	// HostKey is the server's public key in authorized_keys format.
	HostKey string
	// ClientKey is the authorised client's private key (OpenSSH PEM).
	ClientKey []byte
	// Dir is a directory the user may write, for uploads.
	Dir string

	t    testing.TB
	cmd  *exec.Cmd
	conf string
}

// NewKeyPair returns an ECDSA P-256 key as OpenSSH PEM and its public key
// in authorized_keys format.
func NewKeyPair(t testing.TB) ([]byte, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// Start runs sshd until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("sshd is not installed (scripts/test installs openssh-server): %v", err)
	}
	// OpenSSH refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create /run/sshd: %v", err)
	}
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	hostPEM, hostPub := NewKeyPair(t)
	cliPEM, cliPub := NewKeyPair(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hostKey := write("host_key", hostPEM)
	auth := write("authorized_keys", []byte(cliPub+"\n"))
	upload := filepath.Join(dir, "upload")
	if err := os.MkdirAll(upload, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := write("sshd_config", []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
`, port, hostKey, filepath.Join(dir, "sshd.pid"), auth)))
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), User: u.Username, HostKey: hostPub, ClientKey: cliPEM,
		Dir: upload, t: t, conf: conf}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", s.conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			// Wait for the banner: sshd is ready.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 4)
			_, err = c.Read(b)
			c.Close()
			if err == nil && string(b) == "SSH-" {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sshd did not start on %s: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends sshd.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	s.cmd = nil
}
