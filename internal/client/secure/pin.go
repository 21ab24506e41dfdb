package secure

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"conclave/internal/e2ee"
)

// Org is an organisation's E2EE CA as GET /api/e2ee/org gives it.
type Org struct {
	ID        string
	Name      string
	PublicKey []byte // 65-byte uncompressed P-256 point
	LogKey    string // the transparency log's verifier key
}

// Key parses the organisation's public key.
func (o Org) Key() (*ecdsa.PublicKey, error) { return e2ee.ParsePublicKey(o.PublicKey) }

// PinStatus says how a server's organisation key compares with the pin.
type PinStatus int

// Pin results.
const (
	// PinNew: nothing was pinned for this server; the key is now.
	PinNew PinStatus = iota + 1
	// PinMatch: the server's key is the pinned one.
	PinMatch
	// PinChanged: the server's key differs from the pinned one. This is
	// an alarm: the pin is kept, and nobody is shown as certified.
	PinChanged
	// PinWithheld: the server publishes no key where one is pinned. An
	// alarm too: without it the client could not check the log, so a
	// server must not be able to switch the checks off silently.
	PinWithheld
)

// The pin file ("known-orgs", next to the device key) has one line per
// server: "<host[:port]> <org id> <base64 public key> <name>", like SSH's
// known_hosts. Lines starting with # are comments.

// CheckPin compares the organisation a server published with the pin for
// that server in the file at path, pinning it on first use. It returns the
// pinned organisation (the old one when the key changed).
func CheckPin(path, server string, got Org) (Org, PinStatus, error) {
	if strings.ContainsAny(server, " \t\n") || strings.ContainsAny(got.ID, " \t\n") || strings.ContainsAny(got.Name, "\n") {
		return Org{}, 0, errors.New("server or organisation name with white space")
	}
	if _, err := got.Key(); err != nil {
		return Org{}, 0, fmt.Errorf("the server's organisation key: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Org{}, 0, fmt.Errorf("read the organisation pins: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 {
			return Org{}, 0, fmt.Errorf("%s:%d: damaged pin line", path, n)
		}
		if f[0] != server {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(f[2])
		if err != nil {
			return Org{}, 0, fmt.Errorf("%s:%d: damaged pinned key", path, n)
		}
		pinned := Org{ID: f[1], PublicKey: key}
		if len(f) == 4 {
			pinned.Name = f[3]
		}
		if bytes.Equal(key, got.PublicKey) {
			return pinned, PinMatch, nil
		}
		return pinned, PinChanged, nil
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	line := fmt.Sprintf("%s %s %s %s\n", server, got.ID, base64.StdEncoding.EncodeToString(got.PublicKey), got.Name)
	if err := writeFileAtomic(path, append(data, line...)); err != nil {
		return Org{}, 0, fmt.Errorf("write the organisation pins: %w", err)
	}
	return got, PinNew, nil
}

// CheckLogPin compares a server's log verifier key with the pin for that
// server in the file at path ("known-logs": one "<host[:port]> <verifier
// key>" line per server), pinning it on first use. With no key (vkey ""),
// it returns the pin and PinWithheld, or an error when nothing is pinned.
func CheckLogPin(path, server, vkey string) (string, PinStatus, error) {
	if strings.ContainsAny(server, " \t\n") || strings.ContainsAny(vkey, " \t\n") {
		return "", 0, errors.New("server or log key with white space")
	}
	if vkey != "" {
		if _, err := e2ee.LogVerifier(vkey); err != nil {
			return "", 0, fmt.Errorf("the server's log key: %w", err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("read the log pins: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 2 {
			return "", 0, fmt.Errorf("%s:%d: damaged pin line", path, n)
		}
		if f[0] != server {
			continue
		}
		if f[1] == vkey {
			return f[1], PinMatch, nil
		}
		if vkey == "" {
			return f[1], PinWithheld, nil
		}
		return f[1], PinChanged, nil
	}
	if vkey == "" {
		return "", 0, errors.New("the server publishes no log key")
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	if err := writeFileAtomic(path, append(data, fmt.Sprintf("%s %s\n", server, vkey)...)); err != nil {
		return "", 0, fmt.Errorf("write the log pins: %w", err)
	}
	return vkey, PinNew, nil
}
