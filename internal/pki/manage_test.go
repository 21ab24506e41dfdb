package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"strings"
	"testing"
	"time"

	"conclave/internal/secrets"
)

// testCA is an organisation's CA that signs the requests in these tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example Org Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return testCA{cert, key, pool}
}

// sign signs a PEM request as a server certificate.
func (ca testCA) sign(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	req, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: req.Subject, DNSNames: req.DNSNames,
		IPAddresses: req.IPAddresses, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, req.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// A request of each key type carries the names and the algorithm the
// operator's guide asks for (ECDSA P-256/SHA-256, P-384/SHA-384, RSA of
// 3072 bits or more); signed by the organisation's CA it imports for its
// node, sealed under the master key, and loads per node.
func TestCSRKeyTypesAndImport(t *testing.T) {
	box, _ := secrets.New(bytes.Repeat([]byte{9}, secrets.KeySize))
	ca := newTestCA(t)
	for _, c := range []struct {
		keyType string
		alg     x509.SignatureAlgorithm
		check   func(pub any) bool
	}{
		{"ecdsa-p256", x509.ECDSAWithSHA256, func(p any) bool { k, ok := p.(*ecdsa.PublicKey); return ok && k.Curve == elliptic.P256() }},
		{"ecdsa-p384", x509.ECDSAWithSHA384, func(p any) bool { k, ok := p.(*ecdsa.PublicKey); return ok && k.Curve == elliptic.P384() }},
		{"rsa-3072", x509.SHA256WithRSA, func(p any) bool { k, ok := p.(*rsa.PublicKey); return ok && k.N.BitLen() == 3072 }},
		{"rsa-4096", x509.SHA384WithRSA, func(p any) bool { k, ok := p.(*rsa.PublicKey); return ok && k.N.BitLen() == 4096 }},
	} {
		t.Run(c.keyType, func(t *testing.T) {
			dir := t.TempDir()
			csrPEM, err := CreateCSR(dir, "node-a", CSRRequest{KeyType: c.keyType, Names: []string{"meet.example.org", "192.0.2.7"}, Organization: "Example Org"}, box)
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseCSR(csrPEM)
			if err != nil || req.CheckSignature() != nil {
				t.Fatalf("the request does not verify: %v", err)
			}
			if req.SignatureAlgorithm != c.alg || !c.check(req.PublicKey) {
				t.Fatalf("request signed with %v, key %T", req.SignatureAlgorithm, req.PublicKey)
			}
			if len(req.DNSNames) != 1 || req.DNSNames[0] != "meet.example.org" || len(req.IPAddresses) != 1 || req.Subject.CommonName != "meet.example.org" {
				t.Fatalf("names %v %v, CN %q", req.DNSNames, req.IPAddresses, req.Subject.CommonName)
			}
			cert, err := ImportCertificate(dir, "node-a", ca.sign(t, csrPEM), ca.pool, time.Now(), box)
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadNode(dir, "node-a", box)
			if err != nil || !bytes.Equal(loaded.Certificate[0], cert.Certificate[0]) {
				t.Fatalf("LoadNode: %v", err)
			}
			if _, err := LoadNode(dir, "node-b", box); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("another node's certificate: %v", err)
			}
		})
	}
	if _, err := CreateCSR(t.TempDir(), "n", CSRRequest{KeyType: "rsa-2048", Names: []string{"x.example.org"}}, nil); err == nil {
		t.Fatal("an RSA 2048 request was made")
	}
}

// An import is refused, and nothing installed, when the certificate does
// not chain to a trusted CA, is not for the pending key, or there is no
// pending request at all.
func TestImportRefusals(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t), newTestCA(t)
	if _, err := ImportCertificate(dir, "n", ca.sign(t, mustCSR(t, t.TempDir())), ca.pool, time.Now(), nil); err == nil || !strings.Contains(err.Error(), "no pending certificate request") {
		t.Fatalf("import without a request: %v", err)
	}
	csrPEM := mustCSR(t, dir)
	if _, err := ImportCertificate(dir, "n", other.sign(t, csrPEM), ca.pool, time.Now(), nil); err == nil || !strings.Contains(err.Error(), "does not chain to a trusted CA") {
		t.Fatalf("a certificate of an untrusted CA: %v", err)
	}
	if _, err := ImportCertificate(dir, "n", ca.sign(t, mustCSR(t, t.TempDir())), ca.pool, time.Now(), nil); err == nil || !strings.Contains(err.Error(), "not for the key") {
		t.Fatalf("a certificate for another request's key: %v", err)
	}
	if _, err := LoadNode(dir, "n", nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused import installed something: %v", err)
	}
	if _, err := ImportCertificate(dir, "n", ca.sign(t, csrPEM), ca.pool, time.Now(), nil); err != nil {
		t.Fatalf("the right certificate after the refusals: %v", err)
	}
}

func mustCSR(t *testing.T, dir string) []byte {
	t.Helper()
	csrPEM, err := CreateCSR(dir, "n", CSRRequest{Names: []string{"meet.example.org"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return csrPEM
}
