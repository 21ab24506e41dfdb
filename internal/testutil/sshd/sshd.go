// Package sshd runs Debian's OpenSSH server (openssh-server) on a loopback
// port for tests: a fresh ECDSA host key, one authorised client key for
// the user running the test, and the internal SFTP server. StartPassword
// lets that user log in with a password too, StartKeyboardInteractive
// only through keyboard-interactive (PAM). scripts/test installs
// openssh-server (and openssl, which hashes the password); a test fails,
// never skips, without them.
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
	// shadow, for password login, is the copy of /etc/shadow that sshd
	// sees in its own mount namespace; pam, for keyboard-interactive
	// login, its /etc/pam.d/sshd there.
	shadow, pam string
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

// Start runs sshd until the test ends; the user logs in with ClientKey.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "", false)
}

// StartPassword is Start with password login too: the user's password is
// password. sshd checks passwords against /etc/shadow, so it runs in a
// mount namespace of its own in which a copy of that file, giving the
// user this password, is mounted over it; the machine's file is not
// touched. It needs root (to mount), as the test suite runs.
func StartPassword(t testing.TB, password string) *Server {
	t.Helper()
	return start(t, password, false)
}

// StartKeyboardInteractive is StartPassword with the password asked only
// through keyboard-interactive authentication by PAM (pam_unix), as
// servers that log in through PAM offer it; "password" authentication is
// off. The PAM configuration, like the shadow file, is a copy mounted in
// sshd's own mount namespace.
func StartKeyboardInteractive(t testing.TB, password string) *Server {
	t.Helper()
	return start(t, password, true)
}

func start(t testing.TB, password string, kbd bool) *Server {
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
	passwordAuth, kbdAuth, usePAM, rootLogin, shadow, pam := "no", "no", "no", "prohibit-password", "", ""
	if password != "" {
		passwordAuth, rootLogin = "yes", "yes"
		shadow = write("shadow", shadowWith(t, u.Username, password))
	}
	if kbd {
		passwordAuth, kbdAuth, usePAM = "no", "yes", "yes"
		pam = write("pam-sshd", []byte("auth required pam_unix.so nodelay\naccount required pam_unix.so\n"+
			"session required pam_permit.so\npassword required pam_deny.so\n"))
	}
	conf := write("sshd_config", []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication %s
PermitEmptyPasswords no
KbdInteractiveAuthentication %s
UsePAM %s
PermitRootLogin %s
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
`, port, hostKey, filepath.Join(dir, "sshd.pid"), auth, passwordAuth, kbdAuth, usePAM, rootLogin)))
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), User: u.Username, HostKey: hostPub, ClientKey: cliPEM,
		Dir: upload, t: t, conf: conf, shadow: shadow, pam: pam}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// shadowWith returns /etc/shadow with user's password hash replaced by
// one of password (SHA-512 crypt, made by openssl).
func shadowWith(t testing.TB, user, password string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", "passwd", "-6", "-stdin")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hash the test password with openssl (scripts/test installs it): %v", err)
	}
	hash := strings.TrimSpace(string(out))
	cur, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatalf("read /etc/shadow (password login needs root): %v", err)
	}
	var lines []string
	found := false
	for _, l := range strings.Split(strings.TrimRight(string(cur), "\n"), "\n") {
		if f := strings.Split(l, ":"); len(f) >= 2 && f[0] == user {
			// No expiry, no minimum age: the account is usable today.
			l, found = user+":"+hash+":19000:0:99999:7:::", true
		}
		lines = append(lines, l)
	}
	if !found {
		lines = append(lines, user+":"+hash+":19000:0:99999:7:::")
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", s.conf)
	if s.shadow != "" {
		// In a mount namespace of its own (Go makes its mounts private),
		// the copy is mounted over /etc/shadow, then sshd replaces the
		// shell.
		cmd = exec.Command("/bin/sh", "-c", `mount --bind "$1" /etc/shadow &&
			if [ -n "$3" ]; then mount --bind "$3" /etc/pam.d/sshd; fi &&
			exec /usr/sbin/sshd -D -e -f "$2"`, "sh", s.shadow, s.conf, s.pam)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	}
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
