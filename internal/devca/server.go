package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"conclave/internal/pki"
)

// The SIP edge's own certificate is issued by the device CA too, so that
// a device trusts one anchor — the CA file it receives at enrolment — for
// both directions of its mutual TLS, and so that the edge's certificate
// carries a revocation list and an OCSP responder like every other.
const (
	serverCertValidity = 365 * 24 * time.Hour
	serverRenewBefore  = 30 * 24 * time.Hour
)

// ServerCertificate returns the SIP edge's TLS certificate for hosts
// (names and addresses), kept in the CA directory and issued again when it
// is missing, expires within 30 days, or does not cover every host.
func (a *Authority) ServerCertificate(hosts []string) (tls.Certificate, error) {
	certPath := filepath.Join(a.cfg.Dir, "sip-server.crt")
	keyPath := filepath.Join(a.cfg.Dir, "sip-server.key")
	now := a.clock.Now()
	if pair, err := pki.ReadKeyPair(certPath, keyPath, a.cfg.Box); err == nil {
		leaf := pair.Leaf
		if a.sameIssuer(leaf) && leaf.NotAfter.Sub(now) > serverRenewBefore && coversAll(leaf, hosts) {
			a.addServerSerial(leaf)
			return pair, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{a.cfg.OrgName}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(serverCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		CRLDistributionPoints: []string{a.endpoint(CRLPath)},
		OCSPServer:            []string{a.endpoint(OCSPPath)},
		AuthorityKeyId:        a.ca.SubjectKeyId,
	}
	if tmpl.NotAfter.After(a.ca.NotAfter) {
		tmpl.NotAfter = a.ca.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, key.Public(), a.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue the SIP server certificate: %w", err)
	}
	if err := pki.WriteKeyPair(certPath, keyPath, der, key, a.cfg.Box); err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	a.addServerSerial(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: crypto.Signer(key), Leaf: leaf}, nil
}

func (a *Authority) addServerSerial(c *x509.Certificate) {
	a.mu.Lock()
	if a.serverSerials == nil {
		a.serverSerials = map[string]bool{}
	}
	a.serverSerials[SerialString(c.SerialNumber)] = true
	a.mu.Unlock()
}

func coversAll(leaf *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, strings.ToLower(h)) {
			return false
		}
	}
	return true
}
