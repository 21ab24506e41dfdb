package secrets

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSources(t *testing.T) {
	data := t.TempDir()
	keyText := hex.EncodeToString([]byte(strings.Repeat("k", 32)))
	b, err := Open(data, Source{Key: keyText})
	if err != nil || b == nil {
		t.Fatalf("Open with an environment key: %v", err)
	}
	p := filepath.Join(data, "tls", "ca.key")
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := b.WriteFile(p, []byte("SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if !Sealed(raw) || strings.Contains(string(raw), "SECRET") {
		t.Fatalf("file on disk: %q", raw)
	}
	// The same key from a file outside the data directory opens it.
	kf := filepath.Join(t.TempDir(), "master.key")
	os.WriteFile(kf, []byte(keyText+"\n"), 0o600)
	b2, err := Open(data, Source{KeyFile: kf})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b2.ReadFile(p); err != nil || string(got) != "SECRET" {
		t.Fatalf("read back: %q, %v", got, err)
	}
	// A key file inside the data directory is refused.
	inside := filepath.Join(data, "master.key")
	os.WriteFile(inside, []byte(keyText), 0o600)
	if _, err := Open(data, Source{KeyFile: inside}); err == nil {
		t.Fatal("a key file inside the data directory was accepted")
	}
	// Another key is refused at once, clearly.
	other := hex.EncodeToString([]byte(strings.Repeat("x", 32)))
	if _, err := Open(data, Source{Key: other}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	// No key on a sealed directory: refused.
	if _, err := Open(data, Source{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("no key: %v", err)
	}
	// A sealed file moved to another name does not open.
	q := filepath.Join(data, "tls", "server.key")
	os.WriteFile(q, raw, 0o600)
	if _, err := b.ReadFile(q); err == nil {
		t.Fatal("a renamed sealed file opened")
	}
}

func TestPassphraseAndSealDir(t *testing.T) {
	data := t.TempDir()
	if _, err := Open(data, Source{Passphrase: "short"}); err == nil {
		t.Fatal("a short passphrase was accepted")
	}
	b, err := Open(data, Source{Passphrase: "a long enough passphrase"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"e2ee/org-ca.key", "tls/server.crt", "e2ee/notes.txt"} {
		p := filepath.Join(data, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\nclear"), 0o600)
	}
	sealed, err := b.SealDir(data)
	if err != nil || len(sealed) != 1 || sealed[0] != "e2ee/org-ca.key" {
		t.Fatalf("SealDir = %v, %v", sealed, err)
	}
	if _, err := Open(data, Source{Passphrase: "another long passphrase"}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	b2, _ := Open(data, Source{Passphrase: "a long enough passphrase"})
	if got, err := b2.ReadFile(filepath.Join(data, "e2ee/org-ca.key")); err != nil || !strings.HasSuffix(string(got), "clear") {
		t.Fatalf("reopened: %q %v", got, err)
	}
}

// Fields seal values under a key of the data directory, itself sealed
// by the master key; a value sealed for one field does not open as
// another, a clear value (from before) reads as it is, and a node with
// another fields key says what to do.
func TestFields(t *testing.T) {
	dir := t.TempDir()
	box, err := New(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenFields(dir, box)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, FieldsKeyFile)); !Sealed(raw) {
		t.Fatalf("the fields key is not sealed by the master key: %q", raw)
	}
	v := f.Seal("authn.ldap.bindPassword", "reader-Pw-1")
	if !FieldSealed(v) || strings.Contains(v, "reader") {
		t.Fatalf("sealed value %q", v)
	}
	if got, err := f.Open("authn.ldap.bindPassword", v); err != nil || got != "reader-Pw-1" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := f.Open("authn.oidc.clientSecret", v); err == nil {
		t.Fatal("a value sealed for one field opened as another")
	}
	if got, err := f.Open("x", "clear-from-before"); err != nil || got != "clear-from-before" {
		t.Fatalf("a clear value: %q, %v", got, err)
	}
	if f.Seal("x", "") != "" {
		t.Fatal("an empty secret was sealed")
	}
	again, err := OpenFields(dir, box)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open("authn.ldap.bindPassword", v); err != nil || got != "reader-Pw-1" {
		t.Fatalf("after reopening: %q, %v", got, err)
	}
	other, err := OpenFields(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open("authn.ldap.bindPassword", v); err == nil || !strings.Contains(err.Error(), "enter the secret again") {
		t.Fatalf("another node's key: %v", err)
	}
}
