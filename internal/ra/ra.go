// Package ra is the registration authority of the organisation's E2EE
// certificate authority: it keeps the CA key (used for nothing else) in the
// data directory and issues compact device credentials (docs/e2ee.md,
// section 7) to signed-in users.
package ra

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"conclave/internal/clock"
	"conclave/internal/e2ee"
	"conclave/internal/store"
)

// CredentialLifetime is how long a device credential is valid. Credentials
// have no revocation list, so they are short-lived and renewed at login.
const CredentialLifetime = 7 * 24 * time.Hour

// keyFile is the CA key's file name inside <data>/e2ee.
const keyFile = "org-ca.key"

// Authority issues credentials under the organisation's E2EE CA key.
type Authority struct {
	key   *ecdsa.PrivateKey
	orgID string
	name  string
	clock clock.Clock
}

// Open loads the CA key from <dataDir>/e2ee, creating it on first use.
// orgID identifies the organisation in credentials; name is shown to users
// ("certified by <name>").
func Open(dataDir, orgID, name string, clk clock.Clock) (*Authority, error) {
	dir := filepath.Join(dataDir, "e2ee")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create E2EE CA directory: %w", err)
	}
	path := filepath.Join(dir, keyFile)
	key, err := loadKey(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = createKey(path)
	}
	if err != nil {
		return nil, err
	}
	return &Authority{key: key, orgID: orgID, name: name, clock: clock.Or(clk)}, nil
}

func loadKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("E2EE CA key %s is not a PEM private key; restore it from a backup (replacing it makes every client warn that the organisation key changed)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse E2EE CA key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("E2EE CA key %s is not an ECDSA P-256 key", path)
	}
	return ek, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	k, err := e2ee.GenerateDeviceKey()
	if err != nil {
		return nil, fmt.Errorf("generate E2EE CA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode E2EE CA key: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write E2EE CA key: %w", err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("write E2EE CA key: %w", werr)
	}
	return k, nil
}

// OrgID identifies the organisation in credentials.
func (a *Authority) OrgID() string { return a.orgID }

// Name is the organisation's display name.
func (a *Authority) Name() string { return a.name }

// PublicKey is the CA's public key as a 65-byte uncompressed point, what
// clients pin.
func (a *Authority) PublicKey() []byte {
	b, _ := e2ee.MarshalPublicKey(&a.key.PublicKey)
	return b
}

// Issue certifies a device public key (65-byte uncompressed point) for u.
func (a *Authority) Issue(u store.User, devicePublicKey []byte) ([]byte, time.Time, error) {
	pub, err := e2ee.ParsePublicKey(devicePublicKey)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("the device public key is not an uncompressed P-256 point: %w", err)
	}
	now := a.clock.Now().UTC()
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, time.Time{}, err
	}
	notAfter := now.Add(CredentialLifetime)
	cred, err := e2ee.IssueCredential(a.key, e2ee.CredentialFields{
		OrgID:           a.orgID,
		UserID:          UserID(u),
		DisplayName:     u.DisplayName,
		DevicePublicKey: pub,
		NotBefore:       now.Add(-5 * time.Minute),
		NotAfter:        notAfter,
		Serial:          binary.BigEndian.Uint64(serial[:]),
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("issue credential: %w", err)
	}
	return cred, notAfter, nil
}

// UserID is the user id a credential and an announcement carry for u: its
// numeric account id, stable across renames.
func UserID(u store.User) string { return strconv.FormatInt(u.ID, 10) }
