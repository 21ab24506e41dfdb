// Package secrets keeps the private keys of the data directory encrypted
// at rest under a master key that does not live there: a key file kept
// elsewhere (--secrets-key-file), a key in the environment
// (CONCLAVE_SECRETS_KEY), or a passphrase typed at start
// (--secrets-passphrase), stretched with Argon2id. docs/admin.md
// ("Secrets at rest") weighs the three.
//
// A Box seals files with AES-256-GCM. A sealed file starts with the line
// "CONCLAVE-SEALED-1" followed by base64 of nonce || ciphertext, the file's
// base name being the additional data (a sealed key moved to another name
// does not open). A nil *Box is the clear mode: files are written as they
// are, and reading a sealed file fails with ErrLocked.
//
// Reading a clear file through a Box works (it is how a data directory
// written before the master key was configured goes on working); Seal
// rewrites such files sealed.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/argon2"
)

// magic starts every sealed file.
const magic = "CONCLAVE-SEALED-1\n"

// KeySize is the master key's size in bytes.
const KeySize = 32

// CheckFile is the name, in the data directory, of the file that lets a
// wrong master key be told apart from damaged files: an HMAC of a fixed
// text under the key.
const CheckFile = "secrets.check"

// SaltFile holds the Argon2id salt of the passphrase mode, in the data
// directory.
const SaltFile = "secrets.salt"

// ErrLocked is returned for a sealed file read without a master key.
var ErrLocked = errors.New("the file is encrypted with the master key, but no master key was given (set --secrets-key-file, CONCLAVE_SECRETS_KEY or --secrets-passphrase)")

// ErrWrongKey is returned when the master key is not the one the data
// directory was sealed with.
var ErrWrongKey = errors.New("the master key is not the one this data directory's secrets were encrypted with")

// Box seals and opens files under a master key.
type Box struct {
	aead  cipher.AEAD
	check []byte
}

// New returns a Box for a 32-byte master key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("the master key must be %d bytes, not %d", KeySize, len(key))
	}
	aead, err := NewAEAD(key)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("conclave secrets check v1"))
	return &Box{aead: aead, check: m.Sum(nil)}, nil
}

// ParseKey reads a master key written as 64 hexadecimal digits or as
// base64 of 32 bytes (surrounding space ignored).
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if b, err := hex.DecodeString(text); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, errors.New("a master key is 32 bytes written as 64 hexadecimal digits or in base64 (make one with: head -c 32 /dev/urandom | base64)")
}

// Source says where the master key comes from; at most one field is set.
type Source struct {
	// KeyFile is a file outside the data directory holding the key.
	KeyFile string
	// Key is the key's text (hex or base64), e.g. from the environment.
	Key string
	// Passphrase is stretched with Argon2id and a salt kept in the data
	// directory.
	Passphrase string
}

// Empty reports whether no master key is configured.
func (s Source) Empty() bool { return s.KeyFile == "" && s.Key == "" && s.Passphrase == "" }

// Open returns the Box of src for the data directory dataDir (nil, nil
// when src is empty). It checks the key against dataDir's check file,
// writing one on first use, so that a wrong key is refused at start with
// a clear error rather than as damaged keys.
func Open(dataDir string, src Source) (*Box, error) {
	var key []byte
	var err error
	n := 0
	for _, s := range []string{src.KeyFile, src.Key, src.Passphrase} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		if _, err := os.Stat(filepath.Join(dataDir, CheckFile)); err == nil {
			return nil, fmt.Errorf("this data directory's secrets are encrypted with a master key: %w", ErrLocked)
		}
		return nil, nil
	case n > 1:
		return nil, errors.New("give the master key one way only: a key file, the environment, or a passphrase")
	case src.KeyFile != "":
		abs, _ := filepath.Abs(src.KeyFile)
		dd, _ := filepath.Abs(dataDir)
		if rel, err := filepath.Rel(dd, abs); err == nil && !strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("the master key file %s is inside the data directory: keep it elsewhere, or encrypting the secrets protects nothing", src.KeyFile)
		}
		text, rerr := os.ReadFile(src.KeyFile)
		if rerr != nil {
			return nil, fmt.Errorf("read the master key file: %w", rerr)
		}
		key, err = ParseKey(string(text))
	case src.Key != "":
		key, err = ParseKey(src.Key)
	default:
		key, err = passphraseKey(dataDir, src.Passphrase)
	}
	if err != nil {
		return nil, err
	}
	b, err := New(key)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, CheckFile)
	have, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := WriteAtomic(path, []byte(hex.EncodeToString(b.check)+"\n"), 0o600); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		want, derr := hex.DecodeString(strings.TrimSpace(string(have)))
		if derr != nil || !hmac.Equal(want, b.check) {
			return nil, ErrWrongKey
		}
	}
	return b, nil
}

// passphraseKey derives the master key from a passphrase with Argon2id
// (time 3, 64 MiB, 4 lanes) and the data directory's salt, creating it.
func passphraseKey(dataDir, passphrase string) ([]byte, error) {
	if len(passphrase) < 12 {
		return nil, errors.New("the secrets passphrase must have at least 12 characters")
	}
	path := filepath.Join(dataDir, SaltFile)
	salt, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		salt = make([]byte, 16)
		rand.Read(salt)
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := WriteAtomic(path, salt, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return argon2.IDKey([]byte(passphrase), salt, 3, 64*1024, 4, KeySize), nil
}

// Sealed reports whether data is a sealed file.
func Sealed(data []byte) bool { return bytes.HasPrefix(data, []byte(magic)) }

// Seal returns plain sealed for a file named name (its base name is
// authenticated). A nil Box returns plain unchanged.
func (b *Box) Seal(name string, plain []byte) []byte {
	if b == nil {
		return plain
	}
	nonce := make([]byte, b.aead.NonceSize())
	rand.Read(nonce)
	ct := b.aead.Seal(nonce, nonce, plain, []byte(filepath.Base(name)))
	out := []byte(magic)
	out = base64.StdEncoding.AppendEncode(out, ct)
	return append(out, '\n')
}

// Open returns the content of a file named name as read from disk:
// sealed files are opened, clear ones returned as they are.
func (b *Box) Open(name string, data []byte) ([]byte, error) {
	if !Sealed(data) {
		return data, nil
	}
	if b == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrLocked)
	}
	ct, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data[len(magic):])))
	if err != nil || len(ct) < b.aead.NonceSize() {
		return nil, fmt.Errorf("%s: the encrypted file is damaged", name)
	}
	ns := b.aead.NonceSize()
	plain, err := b.aead.Open(nil, ct[:ns], ct[ns:], []byte(filepath.Base(name)))
	if err != nil {
		return nil, fmt.Errorf("%s: the encrypted file does not open with the master key (damaged, or renamed)", name)
	}
	return plain, nil
}

// ReadFile reads and opens path.
func (b *Box) ReadFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return b.Open(path, data)
}

// WriteFile seals data (when b is not nil) and writes it to path
// atomically with mode perm.
func (b *Box) WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteAtomic(path, b.Seal(path, data), perm)
}

// Enabled reports whether b seals (false for a nil Box).
func (b *Box) Enabled() bool { return b != nil }

// WriteAtomic writes data to a temporary file with mode perm in the same
// directory, syncs it and renames it over path.
func WriteAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// KeyFiles are the private key files of a data directory (path.Match
// patterns, relative to it): the one list of what the master key seals.
// A package that adds a key file reads and writes it through a Box and
// adds its pattern here; TestEveryKeySealed in package server fails while
// a clear key is found outside this list.
var KeyFiles = []string{
	"tls/ca.key",
	"tls/server.key",
	"tls/nodes/*/*.key",
	"e2ee/*.key",
	"audit/audit.key",
	"selfcheck/*.key",
	FieldsKeyFile,
	"devca/*.key",
	"sip/cdr.key",
	"cluster/cluster-ca-key.pem",
	"cluster/ticket-key.pem",
	"node/node-key.pem",
}

// IsKeyFile reports whether rel (slash-separated) matches KeyFiles.
func IsKeyFile(rel string) bool {
	for _, p := range KeyFiles {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

// SealDir seals, under b, every clear key file of dataDir that KeyFiles
// names: what turning the master key on does to a data directory written
// without one. It returns the paths it sealed.
func (b *Box) SealDir(dataDir string) ([]string, error) {
	if b == nil {
		return nil, nil
	}
	var sealed []string
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() || !d.Type().IsRegular() || !IsKeyFile(rel) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if Sealed(data) {
			return nil
		}
		if err := WriteAtomic(p, b.Seal(p, data), info.Mode().Perm()); err != nil {
			return err
		}
		sealed = append(sealed, rel)
		return nil
	})
	return sealed, err
}

// FieldsKeyFile holds the key of Fields, in the data directory (sealed
// under the master key when there is one).
const FieldsKeyFile = "secrets/fields.key"

// fieldPrefix starts a value sealed by Fields.
const fieldPrefix = "conclave-sealed-1:"

// Fields seals short secrets that Conclave keeps in its database rather
// than in files (the LDAP service password and the OpenID Connect client
// secret the admin page sets): AES-256-GCM under a key of the data
// directory, FieldsKeyFile, which the master key seals like every other
// key. The database alone (a PostgreSQL server run by others, a dump of
// it) then holds no such secret in the clear; a backup holds the key
// opened inside the encrypted archive, so that a restored node reads them.
type Fields struct {
	aead cipher.AEAD
}

// OpenFields loads the fields key of dataDir through box, making it on
// first use.
func OpenFields(dataDir string, box *Box) (*Fields, error) {
	key, err := LoadKey(filepath.Join(dataDir, filepath.FromSlash(FieldsKeyFile)), box, true)
	if err != nil {
		return nil, fmt.Errorf("fields key: %w", err)
	}
	aead, err := NewAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Fields{aead: aead}, nil
}

// LoadKey returns the 32-byte key kept in the file at path, opened by
// box; with create, a missing file is made with a random key (written
// through box, mode 0600, in a directory of mode 0700). Keys are written
// as 64 hexadecimal digits; 32 raw bytes are read too. A file that holds
// neither is an error that says to restore it from a backup. Every
// symmetric key of the data directory is kept this way.
func LoadKey(path string, box *Box, create bool) ([]byte, error) {
	data, err := box.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		key := make([]byte, KeySize)
		rand.Read(key)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := box.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	if len(data) == KeySize {
		return data, nil
	}
	if k, err := hex.DecodeString(strings.TrimSpace(string(data))); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("%s is not a %d-byte key (damaged?): restore it from a backup", path, KeySize)
}

// NewAEAD returns AES-256-GCM under a 32-byte key.
func NewAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// FieldSealed reports whether v is a value sealed by Fields.
func FieldSealed(v string) bool { return strings.HasPrefix(v, fieldPrefix) }

// Seal returns value sealed for the field name (authenticated: a sealed
// value moved to another field does not open). "" stays "".
func (f *Fields) Seal(name, value string) string {
	if value == "" {
		return ""
	}
	nonce := make([]byte, f.aead.NonceSize())
	rand.Read(nonce)
	return fieldPrefix + base64.RawStdEncoding.EncodeToString(f.aead.Seal(nonce, nonce, []byte(value), []byte(name)))
}

// Open returns the value of the field name: a sealed value opened, a
// clear one (written before Conclave sealed them) as it is.
func (f *Fields) Open(name, value string) (string, error) {
	if !FieldSealed(value) {
		return value, nil
	}
	ct, err := base64.RawStdEncoding.DecodeString(value[len(fieldPrefix):])
	ns := f.aead.NonceSize()
	if err != nil || len(ct) < ns {
		return "", fmt.Errorf("%s: the sealed value is damaged", name)
	}
	plain, err := f.aead.Open(nil, ct[:ns], ct[ns:], []byte(name))
	if err != nil {
		return "", fmt.Errorf("%s: the sealed value does not open with this node's %s (restored from another node without it?); enter the secret again", name, FieldsKeyFile)
	}
	return string(plain), nil
}
