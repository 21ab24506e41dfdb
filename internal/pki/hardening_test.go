package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHardening15LocalCANameConstraints (docs/hardening.md, finding 15):
// the generated CA is limited by critical X.509 name constraints to the
// configured hosts, so a stolen CA key cannot sign a certificate that
// clients accept for any other name or address; an old unconstrained CA is
// replaced (with a notice); and the CA key can be taken offline while the
// server certificate stays valid.
func TestHardening15LocalCANameConstraints(t *testing.T) {
	dir := t.TempDir()
	m := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base), CRLURL: "https://conclave.example/pki/ca.crl"})
	ca := m.CACert
	if !ca.PermittedDNSDomainsCritical || len(ca.PermittedDNSDomains) == 0 || len(ca.PermittedIPRanges) == 0 {
		t.Fatalf("CA without critical name constraints: dns %v ips %v critical %v", ca.PermittedDNSDomains, ca.PermittedIPRanges, ca.PermittedDNSDomainsCritical)
	}
	verifyHosts(t, m, testHosts, base)

	// What a thief of the CA key could sign: certificates for other names
	// and addresses. Clients that trust the CA refuse them.
	caKeyPEM, err := os.ReadFile(filepath.Join(dir, "tls", CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ReadKeyPair(filepath.Join(dir, "tls", CACertFile), filepath.Join(dir, "tls", CAKeyFile), nil)
	if err != nil || len(caKeyPEM) == 0 {
		t.Fatal(err)
	}
	forge := func(dns []string, ips []net.IP) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "forged"},
			NotBefore: base.Add(-time.Hour), NotAfter: base.Add(time.Hour), DNSNames: dns, IPAddresses: ips,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), pair.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	roots := mustPool(t, m)
	for _, tc := range []struct {
		name string
		dns  []string
		ips  []net.IP
		host string
	}{
		{"another organisation's site", []string{"bank.example"}, nil, "bank.example"},
		{"a look-alike suffix", []string{"evilconclave.example"}, nil, "evilconclave.example"},
		{"another address", nil, []net.IP{net.ParseIP("198.51.100.7")}, "198.51.100.7"},
	} {
		c := forge(tc.dns, tc.ips)
		if _, err := c.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: roots, CurrentTime: base}); err == nil {
			t.Errorf("%s: a certificate for %s signed with the CA key verifies", tc.name, tc.host)
		}
	}
	if len(m.CRL) == 0 {
		t.Fatal("no revocation list")
	}
	if got := m.Certificate.Leaf.CRLDistributionPoints; len(got) != 1 || got[0] != "https://conclave.example/pki/ca.crl" {
		t.Errorf("server certificate CRL distribution points %v", got)
	}

	// A CA made before the constraints existed is replaced, and the
	// operator is told to trust the new one.
	old := t.TempDir()
	tlsDir := filepath.Join(old, "tls")
	os.MkdirAll(tlsDir, 0o700)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: caNamePrefix + "OLD"},
		NotBefore: base.Add(-time.Hour), NotAfter: base.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err := WriteKeyPair(filepath.Join(tlsDir, CACertFile), filepath.Join(tlsDir, CAKeyFile), der, key, nil); err != nil {
		t.Fatal(err)
	}
	m2 := ensure(t, Options{Dir: old, Hosts: testHosts, Clock: fixedClock(base)})
	if m2.CACert.Subject.CommonName == caNamePrefix+"OLD" || !m2.CACert.PermittedDNSDomainsCritical {
		t.Error("the unconstrained CA was kept")
	}
	if len(m2.Notices) == 0 || !strings.Contains(m2.Notices[0], "trust the new CA") {
		t.Errorf("notices %q", m2.Notices)
	}

	// Taking the key offline: the server keeps starting with its
	// certificate, and says until when.
	if err := os.Remove(filepath.Join(dir, "tls", CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	off := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base.Add(24 * time.Hour)), CRLURL: "https://conclave.example/pki/ca.crl"})
	if !off.CAKeyOffline || off.Fingerprint != m.Fingerprint || off.Certificate.Leaf.SerialNumber.Cmp(m.Certificate.Leaf.SerialNumber) != 0 || len(off.CRL) == 0 {
		t.Errorf("offline key: offline=%v same CA=%v same cert=%v crl=%d", off.CAKeyOffline, off.Fingerprint == m.Fingerprint,
			off.Certificate.Leaf.SerialNumber.Cmp(m.Certificate.Leaf.SerialNumber) == 0, len(off.CRL))
	}
}

// TestCRLRevokesReplaced: a server certificate that is replaced is listed
// on the CA's revocation list.
func TestCRLRevokesReplaced(t *testing.T) {
	dir := t.TempDir()
	first := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base), CRLURL: "https://a.example/crl"})
	second := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base.Add(time.Hour)), CRLURL: "https://b.example/crl"})
	if first.Certificate.Leaf.SerialNumber.Cmp(second.Certificate.Leaf.SerialNumber) == 0 {
		t.Fatal("a new CRL address did not reissue the certificate")
	}
	l, err := x509.ParseRevocationList(second.CRL)
	if err != nil || l.CheckSignatureFrom(second.CACert) != nil {
		t.Fatalf("CRL: %v", err)
	}
	if len(l.RevokedCertificateEntries) != 1 || l.RevokedCertificateEntries[0].SerialNumber.Cmp(first.Certificate.Leaf.SerialNumber) != 0 {
		t.Fatalf("revoked %+v", l.RevokedCertificateEntries)
	}
}
