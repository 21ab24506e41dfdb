package devca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/pki"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// Defaults of Config.
const (
	DefaultTokenLifetime = 24 * time.Hour
	DefaultCertLifetime  = 365 * 24 * time.Hour
	caLifetimeYears      = 10
)

// Paths of the revocation services under the server's public URL.
const (
	CRLPath  = "/pki/devices.crl"
	OCSPPath = "/pki/ocsp"
)

// Users looks accounts up; store.Store is one.
type Users interface {
	UserByID(ctx context.Context, id int64) (store.User, error)
}

// Config says where the authority keeps its key and what it issues.
type Config struct {
	// Dir holds ca.crt and ca.key (normally <data>/devca).
	Dir string
	// Domain is the SIP domain of addresses of record.
	Domain string
	// BaseURL is the server's public https URL, the base of the CRL
	// distribution point and OCSP responder written into certificates.
	BaseURL string
	// OrgName goes into the subject of issued certificates.
	OrgName string
	// TokenLifetime and CertLifetime default to DefaultTokenLifetime and
	// DefaultCertLifetime.
	TokenLifetime, CertLifetime time.Duration
	Clock                       clock.Clock
	Audit                       audit.Recorder
	Logger                      *slog.Logger
	// Box seals the private keys at rest (package secrets); nil keeps
	// them in the clear.
	Box *secrets.Box
	// Fields seals the devices' digest secrets (their HA1 values) in the
	// store; nil keeps them in the clear.
	Fields *secrets.Fields
}

// Authority issues and revokes device certificates.
type Authority struct {
	cfg   Config
	clock clock.Clock
	st    store.DeviceStore
	users Users
	log   *slog.Logger
	audit audit.Recorder

	ca    *x509.Certificate
	key   crypto.Signer
	pool  *x509.CertPool
	caPEM []byte

	mu        sync.Mutex
	crl       []byte
	crlAt     time.Time
	crlGen    uint64 // counts revocations, so that a CRL signed before one is not cached
	listeners []func(serial string)
	// seen are the revoked serials the listeners were told of (Sync).
	seen map[string]bool
	// serverSerials are the SIP edge's own certificates, good for OCSP.
	serverSerials map[string]bool
}

// Open loads the CA from cfg.Dir, creating it on first use.
func Open(cfg Config, st store.DeviceStore, users Users) (*Authority, error) {
	if cfg.Dir == "" || cfg.Domain == "" || cfg.BaseURL == "" {
		return nil, errors.New("device CA: the directory, SIP domain and public URL must be set")
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.CertLifetime <= 0 {
		cfg.CertLifetime = DefaultCertLifetime
	}
	if cfg.OrgName == "" {
		cfg.OrgName = cfg.Domain
	}
	a := &Authority{cfg: cfg, clock: clock.Or(cfg.Clock), st: st, users: users, log: cfg.Logger, audit: cfg.Audit}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.audit == nil {
		a.audit = audit.Discard{}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	ca, key, err := loadCA(cfg.Dir, cfg.Box)
	if errors.Is(err, pki.ErrNoCert) {
		ca, key, err = createCA(cfg.Dir, a.clock.Now(), cfg.Box)
	}
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	a.ca, a.key = ca, key
	a.pool = x509.NewCertPool()
	a.pool.AddCert(ca)
	a.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	// Revocations made before this start need no telling: nothing holds
	// a connection of theirs yet.
	a.seen = map[string]bool{}
	revoked, err := st.RevokedDeviceCerts(context.Background(), a.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	for _, c := range revoked {
		a.seen[c.Serial] = true
	}
	if err := a.sealStoredDigests(context.Background()); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	return a, nil
}

// sealStoredDigests seals the digest secrets still in the clear in the
// store (enrolled before they were sealed, or brought back by the restore
// of such a backup), so that no HA1 value stays readable in the database.
func (a *Authority) sealStoredDigests(ctx context.Context) error {
	if a.cfg.Fields == nil {
		return nil
	}
	certs, err := a.st.ListDeviceCerts(ctx, 0)
	if err != nil {
		return err
	}
	n := 0
	for _, c := range certs {
		if c.DigestHA1 == "" || secrets.FieldSealed(c.DigestHA1) {
			continue
		}
		if err := a.st.SetDeviceDigest(ctx, c.Serial, a.cfg.Fields.Seal(digestField(c.Serial), c.DigestHA1)); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		a.log.Info("sealed the digest secrets of telephony devices stored in the clear", "devices", n)
	}
	return nil
}

// Certificate is the device CA's certificate.
func (a *Authority) Certificate() *x509.Certificate { return a.ca }

// CAPEM is the device CA's certificate in PEM.
func (a *Authority) CAPEM() []byte { return a.caPEM }

// Domain is the SIP domain.
func (a *Authority) Domain() string { return a.cfg.Domain }

// AOR is the SIP address of record of a user.
func (a *Authority) AOR(username string) string {
	return "sip:" + strings.ToLower(username) + "@" + a.cfg.Domain
}

// OnRevoke registers f to learn the serial of every certificate revoked
// from now on.
func (a *Authority) OnRevoke(f func(serial string)) {
	a.mu.Lock()
	a.listeners = append(a.listeners, f)
	a.mu.Unlock()
}

func loadCA(dir string, box *secrets.Box) (*x509.Certificate, crypto.Signer, error) {
	pair, err := pki.ReadKeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), box)
	if errors.Is(err, pki.ErrNoKey) {
		return nil, nil, fmt.Errorf("the CA certificate exists but its key cannot be read (%w); restore ca.key from a backup", err)
	}
	if err != nil {
		return nil, nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("the CA key cannot sign")
	}
	return pair.Leaf, signer, nil
}

// createCA makes an ECDSA P-384 CA for devices.
func createCA(dir string, now time.Time, box *secrets.Box) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	skid := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Conclave Device CA " + rand.Text()[:8], Organization: []string{"Conclave"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(caLifetimeYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := pki.WriteKeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), der, key, box); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// SerialString formats a serial number as the store keeps it.
func SerialString(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// endpoint joins the base URL and a path.
func (a *Authority) endpoint(p string) string {
	u, err := url.Parse(a.cfg.BaseURL)
	if err != nil {
		return strings.TrimSuffix(a.cfg.BaseURL, "/") + p
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	return u.String()
}

// sameIssuer reports whether cert was issued by the device CA's key.
func (a *Authority) sameIssuer(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, a.ca.RawSubject) && cert.CheckSignatureFrom(a.ca) == nil
}

// KeyType describes a public key for people ("ECDSA P-256", "RSA 3072").
func KeyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case interface{ Size() int }:
		return fmt.Sprintf("RSA %d", k.Size()*8)
	}
	return fmt.Sprintf("%T", pub)
}
