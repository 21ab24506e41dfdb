// Package testca makes certificate authorities, certificates and
// revocation lists for tests: a directory's server certificate, an
// administrator's client certificate with a CN or a UPN, an expired or
// revoked one.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert   *x509.Certificate
	Key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// New makes a CA valid from an hour ago for ten years.
func New(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: c, Key: key}
	ca.serial.Store(1)
	return ca
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
}

// Leaf is an issued certificate and its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertPEM and KeyPEM encode the leaf.
func (l Leaf) CertPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw}))
}

// KeyPEM is the leaf's private key in PKCS#8 PEM.
func (l Leaf) KeyPEM() string {
	der, _ := x509.MarshalPKCS8PrivateKey(l.Key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// Signer is the leaf's key.
func (l Leaf) Signer() crypto.Signer { return l.Key }

// Options shape an issued certificate.
type Options struct {
	CN        string
	UPN       string // a SAN otherName UPN (1.3.6.1.4.1.311.20.2.3)
	IPs       []net.IP
	DNS       []string
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in a year
	Server    bool      // server authentication instead of client
	OCSP      string    // OCSP responder URL
}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// upnSAN encodes a subjectAltName holding one otherName UPN.
func upnSAN(upn string) []byte {
	val, _ := asn1.MarshalWithParams(upn, "utf8")
	inner, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: val})
	oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3})
	other, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, inner...)})
	seq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: other})
	return seq
}

// Issue makes a certificate.
func (ca *CA) Issue(t testing.TB, o Options) Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().AddDate(1, 0, 0)
	}
	eku := x509.ExtKeyUsageClientAuth
	if o.Server {
		eku = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial.Add(1)), Subject: pkix.Name{CommonName: o.CN},
		NotBefore: o.NotBefore, NotAfter: o.NotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, IPAddresses: o.IPs, DNSNames: o.DNS}
	if o.OCSP != "" {
		tmpl.OCSPServer = []string{o.OCSP}
	}
	if o.UPN != "" {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSAN, Value: upnSAN(o.UPN)}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return Leaf{Cert: c, Key: key}
}

// CRL makes a revocation list of the given certificates, valid from an
// hour ago until nextUpdate, in PEM.
func (ca *CA) CRL(t testing.TB, nextUpdate time.Time, revoked ...*x509.Certificate) string {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(ca.serial.Add(1)),
		ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: nextUpdate, RevokedCertificateEntries: entries}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// WriteFile writes text to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
