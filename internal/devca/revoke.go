package devca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"conclave/internal/audit"
	"conclave/internal/pki"
	"conclave/internal/store"
)

// CRL reason codes (RFC 5280, 5.3.1) an administrator or a user may give.
const (
	ReasonUnspecified     = 0
	ReasonKeyCompromise   = 1
	ReasonSuperseded      = 4
	ReasonCessation       = 5
	ReasonCertificateHold = 6
	// ReasonPrivilegeWithdrawn revokes the devices of a disabled or
	// deleted account.
	ReasonPrivilegeWithdrawn = 9
)

// crlValidity is how long a published CRL is valid; it is regenerated at
// every revocation and whenever it is older than crlRefresh.
const (
	crlValidity = 24 * time.Hour
	crlRefresh  = time.Hour
)

// Revoke revokes the certificate with serial (lower-case hex), by the
// user named by, for reason. Revoking a revoked certificate changes
// nothing and is not an error.
func (a *Authority) Revoke(ctx context.Context, serial string, reason int, by, source string) (store.DeviceCert, error) {
	c, revoked, err := RevokeInStore(ctx, a.st, a.audit, a.clock.Now(), serial, reason, by, source)
	if revoked {
		a.log.Info("device certificate revoked", "serial", c.Serial, "aor", c.AOR, "by", by)
		a.revoked([]string{c.Serial})
	}
	return c, err
}

// RevokeUser revokes every certificate of the account u still in force
// (reason: privilege withdrawn), as its account is disabled or deleted,
// and returns how many it revoked.
func (a *Authority) RevokeUser(ctx context.Context, u store.User, by, source string) (int, error) {
	serials, err := revokeUser(ctx, a.st, a.audit, a.clock.Now(), u, by, source)
	if len(serials) > 0 {
		a.log.Info("device certificates of a deactivated account revoked", "username", u.Username, "devices", len(serials))
		a.revoked(serials)
	}
	return len(serials), err
}

// revoked drops the cached CRL and tells the listeners that serials were
// revoked.
func (a *Authority) revoked(serials []string) {
	a.mu.Lock()
	a.crl = nil
	a.crlGen++
	for _, s := range serials {
		a.seen[s] = true
	}
	listeners := append([]func(string){}, a.listeners...)
	a.mu.Unlock()
	for _, serial := range serials {
		for _, f := range listeners {
			f(serial)
		}
	}
}

// Sync picks up the revocations another process wrote to the store
// (`conclave admin disable-user` on the shell, through RevokeUserInStore):
// it drops the cached CRL and tells the OnRevoke listeners, as Revoke
// does. The server calls it every few seconds.
func (a *Authority) Sync(ctx context.Context) error {
	list, err := a.st.RevokedDeviceCerts(ctx, a.clock.Now())
	if err != nil {
		return err
	}
	a.mu.Lock()
	var fresh []string
	for _, c := range list {
		if !a.seen[c.Serial] {
			fresh = append(fresh, c.Serial)
		}
	}
	a.mu.Unlock()
	if len(fresh) > 0 {
		a.log.Info("device certificates revoked by another process", "devices", len(fresh))
		a.revoked(fresh)
	}
	return nil
}

// RevokeInStore revokes the certificate with serial at now, for reason,
// in the store alone, and records it in the audit log; it reports
// whether this call revoked it (false for one already revoked). It is
// Revoke for a process that does not run the authority: a running
// server's authority picks the revocation up at its next Sync.
func RevokeInStore(ctx context.Context, st store.DeviceStore, rec audit.Recorder, now time.Time, serial string, reason int, by, source string) (store.DeviceCert, bool, error) {
	serial = strings.ToLower(strings.TrimSpace(serial))
	if reason < 0 || reason > 10 || reason == 7 {
		return store.DeviceCert{}, false, fmt.Errorf("revocation reason %d is not a CRL reason code", reason)
	}
	before, err := st.DeviceCertBySerial(ctx, serial)
	if err != nil {
		return store.DeviceCert{}, false, err
	}
	c, err := st.RevokeDeviceCert(ctx, serial, now.UTC(), reason)
	if err != nil || !before.RevokedAt.IsZero() {
		return c, false, err
	}
	if rec != nil {
		if err := rec.Record(ctx, audit.Event{Actor: by, Source: source, Action: ActionRevoked, Target: c.AOR, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"serial": serial, "reason": fmt.Sprint(reason)}}); err != nil {
			return c, true, fmt.Errorf("device certificate %s revoked, but the audit log could not be written: %w", serial, err)
		}
	}
	return c, true, nil
}

// RevokeUserInStore is RevokeUser for a process that does not run the
// authority (see RevokeInStore).
func RevokeUserInStore(ctx context.Context, st store.DeviceStore, rec audit.Recorder, now time.Time, u store.User, by, source string) (int, error) {
	serials, err := revokeUser(ctx, st, rec, now, u, by, source)
	return len(serials), err
}

func revokeUser(ctx context.Context, st store.DeviceStore, rec audit.Recorder, now time.Time, u store.User, by, source string) ([]string, error) {
	certs, err := st.ListDeviceCerts(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", u.Username, err)
	}
	var (
		serials []string
		errs    []error
	)
	for _, c := range certs {
		if !c.RevokedAt.IsZero() {
			continue
		}
		_, revoked, err := RevokeInStore(ctx, st, rec, now, c.Serial, ReasonPrivilegeWithdrawn, by, source)
		if revoked {
			serials = append(serials, c.Serial)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("revoke device %s of %s: %w", c.Serial, u.Username, err))
		}
	}
	return serials, errors.Join(errs...)
}

// ErrRevoked, ErrUnknownCert and ErrForeign are wrapped by Verify's errors.
var (
	ErrRevoked     = errors.New("the device certificate is revoked")
	ErrUnknownCert = errors.New("the device certificate is not one this authority issued")
	ErrForeign     = errors.New("the certificate was not issued by this organisation's device CA")
)

// Identity is what a verified device certificate proves.
type Identity struct {
	UserID      int64
	Username    string
	AOR         string
	Serial      string
	Fingerprint string
}

// Verify checks a client certificate chain (leaf first, DER) as the SIP
// edge receives it: signed by the device CA, valid now, for client
// authentication, with a sip: address of record, issued by this authority,
// not revoked, and held by an enabled account whose address it names.
func (a *Authority) Verify(ctx context.Context, chain [][]byte) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("no client certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return Identity{}, fmt.Errorf("parse client certificate: %w", err)
	}
	now := a.clock.Now()
	if !a.sameIssuer(leaf) {
		return Identity{}, ErrForeign
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrForeign, err)
	}
	if err := pki.CheckKeyPolicy(leaf.PublicKey); err != nil {
		return Identity{}, err
	}
	aor := sipURI(leaf.URIs)
	if aor == "" {
		return Identity{}, errors.New("the device certificate names no sip: address of record")
	}
	serial := SerialString(leaf.SerialNumber)
	rec, err := a.st.DeviceCertBySerial(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, ErrUnknownCert
	}
	if err != nil {
		return Identity{}, err
	}
	if !rec.RevokedAt.IsZero() {
		return Identity{}, fmt.Errorf("%w (serial %s, since %s)", ErrRevoked, serial, rec.RevokedAt.Format(time.RFC3339))
	}
	if rec.AOR != aor {
		return Identity{}, ErrUnknownCert
	}
	u, err := a.users.UserByID(ctx, rec.UserID)
	if err != nil {
		return Identity{}, fmt.Errorf("owner of device certificate %s: %w", serial, err)
	}
	if !u.Enabled {
		return Identity{}, fmt.Errorf("the account %s is disabled", u.Username)
	}
	if a.AOR(u.Username) != aor {
		return Identity{}, errors.New("the device certificate's address of record no longer matches its account")
	}
	return Identity{UserID: u.ID, Username: u.Username, AOR: aor, Serial: serial, Fingerprint: pki.Fingerprint(leaf)}, nil
}

func sipURI(us []*url.URL) string {
	for _, u := range us {
		if u.Scheme == "sip" || u.Scheme == "sips" {
			return "sip:" + u.Opaque
		}
	}
	return ""
}

// Status is a certificate's revocation state as the OCSP responder tells
// it.
type Status struct {
	Known     bool
	RevokedAt time.Time
	Reason    int
}

// Status looks serial up.
func (a *Authority) Status(ctx context.Context, serial *big.Int) (Status, error) {
	rec, err := a.st.DeviceCertBySerial(ctx, SerialString(serial))
	if errors.Is(err, store.ErrNotFound) {
		a.mu.Lock()
		server := a.serverSerials[SerialString(serial)]
		a.mu.Unlock()
		return Status{Known: server}, nil
	}
	if err != nil {
		return Status{}, err
	}
	return Status{Known: true, RevokedAt: rec.RevokedAt, Reason: rec.Reason}, nil
}

// CRL returns the current certificate revocation list (DER), regenerated
// after every revocation and at least hourly.
func (a *Authority) CRL(ctx context.Context) ([]byte, error) {
	now := a.clock.Now().UTC()
	a.mu.Lock()
	if a.crl != nil && now.Sub(a.crlAt) < crlRefresh && !now.Before(a.crlAt) {
		crl := a.crl
		a.mu.Unlock()
		return crl, nil
	}
	gen := a.crlGen
	a.mu.Unlock()
	revoked, err := a.st.RevokedDeviceCerts(ctx, now)
	if err != nil {
		return nil, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(now.UnixNano()),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(crlValidity),
		RevokedCertificateEntries: entries,
	}, a.ca, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	a.mu.Lock()
	if a.crlGen == gen {
		a.crl, a.crlAt = der, now
	}
	a.mu.Unlock()
	return der, nil
}
