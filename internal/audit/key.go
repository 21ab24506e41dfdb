package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"conclave/internal/secrets"
)

// KeyFile is the name of the audit key inside the audit directory.
const KeyFile = "audit.key"

// Key seals audit records: each record's MAC is HMAC-SHA-256 over its
// hash, which chains every earlier record. The key lives in a file of its
// own (sealed under the master key when one is configured), apart from
// the database, so that whoever can write the database — but not read
// this file — cannot rewrite history without Verify noticing.
type Key struct {
	k []byte
}

// LoadKey reads the audit key at path, creating it when create is true
// and it does not exist.
func LoadKey(path string, box *secrets.Box, create bool) (*Key, error) {
	data, err := box.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		k := make([]byte, 32)
		rand.Read(k)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create audit key: %w", err)
		}
		if err := box.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("create audit key: %w", err)
		}
		return &Key{k: k}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("the audit key %s is damaged: restore it from a backup", path)
	}
	return &Key{k: k}, nil
}

// NewKey returns a Key from its 32 bytes (tests).
func NewKey(k []byte) *Key { return &Key{k: append([]byte(nil), k...)} }

// MAC returns the seal of a record hash.
func (k *Key) MAC(hash []byte) []byte {
	m := hmac.New(sha256.New, k.k)
	m.Write([]byte("conclave-audit-mac-v1\n"))
	m.Write(hash)
	return m.Sum(nil)
}

// Check reports whether mac seals hash.
func (k *Key) Check(hash, mac []byte) bool { return hmac.Equal(mac, k.MAC(hash)) }
