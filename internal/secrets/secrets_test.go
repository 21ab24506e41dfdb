package secrets

import (
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
