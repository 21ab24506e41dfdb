package secure

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/e2ee"
)

// TestDeviceKeyFile: an encrypted key file opens with its passphrase
// only, its header cannot be altered, a clear file needs an explicit
// allowance, and new files use 600,000 PBKDF2 iterations.
func TestDeviceKeyFile(t *testing.T) {
	k, _ := e2ee.GenerateDeviceKey()
	pass := func(p string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(p), nil } }
	data, err := encryptDeviceKey(k, []byte("correct horse"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDeviceKey(data, pass("correct horse"), false)
	if err != nil || !got.Equal(k) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseDeviceKey(data, pass("wrong"), false); !errors.Is(err, ErrPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
	tampered := bytes.Replace(data, []byte("Iterations: 1000"), []byte("Iterations: 1001"), 1)
	if _, err := ParseDeviceKey(tampered, pass("correct horse"), false); !errors.Is(err, ErrPassphrase) {
		t.Errorf("altered header: %v", err)
	}
	if _, err := EncryptDeviceKey(k, nil); err == nil {
		t.Error("empty passphrase accepted")
	}

	if DeviceKeyIterations < 600_000 || newKeyIterations != DeviceKeyIterations {
		t.Fatalf("new key files use %d PBKDF2 iterations", newKeyIterations)
	}
	newKeyIterations = 1000
	defer func() { newKeyIterations = DeviceKeyIterations }()
	dir := t.TempDir()
	path := filepath.Join(dir, "device.key")
	asked := 0
	ask := func(bool) ([]byte, error) { asked++; return []byte("pass phrase"), nil }
	k1, created, err := LoadOrCreateDeviceKey(path, ask, false)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	raw, _ := os.ReadFile(path)
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != encryptedKeyType || b.Headers["Iterations"] != "1000" {
		t.Fatalf("new key file: %v", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode())
	}
	k2, created, err := LoadOrCreateDeviceKey(path, ask, false)
	if err != nil || created || !k2.Equal(k1) || asked != 2 {
		t.Fatalf("load: %v %v, asked %d", created, err, asked)
	}

	plainPath := filepath.Join(dir, "plain.key")
	if _, _, err := LoadOrCreateDeviceKey(plainPath, nil, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateDeviceKey(plainPath, ask, false); !errors.Is(err, ErrPlainKey) {
		t.Errorf("clear key without allowance: %v", err)
	}
}

// TestPin: the first organisation key is pinned; the same key matches; a
// different one is reported changed and does not replace the pin.
func TestPin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known-orgs")
	ca1, _ := e2ee.GenerateDeviceKey()
	ca2, _ := e2ee.GenerateDeviceKey()
	p1, _ := e2ee.MarshalPublicKey(&ca1.PublicKey)
	p2, _ := e2ee.MarshalPublicKey(&ca2.PublicKey)
	org := Org{ID: "acme", Name: "Acme Corp", PublicKey: p1}
	if _, st, err := CheckPin(path, "meet.acme:443", org); err != nil || st != PinNew {
		t.Fatalf("first use: %v %v", st, err)
	}
	if o, st, err := CheckPin(path, "meet.acme:443", org); err != nil || st != PinMatch || o.Name != "Acme Corp" {
		t.Fatalf("same key: %v %v %+v", st, err, o)
	}
	if _, st, _ := CheckPin(path, "other:443", Org{ID: "x", PublicKey: p2}); st != PinNew {
		t.Fatalf("another server: %v", st)
	}
	o, st, err := CheckPin(path, "meet.acme:443", Org{ID: "acme", Name: "Acme Corp", PublicKey: p2})
	if err != nil || st != PinChanged || !bytes.Equal(o.PublicKey, p1) {
		t.Fatalf("changed key: %v %v", st, err)
	}
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), "\n") != 2 {
		t.Errorf("pin file:\n%s", data)
	}
}
