package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTPTarget is where backups are uploaded.
type SFTPTarget struct {
	// Address is host:port.
	Address string
	// User logs in with Password or PrivateKey (OpenSSH or PKCS#8 PEM).
	User, Password string
	PrivateKey     []byte
	// HostKey is the server's public key in authorized_keys format; any
	// other key is refused.
	HostKey string
	// Dir is the remote directory (created if missing).
	Dir string
}

// passwordAnswers answers a keyboard-interactive challenge that asks for
// the password: one hidden prompt. Anything else (a prompt shown as typed,
// a second hidden one such as a one-time code) is not answered with the
// password: the login fails with a message that says why.
func passwordAnswers(password string) ssh.KeyboardInteractiveChallenge {
	return func(_, _ string, questions []string, echos []bool) ([]string, error) {
		if len(questions) == 0 {
			return nil, nil
		}
		if len(questions) != 1 || echos[0] {
			return nil, fmt.Errorf("the SFTP server asks for more than a password (%q): only key and password login are supported", questions)
		}
		return []string{password}, nil
	}
}

// ErrHostKey is returned when the server's host key is not the pinned one.
var ErrHostKey = errors.New("the SFTP server's host key is not the one configured: refusing to connect (if the server's key really changed, check it with its administrator and update the setting)")

// dial opens an SFTP session with the host key pinned.
func (t SFTPTarget) dial() (*sftp.Client, *ssh.Client, error) {
	if t.HostKey == "" {
		return nil, nil, errors.New("no SFTP host key configured: connections are never made without checking the server's key")
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
	if err != nil {
		return nil, nil, fmt.Errorf("the SFTP host key setting is not in authorized_keys format: %w", err)
	}
	var auth []ssh.AuthMethod
	if len(t.PrivateKey) > 0 {
		signer, err := ssh.ParsePrivateKey(t.PrivateKey)
		if err != nil {
			return nil, nil, fmt.Errorf("the SFTP private key does not parse: %w", err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if t.Password != "" {
		// Servers that log in through PAM ask for the password by
		// keyboard-interactive authentication rather than "password".
		auth = append(auth, ssh.Password(t.Password), ssh.KeyboardInteractive(passwordAnswers(t.Password)))
	}
	hostKeyErr := false
	cfg := &ssh.ClientConfig{
		User: t.User,
		Auth: auth,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if key.Type() != want.Type() || !bytes.Equal(key.Marshal(), want.Marshal()) {
				hostKeyErr = true
				return ErrHostKey
			}
			return nil
		},
		HostKeyAlgorithms: []string{want.Type()},
		Timeout:           15 * time.Second,
	}
	if want.Type() == ssh.KeyAlgoRSA {
		cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	conn, err := ssh.Dial("tcp", t.Address, cfg)
	if err != nil {
		if hostKeyErr {
			return nil, nil, ErrHostKey
		}
		return nil, nil, fmt.Errorf("connect to the SFTP server %s: %w", t.Address, err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("start SFTP on %s: %w", t.Address, err)
	}
	return c, conn, nil
}

// Upload stores the backup read from r as name in the remote directory
// (written under a temporary name, then renamed), then removes the oldest
// Conclave backups there beyond keep (0 keeps all).
func (t SFTPTarget) Upload(name string, r io.Reader, keep int) error {
	c, conn, err := t.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	defer c.Close()
	dir := t.Dir
	if dir == "" {
		dir = "."
	}
	if err := c.MkdirAll(dir); err != nil {
		return fmt.Errorf("create the remote directory %s: %w", dir, err)
	}
	tmp := path.Join(dir, "."+name+".part")
	f, err := c.Create(tmp)
	if err != nil {
		return fmt.Errorf("create %s on the SFTP server: %w", tmp, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		c.Remove(tmp)
		return fmt.Errorf("upload %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		c.Remove(tmp)
		return fmt.Errorf("upload %s: %w", name, err)
	}
	dst := path.Join(dir, name)
	if err := c.PosixRename(tmp, dst); err != nil {
		c.Remove(dst)
		if err := c.Rename(tmp, dst); err != nil {
			return fmt.Errorf("rename the upload to %s: %w", dst, err)
		}
	}
	if keep <= 0 {
		return nil
	}
	ents, err := c.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s on the SFTP server: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		if IsBackupName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		if err := c.Remove(path.Join(dir, names[0])); err != nil {
			return fmt.Errorf("remove the old backup %s: %w", names[0], err)
		}
		names = names[1:]
	}
	return nil
}

// List returns the names of the Conclave backups in the remote directory.
func (t SFTPTarget) List() ([]string, error) {
	c, conn, err := t.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer c.Close()
	dir := t.Dir
	if dir == "" {
		dir = "."
	}
	ents, err := c.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if IsBackupName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// FileName is the name of a backup made at t: conclave-backup-<UTC
// time>.cbk, which sorts in time order.
func FileName(t time.Time) string {
	return "conclave-backup-" + t.UTC().Format("20060102T150405Z") + ".cbk"
}

// IsBackupName reports whether name is a FileName.
func IsBackupName(name string) bool {
	if !strings.HasPrefix(name, "conclave-backup-") || !strings.HasSuffix(name, ".cbk") {
		return false
	}
	_, err := time.Parse("20060102T150405Z", strings.TrimSuffix(strings.TrimPrefix(name, "conclave-backup-"), ".cbk"))
	return err == nil
}
