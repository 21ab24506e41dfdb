package authn_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"conclave/internal/authn"
	"conclave/internal/testutil/testca"
)

func TestCertUsername(t *testing.T) {
	ca := testca.New(t, "CA")
	both := ca.Issue(t, testca.Options{CN: "Alice Liddell", UPN: "alice@corp.example"})
	cnOnly := ca.Issue(t, testca.Options{CN: "root"})
	for _, c := range []struct {
		cert *x509.Certificate
		rule string
		want string
	}{
		{both.Cert, "upn", "alice@corp.example"},
		{both.Cert, "auto", "alice@corp.example"},
		{both.Cert, "cn", "Alice Liddell"},
		{cnOnly.Cert, "auto", "root"},
		{cnOnly.Cert, "cn", "root"},
		{cnOnly.Cert, "upn", ""},
	} {
		got, err := authn.CertUsername(c.cert, c.rule)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%s under %q: %q, %v; want %q", c.cert.Subject.CommonName, c.rule, got, err, c.want)
		}
	}
}

func TestVerifyClientCertForeignCA(t *testing.T) {
	ca, other := testca.New(t, "CA"), testca.New(t, "Other")
	s := authn.CertSettings{Enabled: true, CACert: ca.PEM(), Identity: "auto"}
	leaf := other.Issue(t, testca.Options{CN: "root"})
	_, err := (&authn.Revocation{}).VerifyClientCert(context.Background(), s, []*x509.Certificate{leaf.Cert}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "not issued by the configured CA") {
		t.Fatalf("a certificate of another CA: %v", err)
	}
	server := ca.Issue(t, testca.Options{CN: "root", Server: true})
	if _, err := (&authn.Revocation{}).VerifyClientCert(context.Background(), s, []*x509.Certificate{server.Cert}, time.Now()); err == nil {
		t.Fatal("a server certificate was taken for client authentication")
	}
}

// FuzzUPNs: the subjectAltName parser never panics on what a client's
// certificate carries, and finds the UPN of a well-formed extension.
func FuzzUPNs(f *testing.F) {
	ca := testca.New(f, "CA")
	leaf := ca.Issue(f, testca.Options{CN: "x", UPN: "alice@corp.example"})
	for _, e := range leaf.Cert.Extensions {
		if e.Id.String() == "2.5.29.17" {
			f.Add(e.Value)
		}
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x03, 0xa0, 0x01, 0x06})
	f.Fuzz(func(t *testing.T, b []byte) {
		upns, err := authn.UPNs(b)
		if err != nil && len(upns) > 0 {
			t.Fatal("names and an error")
		}
	})
}
