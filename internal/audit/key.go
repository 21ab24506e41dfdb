package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

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
	k, err := secrets.LoadKey(path, box, create)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
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
