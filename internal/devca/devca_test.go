package devca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"conclave/internal/audit"
	"conclave/internal/secrets"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

type fixture struct {
	ca    *Authority
	st    *store.SQLite
	audit *audit.Log
	clk   *fakeclock.Clock
	alice store.User
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := fakeclock.New(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	lg := audit.NewLog(st, clk)
	ca, err := Open(Config{Dir: filepath.Join(dir, "devca"), Domain: "example.org", BaseURL: "https://example.org:8443",
		Clock: clk, Audit: lg}, st, st)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := st.CreateUser(context.Background(), store.User{Username: "Alice", DisplayName: "Alice", Role: store.RoleUser, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ca: ca, st: st, audit: lg, clk: clk, alice: alice}
}

func csrFor(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "mallory"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fixture) enrol(t *testing.T, key crypto.Signer) Issued {
	t.Helper()
	ctx := context.Background()
	tok, _, err := f.ca.CreateToken(ctx, f.alice, "admin", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := f.ca.Enrol(ctx, tok, csrFor(t, key), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestEnrolIssuesACertificateBoundToTheAccount(t *testing.T) {
	f := newFixture(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss := f.enrol(t, key)
	if iss.AOR != "sip:alice@example.org" || iss.Cert.URIs[0].String() != "sip:alice@example.org" {
		t.Fatalf("AOR %q, SAN %v", iss.AOR, iss.Cert.URIs)
	}
	if iss.Cert.Subject.CommonName != "Alice" {
		t.Errorf("the subject comes from the request, not the account: %q", iss.Cert.Subject.CommonName)
	}
	if got := iss.Cert.CRLDistributionPoints; len(got) != 1 || got[0] != "https://example.org:8443/pki/devices.crl" {
		t.Errorf("CRL distribution point %v", got)
	}
	if got := iss.Cert.OCSPServer; len(got) != 1 || got[0] != "https://example.org:8443/pki/ocsp" {
		t.Errorf("OCSP responder %v", got)
	}
	id, err := f.ca.Verify(context.Background(), [][]byte{iss.Cert.Raw})
	if err != nil || id.AOR != "sip:alice@example.org" || id.Username != "Alice" {
		t.Fatalf("Verify: %+v, %v", id, err)
	}
}

func TestTokenIsOneTimeAndAWrongOneIsAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tok, _, err := f.ca.CreateToken(ctx, f.alice, "Alice", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Enrol(ctx, tok, csrFor(t, key), "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Enrol(ctx, tok, csrFor(t, key), "192.0.2.9"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("second use: %v", err)
	}
	if _, err := f.ca.Enrol(ctx, "cdt_WRONG", csrFor(t, key), "192.0.2.9"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("wrong token: %v", err)
	}
	recs, err := f.audit.List(ctx, store.AuditFilter{Action: ActionEnrolFailed})
	if err != nil || len(recs) != 2 || recs[1].Source != "192.0.2.9" {
		t.Fatalf("audit of refused tokens: %+v %v", recs, err)
	}
	// An expired token is refused too.
	tok2, _, _ := f.ca.CreateToken(ctx, f.alice, "admin", "")
	f.clk.Advance(DefaultTokenLifetime + time.Second)
	if _, err := f.ca.Enrol(ctx, tok2, csrFor(t, key), "127.0.0.1"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestKeyPolicyRefusesWeakKeysWithoutSpendingTheToken(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, _, _ := f.ca.CreateToken(ctx, f.alice, "admin", "")
	weak, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, err := f.ca.Enrol(ctx, tok, csrFor(t, weak), "")
	var ce *CSRError
	if !errors.As(err, &ce) {
		t.Fatalf("RSA 2048: %v", err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if _, err := f.ca.Enrol(ctx, tok, csrFor(t, p224), ""); !errors.As(err, &ce) {
		t.Fatalf("P-224: %v", err)
	}
	// A request whose signature does not verify proves no possession.
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := csrFor(t, good)
	der[len(der)-3] ^= 0xff
	if _, err := f.ca.Enrol(ctx, tok, der, ""); err == nil {
		t.Fatal("a request with a broken signature was accepted")
	}
	if _, err := f.ca.Enrol(ctx, tok, csrFor(t, good), ""); err != nil {
		t.Fatalf("the token was spent by refused requests: %v", err)
	}
}

func TestRevocationReachesVerifyCRLAndOCSPAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss := f.enrol(t, key)
	serial := SerialString(iss.Cert.SerialNumber)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == CRLPath {
			f.ca.CRLHandler().ServeHTTP(w, r)
			return
		}
		f.ca.OCSPHandler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	ocspStatus := func() int {
		req, err := ocsp.CreateRequest(iss.Cert, f.ca.Certificate(), &ocsp.RequestOptions{Hash: crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+OCSPPath, "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		r, err := ocsp.ParseResponseForCert(buf.Bytes(), iss.Cert, f.ca.Certificate())
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	crlHas := func() bool {
		resp, err := http.Get(srv.URL + CRLPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		crl, err := x509.ParseRevocationList(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(f.ca.Certificate()); err != nil {
			t.Fatal(err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(iss.Cert.SerialNumber) == 0 {
				return true
			}
		}
		return false
	}
	if ocspStatus() != ocsp.Good || crlHas() {
		t.Fatal("a fresh certificate is not good")
	}
	var told []string
	f.ca.OnRevoke(func(s string) { told = append(told, s) })
	if _, err := f.ca.Revoke(ctx, serial, ReasonKeyCompromise, "admin", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if len(told) != 1 || told[0] != serial {
		t.Errorf("revocation listeners told %v", told)
	}
	if _, err := f.ca.Verify(ctx, [][]byte{iss.Cert.Raw}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Verify after revocation: %v", err)
	}
	if ocspStatus() != ocsp.Revoked {
		t.Error("OCSP does not say revoked")
	}
	if !crlHas() {
		t.Error("the CRL does not list the revoked certificate")
	}
}

func TestVerifyRefusesForeignAndDisabled(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other := newFixture(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign := other.enrol(t, key)
	if _, err := f.ca.Verify(ctx, [][]byte{foreign.Cert.Raw}); !errors.Is(err, ErrForeign) {
		t.Fatalf("foreign certificate: %v", err)
	}
	iss := f.enrol(t, key)
	if err := f.st.SetUserEnabled(ctx, f.alice.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.Verify(ctx, [][]byte{iss.Cert.Raw}); err == nil {
		t.Fatal("a disabled account's device was accepted")
	}
}

// TestClearDigestsSealedAtOpen: digest secrets stored in the clear (a
// phone enrolled before they were sealed, or a restored old backup) are
// sealed when the authority opens with a fields key, and still read back.
func TestClearDigestsSealedAtOpen(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial := SerialString(f.enrol(t, key).Cert.SerialNumber)
	before, err := f.st.DeviceCertBySerial(ctx, serial)
	if err != nil || HA1(before.DigestHA1, "SHA-256") == "" {
		t.Fatalf("the fixture stores no clear digest: %q, %v", before.DigestHA1, err)
	}
	dir := t.TempDir()
	fields, err := secrets.OpenFields(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := Open(Config{Dir: f.ca.cfg.Dir, Domain: "example.org", BaseURL: "https://example.org:8443",
		Clock: f.clk, Fields: fields}, f.st, f.st)
	if err != nil {
		t.Fatal(err)
	}
	after, err := f.st.DeviceCertBySerial(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	if !secrets.FieldSealed(after.DigestHA1) || strings.Contains(after.DigestHA1, before.DigestHA1) {
		t.Fatalf("the digest stayed in the clear in the store: %q", after.DigestHA1)
	}
	got, err := ca.DeviceDigest(ctx, serial)
	if err != nil || got != before.DigestHA1 {
		t.Fatalf("DeviceDigest after sealing: %q, %v; want %q", got, err, before.DigestHA1)
	}
}
