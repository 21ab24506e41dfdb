// Package selfcheck guards the critical configuration of a node: the
// settings file, the TLS and E2EE certificates and keys, the audit key,
// and the binary itself. A manifest lists the SHA-256 of each protected
// file and of the binary, signed with an ECDSA P-256 key of its own
// (sealed under the master key when one is configured); a copy of each
// file as it was when the manifest was signed is kept as the last good
// configuration.
//
// Check compares the disk with the manifest. A protected file changed,
// removed or added outside Conclave is put back as it was (an added one
// removed), and the caller raises the alarm and writes the audit entry.
// When a file cannot be put back — its good copy is missing or does not
// match the manifest, or the manifest's signature does not verify — Check
// reports that the node must not serve. Conclave's own changes (a new
// certificate, a settings change) go through Commit, which signs a new
// manifest.
//
// The binary cannot be put back: at start a different binary (an
// upgrade) is recorded and signed in; while running, a binary file that
// no longer matches the one started is reported.
package selfcheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"conclave/internal/secrets"
)

// Protected are the patterns (path.Match, relative to the data
// directory) of the files the self-check guards: the one list.
var Protected = []string{
	"settings.json",
	"tls/*.crt",
	"tls/*.key",
	"tls/nodes/*/server.crt",
	"tls/nodes/*/server.key",
	"tls/trusted/*.crt",
	"e2ee/*.key",
	"e2ee/*.crt",
	"audit/audit.key",
	secrets.FieldsKeyFile,
	"devca/ca.crt",
	"devca/ca.key",
}

// Dir is the self-check's directory in the data directory.
const Dir = "selfcheck"

const (
	manifestFile = "manifest.json"
	keyFile      = "manifest.key"
	goodDir      = "good"
)

// ErrNoManifest is returned by Open when the data directory has no
// manifest although it is not new.
var ErrNoManifest = errors.New("the self-check manifest is missing")

// Manifest is what is signed.
type Manifest struct {
	Version int               `json:"version"`
	Signed  time.Time         `json:"signed"`
	Files   map[string]string `json:"files"`  // relative path -> SHA-256 hex
	Binary  string            `json:"binary"` // SHA-256 hex of the executable
	// BinaryVersion is the version of the signed binary.
	BinaryVersion string `json:"binaryVersion"`
}

type signed struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature []byte          `json:"signature"` // ASN.1 ECDSA over SHA-256 of Manifest
}

// Checker guards one data directory.
type Checker struct {
	dataDir string
	box     *secrets.Box
	binary  string // path of the executable; "" to skip
	version string
	now     func() time.Time

	mu        sync.Mutex
	key       *ecdsa.PrivateKey
	man       Manifest
	binAtOpen string
}

// Config configures a Checker.
type Config struct {
	DataDir string
	Box     *secrets.Box
	// Binary is the executable's path ("" skips the binary check).
	Binary string
	// Version is the running binary's version.
	Version string
	Now     func() time.Time
	// New says the data directory is new (no database yet): a missing
	// manifest is then created rather than refused.
	New bool
}

// Change is one difference found by Check.
type Change struct {
	Path     string `json:"path"`
	What     string `json:"what"` // "changed", "removed", "added", "binary-changed"
	Restored bool   `json:"restored"`
	Error    string `json:"error,omitempty"`
}

// Result is the outcome of a check.
type Result struct {
	Changes []Change
	// Fatal is set when the configuration could not be restored: the
	// node must not serve.
	Fatal error
}

// BinaryUpgrade is set by Open when the binary differs from the signed
// one (an upgrade): the old and new hashes and versions.
type BinaryUpgrade struct {
	OldHash, NewHash, OldVersion, NewVersion string
}

// Open loads (or on a new data directory creates) the manifest and its
// key and verifies the signature. A binary that differs from the signed
// one is signed in and reported as an upgrade.
func Open(cfg Config) (*Checker, *BinaryUpgrade, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Checker{dataDir: cfg.DataDir, box: cfg.Box, binary: cfg.Binary, version: cfg.Version, now: cfg.Now}
	dir := filepath.Join(cfg.DataDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	if cfg.Binary != "" {
		h, err := hashFile(cfg.Binary)
		if err != nil {
			return nil, nil, fmt.Errorf("self-check: hash the binary: %w", err)
		}
		c.binAtOpen = h
	}
	keyPEM, kerr := cfg.Box.ReadFile(filepath.Join(dir, keyFile))
	_, merr := os.Stat(filepath.Join(dir, manifestFile))
	if errors.Is(kerr, fs.ErrNotExist) && errors.Is(merr, fs.ErrNotExist) {
		if !cfg.New {
			return nil, nil, fmt.Errorf("%w from %s while the data directory is in use: someone may have removed it to slip in a change. Check the TLS, E2EE and settings files, then run 'conclave selfcheck reset' to sign the present configuration", ErrNoManifest, dir)
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		if err := cfg.Box.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, nil, err
		}
		c.key = k
		if err := c.commitLocked(); err != nil {
			return nil, nil, err
		}
		return c, nil, nil
	}
	if kerr != nil {
		return nil, nil, fmt.Errorf("self-check: the manifest key: %w", kerr)
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, nil, errors.New("self-check: the manifest key is damaged")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("self-check: the manifest key is damaged: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("self-check: the manifest key is not an ECDSA key")
	}
	c.key = ek
	man, err := c.readManifest()
	if err != nil {
		return nil, nil, err
	}
	c.man = man
	var up *BinaryUpgrade
	if c.binAtOpen != "" && man.Binary != c.binAtOpen {
		up = &BinaryUpgrade{OldHash: man.Binary, NewHash: c.binAtOpen, OldVersion: man.BinaryVersion, NewVersion: cfg.Version}
		c.man.Binary, c.man.BinaryVersion = c.binAtOpen, cfg.Version
		if err := c.signLocked(); err != nil {
			return nil, nil, err
		}
	}
	return c, up, nil
}

// Reset signs the present configuration as good, whatever the manifest
// said (the operator's decision after a refusal).
func Reset(cfg Config) error {
	dir := filepath.Join(cfg.DataDir, Dir)
	os.Remove(filepath.Join(dir, manifestFile))
	os.Remove(filepath.Join(dir, keyFile))
	os.RemoveAll(filepath.Join(dir, goodDir))
	cfg.New = true
	_, _, err := Open(cfg)
	return err
}

func (c *Checker) readManifest() (Manifest, error) {
	data, err := os.ReadFile(filepath.Join(c.dataDir, Dir, manifestFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("self-check: read the manifest: %w", err)
	}
	var s signed
	if err := json.Unmarshal(data, &s); err != nil {
		return Manifest{}, errors.New("self-check: the manifest is damaged")
	}
	sum := sha256.Sum256(s.Manifest)
	if !ecdsa.VerifyASN1(&c.key.PublicKey, sum[:], s.Signature) {
		return Manifest{}, errors.New("self-check: the manifest's signature does not verify: it was changed outside Conclave")
	}
	var m Manifest
	if err := json.Unmarshal(s.Manifest, &m); err != nil {
		return Manifest{}, errors.New("self-check: the manifest is damaged")
	}
	return m, nil
}

// protected lists the protected files present, sorted.
func (c *Checker) protected() ([]string, error) {
	var out []string
	err := filepath.WalkDir(c.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.dataDir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == Dir || rel == "files" || rel == "backups" || rel == "restore-pending" {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && IsProtected(rel) {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// IsProtected reports whether rel matches Protected.
func IsProtected(rel string) bool {
	for _, p := range Protected {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Commit signs the present configuration as the last good one: Conclave
// calls it after changing a protected file itself.
func (c *Checker) Commit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commitLocked()
}

func (c *Checker) commitLocked() error {
	files, err := c.protected()
	if err != nil {
		return err
	}
	man := Manifest{Version: 1, Files: map[string]string{}, Binary: c.binAtOpen, BinaryVersion: c.version}
	good := filepath.Join(c.dataDir, Dir, goodDir)
	newGood := good + ".new"
	os.RemoveAll(newGood)
	if err := os.MkdirAll(newGood, 0o700); err != nil {
		return err
	}
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(c.dataDir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		man.Files[rel] = hex.EncodeToString(sum[:])
		dst := filepath.Join(newGood, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return err
		}
	}
	os.RemoveAll(good)
	if err := os.Rename(newGood, good); err != nil {
		return err
	}
	c.man = man
	return c.signLocked()
}

func (c *Checker) signLocked() error {
	c.man.Signed = c.now().UTC()
	body, err := json.Marshal(c.man)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, c.key, sum[:])
	if err != nil {
		return err
	}
	data, err := json.Marshal(signed{Manifest: body, Signature: sig})
	if err != nil {
		return err
	}
	return secrets.WriteAtomic(filepath.Join(c.dataDir, Dir, manifestFile), append(data, '\n'), 0o600)
}

// Diff compares the disk with the manifest and changes nothing.
func (c *Checker) Diff() ([]Change, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.readManifest(); err != nil {
		return nil, err
	}
	files, err := c.protected()
	if err != nil {
		return nil, err
	}
	var out []Change
	present := map[string]bool{}
	for _, rel := range files {
		present[rel] = true
		want, known := c.man.Files[rel]
		if !known {
			out = append(out, Change{Path: rel, What: "added"})
			continue
		}
		if got, err := hashFile(filepath.Join(c.dataDir, filepath.FromSlash(rel))); err != nil || got != want {
			out = append(out, Change{Path: rel, What: "changed"})
		}
	}
	for rel := range c.man.Files {
		if !present[rel] {
			out = append(out, Change{Path: rel, What: "removed"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Check compares the disk with the manifest and puts back what changed.
func (c *Checker) Check() Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	var res Result
	// The manifest on disk must still be the one signed.
	disk, err := c.readManifest()
	if err != nil {
		res.Fatal = err
		return res
	}
	// A manifest signed with the key since (by the CLI, which holds it
	// too) is the new reference.
	c.man = disk
	files, err := c.protected()
	if err != nil {
		res.Fatal = fmt.Errorf("self-check: list the protected files: %w", err)
		return res
	}
	present := map[string]bool{}
	for _, rel := range files {
		present[rel] = true
		want, known := c.man.Files[rel]
		if !known {
			ch := Change{Path: rel, What: "added"}
			if err := os.Remove(filepath.Join(c.dataDir, filepath.FromSlash(rel))); err != nil {
				ch.Error = err.Error()
				res.Fatal = fmt.Errorf("self-check: %s was added outside Conclave and cannot be removed: %v", rel, err)
			} else {
				ch.Restored = true
			}
			res.Changes = append(res.Changes, ch)
			continue
		}
		got, err := hashFile(filepath.Join(c.dataDir, filepath.FromSlash(rel)))
		if err == nil && got == want {
			continue
		}
		res.Changes = append(res.Changes, c.restoreLocked(rel, want, "changed", &res))
	}
	for rel, want := range c.man.Files {
		if !present[rel] {
			res.Changes = append(res.Changes, c.restoreLocked(rel, want, "removed", &res))
		}
	}
	if c.binary != "" {
		got, err := hashFile(c.binary)
		if err != nil || got != c.binAtOpen {
			res.Changes = append(res.Changes, Change{Path: c.binary, What: "binary-changed",
				Error: "the executable on disk is not the one running; it cannot be put back: reinstall it, or restart to run the new one"})
		}
	}
	sort.Slice(res.Changes, func(i, j int) bool { return res.Changes[i].Path < res.Changes[j].Path })
	return res
}

// restoreLocked puts a protected file back from its good copy.
func (c *Checker) restoreLocked(rel, want, what string, res *Result) Change {
	ch := Change{Path: rel, What: what}
	data, err := os.ReadFile(filepath.Join(c.dataDir, Dir, goodDir, filepath.FromSlash(rel)))
	if err == nil {
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != want {
			err = errors.New("its last good copy does not match the manifest either")
		}
	}
	if err == nil {
		dst := filepath.Join(c.dataDir, filepath.FromSlash(rel))
		if err = os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
			perm := fs.FileMode(0o600)
			if strings.HasSuffix(rel, ".crt") {
				perm = 0o644
			}
			err = secrets.WriteAtomic(dst, data, perm)
		}
	}
	if err != nil {
		ch.Error = err.Error()
		res.Fatal = fmt.Errorf("self-check: %s was %s outside Conclave and cannot be restored: %v", rel, what, err)
		return ch
	}
	ch.Restored = true
	return ch
}

// Files returns the protected files the manifest lists (for display).
func (c *Checker) Files() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.man.Files))
	for f := range c.man.Files {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Signed returns when the manifest was last signed.
func (c *Checker) Signed() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.man.Signed
}

// SignBlob signs data with the manifest key (a staged restore).
func (c *Checker) SignBlob(data []byte) []byte {
	sum := sha256.Sum256(append([]byte("conclave-selfcheck-blob\n"), data...))
	sig, _ := ecdsa.SignASN1(rand.Reader, c.key, sum[:])
	return sig
}

// VerifyBlob checks a SignBlob signature.
func (c *Checker) VerifyBlob(data, sig []byte) bool {
	sum := sha256.Sum256(append([]byte("conclave-selfcheck-blob\n"), data...))
	return ecdsa.VerifyASN1(&c.key.PublicKey, sum[:], sig)
}

// TreeDigest returns a digest of every file under dir: the sorted list of
// relative paths with the SHA-256 of each.
func TreeDigest(dir string) ([]byte, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		h, err := hashFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, filepath.ToSlash(rel)+" "+h)
		return nil
	})
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return sum[:], err
}
