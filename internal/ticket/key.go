package ticket

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"conclave/internal/secrets"
)

// KeyFile is the issuer's key in the management node's data directory
// (listed in secrets.KeyFiles: sealed under the master key).
const KeyFile = "cluster/ticket-key.pem"

// LoadKey returns the issuer's key kept at path (PKCS#8 PEM, opened by
// box), making a new P-384 key there on first use. A new key reaches the
// nodes with the configuration; tickets signed with the old one are
// refused meanwhile (their holders join again).
func LoadKey(path string, box *secrets.Box) (*ecdsa.PrivateKey, error) {
	data, err := box.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := box.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("write the admission ticket key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("admission ticket key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("admission ticket key %s is not a PEM private key: restore it from a backup, or delete it to make a new one", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("admission ticket key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P384() {
		return nil, fmt.Errorf("admission ticket key %s is not an ECDSA P-384 key", path)
	}
	return ek, nil
}
