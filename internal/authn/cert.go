package authn

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"conclave/internal/pki"
)

// oidSAN is the subjectAltName extension; oidUPN the Microsoft User
// Principal Name otherName carried by smart-card certificates.
var (
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// UPNs returns the User Principal Names in a subjectAltName extension
// value (DER). Go's x509 package does not expose otherName entries.
func UPNs(san []byte) ([]string, error) {
	in := cryptobyte.String(san)
	var names cryptobyte.String
	if !in.ReadASN1(&names, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("malformed subjectAltName")
	}
	var out []string
	for !names.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&gn, &tag) {
			return nil, errors.New("malformed GeneralName")
		}
		// otherName [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
		if tag != cbasn1.Tag(0).ContextSpecific().Constructed() {
			continue
		}
		var oid asn1.ObjectIdentifier
		if !gn.ReadASN1ObjectIdentifier(&oid) {
			return nil, errors.New("malformed otherName type")
		}
		var val cryptobyte.String
		if !gn.ReadASN1(&val, cbasn1.Tag(0).ContextSpecific().Constructed()) {
			return nil, errors.New("malformed otherName value")
		}
		if !oid.Equal(oidUPN) {
			continue
		}
		var s cryptobyte.String
		if !val.ReadASN1(&s, cbasn1.UTF8String) {
			return nil, errors.New("the UPN is not a UTF8String")
		}
		out = append(out, string(s))
	}
	return out, nil
}

// CertUsername returns the account name a certificate names under the
// identity rule "cn", "upn" or "auto" (UPN if any, else CN). A UPN keeps
// its user part when the account name has no "@" (see docs/admin.md):
// the whole UPN is tried first by the caller.
func CertUsername(c *x509.Certificate, rule string) (string, error) {
	var upn string
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSAN) {
			u, err := UPNs(e.Value)
			if err != nil {
				return "", fmt.Errorf("the certificate's subject alternative names: %w", err)
			}
			if len(u) > 0 {
				upn = u[0]
			}
		}
	}
	cn := c.Subject.CommonName
	switch rule {
	case "cn":
		if cn == "" {
			return "", errors.New("the certificate has no subject common name")
		}
		return cn, nil
	case "upn":
		if upn == "" {
			return "", errors.New("the certificate has no User Principal Name (SAN otherName)")
		}
		return upn, nil
	default:
		if upn != "" {
			return upn, nil
		}
		if cn == "" {
			return "", errors.New("the certificate has neither a User Principal Name nor a common name")
		}
		return cn, nil
	}
}

func parseCRL(b []byte) (*x509.RevocationList, error) {
	if p, _ := pem.Decode(b); p != nil {
		b = p.Bytes
	}
	return x509.ParseRevocationList(b)
}

// Revocation checks certificates against a CRL or an OCSP responder.
type Revocation struct {
	// Client fetches CRLs and asks OCSP responders; nil means a client
	// with a 10-second timeout.
	Client *http.Client

	mu    sync.Mutex
	crls  map[string]*x509.RevocationList // by URL
	fetch map[string]time.Time
}

func (rv *Revocation) client() *http.Client {
	if rv.Client != nil {
		return rv.Client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// VerifyClientCert checks a client certificate chain (leaf first) for
// administrator sign-in at now: issued by the configured CA, valid now,
// for client authentication, not revoked; it returns the username it
// names.
func (rv *Revocation) VerifyClientCert(ctx context.Context, s CertSettings, chain []*x509.Certificate, now time.Time) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("no client certificate was presented; choose one in the browser (or install it) and try again")
	}
	leaf := chain[0]
	roots, err := pki.CertPool([]byte(s.CACert))
	if err != nil {
		return "", fmt.Errorf("certificate login is misconfigured: %w", err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if now.After(leaf.NotAfter) {
		return "", fmt.Errorf("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return "", fmt.Errorf("the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return "", fmt.Errorf("the certificate is not issued by the configured CA for client authentication: %w", err)
	}
	issuer := chains[0][min(1, len(chains[0])-1)]
	if err := rv.checkRevoked(ctx, s, leaf, issuer, now); err != nil {
		return "", err
	}
	return CertUsername(leaf, s.Identity)
}

func (rv *Revocation) checkRevoked(ctx context.Context, s CertSettings, leaf, issuer *x509.Certificate, now time.Time) error {
	if s.CRL != "" || s.CRLURL != "" {
		crl, err := rv.crl(ctx, s, now)
		if err != nil {
			return fmt.Errorf("the revocation list cannot be used, so the certificate is refused: %w", err)
		}
		if err := crl.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("the revocation list is not signed by the certificate's issuer: %w", err)
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return fmt.Errorf("the revocation list is out of date (next update was due %s); publish a new one", crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				return fmt.Errorf("the certificate was revoked on %s", e.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
	}
	if s.OCSP {
		url := s.OCSPURL
		if url == "" && len(leaf.OCSPServer) > 0 {
			url = leaf.OCSPServer[0]
		}
		if url == "" {
			return errors.New("OCSP is required but the certificate names no responder and none is configured")
		}
		req, err := ocsp.CreateRequest(leaf, issuer, nil)
		if err != nil {
			return fmt.Errorf("OCSP request: %w", err)
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
		if err != nil {
			return fmt.Errorf("OCSP request: %w", err)
		}
		hr.Header.Set("Content-Type", "application/ocsp-request")
		resp, err := rv.client().Do(hr)
		if err != nil {
			return fmt.Errorf("the OCSP responder cannot be reached, so the certificate is refused: %w", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the OCSP responder answered %s", resp.Status)
		}
		or, err := ocsp.ParseResponseForCert(body, leaf, issuer)
		if err != nil {
			return fmt.Errorf("the OCSP response is not valid: %w", err)
		}
		if !or.NextUpdate.IsZero() && now.After(or.NextUpdate) {
			return errors.New("the OCSP response is out of date")
		}
		switch or.Status {
		case ocsp.Good:
		case ocsp.Revoked:
			return fmt.Errorf("the certificate was revoked on %s (OCSP)", or.RevokedAt.UTC().Format(time.RFC3339))
		default:
			return errors.New("the OCSP responder does not know the certificate")
		}
	}
	return nil
}

// crl returns the configured CRL, fetching CRLURL again when the cached
// copy is past its next update or older than an hour.
func (rv *Revocation) crl(ctx context.Context, s CertSettings, now time.Time) (*x509.RevocationList, error) {
	if s.CRLURL == "" {
		return parseCRL([]byte(s.CRL))
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.crls == nil {
		rv.crls, rv.fetch = map[string]*x509.RevocationList{}, map[string]time.Time{}
	}
	if c := rv.crls[s.CRLURL]; c != nil && now.Before(c.NextUpdate) && now.Sub(rv.fetch[s.CRLURL]) < time.Hour {
		return c, nil
	}
	if !strings.HasPrefix(s.CRLURL, "http://") && !strings.HasPrefix(s.CRLURL, "https://") {
		return nil, fmt.Errorf("the CRL URL %q is not http(s)", s.CRLURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.CRLURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := rv.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", s.CRLURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", s.CRLURL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", s.CRLURL, err)
	}
	c, err := parseCRL(b)
	if err != nil {
		return nil, err
	}
	rv.crls[s.CRLURL], rv.fetch[s.CRLURL] = c, now
	return c, nil
}
