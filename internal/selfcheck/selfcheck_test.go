package selfcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func setup(t *testing.T) (string, *Checker) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"settings.json":   `{"a":1}`,
		"tls/ca.crt":      "CA",
		"tls/ca.key":      "CAKEY",
		"e2ee/org-ca.key": "ORG",
		"e2ee/log.db":     "not protected",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(data), 0o600)
	}
	bin := filepath.Join(dir, "conclave-bin")
	os.WriteFile(bin, []byte("binary v1"), 0o700)
	c, up, err := Open(Config{DataDir: dir, Binary: bin, Version: "v1", New: true})
	if err != nil || up != nil {
		t.Fatalf("Open = %v, %v", up, err)
	}
	return dir, c
}

func TestRestoresChangedRemovedAdded(t *testing.T) {
	dir, c := setup(t)
	if res := c.Check(); len(res.Changes) != 0 || res.Fatal != nil {
		t.Fatalf("clean check: %+v", res)
	}
	os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"a":2}`), 0o600)
	os.Remove(filepath.Join(dir, "e2ee/org-ca.key"))
	os.WriteFile(filepath.Join(dir, "tls/evil.crt"), []byte("EVIL"), 0o644)
	os.WriteFile(filepath.Join(dir, "e2ee/log.db"), []byte("changed by its owner"), 0o600)
	res := c.Check()
	if res.Fatal != nil || len(res.Changes) != 3 {
		t.Fatalf("check: %+v", res)
	}
	for _, ch := range res.Changes {
		if !ch.Restored {
			t.Errorf("%+v not restored", ch)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "settings.json")); string(b) != `{"a":1}` {
		t.Fatalf("settings = %s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "e2ee/org-ca.key")); string(b) != "ORG" {
		t.Fatalf("org key = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "tls/evil.crt")); err == nil {
		t.Fatal("the added certificate stayed")
	}
	// Conclave's own change, committed, is kept.
	os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"a":3}`), 0o600)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if res := c.Check(); len(res.Changes) != 0 {
		t.Fatalf("after commit: %+v", res)
	}
}

func TestRefusesWhatCannotBeRestored(t *testing.T) {
	dir, c := setup(t)
	os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"a":2}`), 0o600)
	os.WriteFile(filepath.Join(dir, Dir, goodDir, "settings.json"), []byte(`{"a":2}`), 0o600)
	if res := c.Check(); res.Fatal == nil || !strings.Contains(res.Fatal.Error(), "cannot be restored") {
		t.Fatalf("check with a tampered good copy: %+v", res)
	}
	// A forged manifest does not verify.
	_, c2 := setup(t)
	dir2 := c2.dataDir
	m, _ := os.ReadFile(filepath.Join(dir2, Dir, manifestFile))
	os.WriteFile(filepath.Join(dir2, Dir, manifestFile), []byte(strings.Replace(string(m), `"version"`, `"version" `, 1)), 0o600)
	m2 := strings.Replace(string(m), "settings.json", "settings.jsoN", 1)
	os.WriteFile(filepath.Join(dir2, Dir, manifestFile), []byte(m2), 0o600)
	if res := c2.Check(); res.Fatal == nil {
		t.Fatalf("forged manifest accepted: %+v", res)
	}
	if _, _, err := Open(Config{DataDir: dir2}); err == nil {
		t.Fatal("Open accepted a forged manifest")
	}
	// A removed manifest on a used data directory is refused.
	os.RemoveAll(filepath.Join(dir2, Dir))
	if _, _, err := Open(Config{DataDir: dir2}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Open without manifest: %v", err)
	}
}

func TestBinary(t *testing.T) {
	dir, c := setup(t)
	bin := filepath.Join(dir, "conclave-bin")
	os.WriteFile(bin, []byte("binary v2"), 0o700)
	res := c.Check()
	if len(res.Changes) != 1 || res.Changes[0].What != "binary-changed" {
		t.Fatalf("check after replacing the binary: %+v", res)
	}
	// At the next start it is an upgrade, signed in.
	c2, up, err := Open(Config{DataDir: dir, Binary: bin, Version: "v2"})
	if err != nil || up == nil || up.OldVersion != "v1" || up.NewVersion != "v2" {
		t.Fatalf("Open after upgrade: %+v, %v", up, err)
	}
	if res := c2.Check(); len(res.Changes) != 0 {
		t.Fatalf("check after upgrade: %+v", res)
	}
}
