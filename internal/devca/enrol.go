package devca

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"conclave/internal/audit"
	"conclave/internal/pki"
	"conclave/internal/store"
)

// Audit actions of the registration authority.
const (
	ActionTokenCreated = "device-token-created"
	ActionEnrolled     = "device-enrolled"
	ActionEnrolFailed  = "device-enrol-failed"
	ActionRevoked      = "device-revoked"
)

// tokenPrefix marks enrolment tokens, so that a token pasted in the wrong
// place is recognisable (and found by secret scanners).
const tokenPrefix = "cdt_"

// ErrBadToken is returned by Enrol for an unknown, used or expired token;
// the three are not told apart.
var ErrBadToken = errors.New("the enrolment token is unknown, already used or expired; ask for a new one")

// CSRError is returned by Enrol when the certificate request is refused;
// its message says what to change. The token is not consumed.
type CSRError struct{ Reason string }

func (e *CSRError) Error() string { return "certificate request refused: " + e.Reason }

// CreateToken makes a one-time enrolment token for u, created by the user
// named by (an administrator, or u itself). The token is returned once and
// only its hash is kept.
func (a *Authority) CreateToken(ctx context.Context, u store.User, by, source string) (string, time.Time, error) {
	if !u.Enabled {
		return "", time.Time{}, fmt.Errorf("the account %s is disabled; enable it before enrolling a device", u.Username)
	}
	token := tokenPrefix + rand.Text()
	now := a.clock.Now().UTC()
	exp := now.Add(a.cfg.TokenLifetime)
	h := sha256.Sum256([]byte(token))
	if err := a.st.CreateDeviceToken(ctx, store.DeviceToken{TokenHash: h[:], UserID: u.ID, CreatedBy: by,
		CreatedAt: now, ExpiresAt: exp}); err != nil {
		return "", time.Time{}, err
	}
	a.record(ctx, audit.Event{Actor: by, Source: source, Action: ActionTokenCreated, Target: u.Username,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"expires": exp.Format(time.RFC3339)}})
	return token, exp, nil
}

// Issued is what Enrol returns to the device.
type Issued struct {
	Username string
	AOR      string
	Cert     *x509.Certificate
	// CertPEM is the device certificate; CAPEM the device CA.
	CertPEM, CAPEM []byte
	// DigestPassword is the device's SIP digest secret, for servers that
	// ask for digest authentication as a second factor. It is returned
	// once; the authority keeps only its HA1 values.
	DigestPassword string
}

// ParseCSR reads a PKCS#10 request in PEM or DER and checks its signature
// (proof of possession of the key) and its key against the key policy.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	der := data
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, &CSRError{fmt.Sprintf("the PEM block is a %q, not a CERTIFICATE REQUEST", b.Type)}
		}
		der = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, &CSRError{"it is not a PKCS#10 certificate request (" + err.Error() + ")"}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &CSRError{"its signature does not verify, so it does not prove possession of the key"}
	}
	if err := pki.CheckKeyPolicy(csr.PublicKey); err != nil {
		return nil, &CSRError{err.Error()}
	}
	return csr, nil
}

// Enrol redeems token with the PKCS#10 request csr (PEM or DER) and issues
// the device certificate. source is the client's address, for the audit
// log. A refused request does not consume the token; a wrong token is
// audited.
func (a *Authority) Enrol(ctx context.Context, token string, csrData []byte, source string) (Issued, error) {
	csr, err := ParseCSR(csrData)
	if err != nil {
		a.record(ctx, audit.Event{Source: source, Action: ActionEnrolFailed, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"reason": err.Error()}})
		return Issued{}, err
	}
	now := a.clock.Now().UTC()
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	tok, err := a.st.ConsumeDeviceToken(ctx, h[:], now)
	if errors.Is(err, store.ErrNotFound) {
		a.record(ctx, audit.Event{Source: source, Action: ActionEnrolFailed, Outcome: audit.OutcomeFailure,
			Details: map[string]string{"reason": "unknown, used or expired enrolment token"}})
		return Issued{}, ErrBadToken
	}
	if err != nil {
		return Issued{}, err
	}
	u, err := a.users.UserByID(ctx, tok.UserID)
	if err != nil {
		return Issued{}, fmt.Errorf("enrol: %w", err)
	}
	if !u.Enabled {
		a.record(ctx, audit.Event{Actor: u.Username, Source: source, Action: ActionEnrolFailed, Target: u.Username,
			Outcome: audit.OutcomeFailure, Details: map[string]string{"reason": "account disabled"}})
		return Issued{}, ErrBadToken
	}
	cert, err := a.issue(u, csr, now)
	if err != nil {
		return Issued{}, err
	}
	password := rand.Text()
	serial := SerialString(cert.SerialNumber)
	dc := store.DeviceCert{Serial: serial, UserID: u.ID, AOR: a.AOR(u.Username),
		Fingerprint: pki.Fingerprint(cert), KeyType: KeyType(cert.PublicKey), IssuedAt: now,
		NotAfter: cert.NotAfter, DER: cert.Raw, DigestHA1: DigestHA1(strings.ToLower(u.Username), a.cfg.Domain, password)}
	if a.cfg.Fields != nil {
		dc.DigestHA1 = a.cfg.Fields.Seal(digestField(serial), dc.DigestHA1)
	}
	if err := a.st.CreateDeviceCert(ctx, dc); err != nil {
		return Issued{}, err
	}
	a.record(ctx, audit.Event{Actor: u.Username, Source: source, Action: ActionEnrolled, Target: dc.AOR,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"serial": dc.Serial, "fingerprint": dc.Fingerprint,
			"key": dc.KeyType, "token-creator": tok.CreatedBy}})
	a.log.Info("device enrolled", "user", u.Username, "serial", dc.Serial, "key", dc.KeyType)
	return Issued{Username: u.Username, AOR: dc.AOR, Cert: cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), CAPEM: a.caPEM,
		DigestPassword: password}, nil
}

// issue signs the device certificate of u for the key of csr. Nothing of
// the request but its key is used: the subject and the address of record
// come from the account the token was made for.
func (a *Authority) issue(u store.User, csr *x509.CertificateRequest, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	aor, err := url.Parse(a.AOR(u.Username))
	if err != nil {
		return nil, fmt.Errorf("address of record of %s: %w", u.Username, err)
	}
	notAfter := now.Add(a.cfg.CertLifetime)
	if notAfter.After(a.ca.NotAfter) {
		notAfter = a.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: u.Username, Organization: []string{a.cfg.OrgName}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{aor},
		CRLDistributionPoints: []string{a.endpoint(CRLPath)},
		OCSPServer:            []string{a.endpoint(OCSPPath)},
		AuthorityKeyId:        a.ca.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, csr.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign device certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func (a *Authority) record(ctx context.Context, e audit.Event) {
	if err := a.audit.Record(ctx, e); err != nil {
		a.log.Error("audit record failed", "action", e.Action, "err", err)
	}
}

// DigestHA1 returns the stored form of a digest secret: the HA1 values
// (RFC 7616) for MD5 and SHA-256.
func DigestHA1(username, realm, password string) string {
	m := md5.Sum([]byte(username + ":" + realm + ":" + password))
	s := sha256.Sum256([]byte(username + ":" + realm + ":" + password))
	return "MD5:" + hex.EncodeToString(m[:]) + " SHA-256:" + hex.EncodeToString(s[:])
}

// HA1 picks the value for algorithm ("MD5" or "SHA-256") out of a stored
// DigestHA1; "" when there is none.
func HA1(stored, algorithm string) string {
	if algorithm == "" {
		algorithm = "MD5"
	}
	for _, f := range strings.Fields(stored) {
		if alg, v, ok := strings.Cut(f, ":"); ok && strings.EqualFold(alg, algorithm) {
			return v
		}
	}
	return ""
}

// DeviceDigest returns the stored HA1 values of a device certificate.
func (a *Authority) DeviceDigest(ctx context.Context, serial string) (string, error) {
	c, err := a.st.DeviceCertBySerial(ctx, serial)
	if err != nil {
		return "", err
	}
	if a.cfg.Fields == nil {
		return c.DigestHA1, nil
	}
	return a.cfg.Fields.Open(digestField(serial), c.DigestHA1)
}

// digestField names a device's sealed digest secret: its serial is part
// of the sealing, so that a value moved to another row does not open.
func digestField(serial string) string { return "device_certs.digest_ha1:" + serial }
