package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// cipherSuites returns the TLS 1.2 suites allowed: ECDHE key exchange with
// AES-GCM only. TLS 1.3 suites are not configurable in crypto/tls; all of
// them are AEADs, and in FIPS 140-3 mode crypto/tls keeps only the AES-GCM
// ones.
func cipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	}
}

// curves returns the key exchange groups allowed: P-256 and P-384, the
// groups CCN-STIC-807 approves. X25519 (and the X25519MLKEM768 hybrid) are
// not offered; a browser that sends an X25519 key share first is asked
// for a P-256 one (a HelloRetryRequest, one extra round trip per new
// connection).
func curves() []tls.CurveID {
	return []tls.CurveID{tls.CurveP256, tls.CurveP384}
}

// ServerTLSConfig returns the TLS configuration for Conclave's HTTPS
// listeners serving cert: TLS 1.2 and 1.3 only, ECDHE with AES-GCM suites
// for TLS 1.2, P-256 or P-384 key exchange, no session resumption, and
// ALPN for HTTP/2 and HTTP/1.1.
//
// Session tickets are off. crypto/tls rotates its ticket keys daily but
// keeps each for 7 days and announces a 7-day ticket lifetime, which would
// let one stolen ticket key decrypt a week of resumed sessions; without
// tickets every connection does a full ECDHE handshake (forward secrecy
// per connection) at a cost of one signature, and browsers keep their
// connections open anyway (HTTP/2, the signaling WebSocket).
//
// crypto/tls offers no way to restrict TLS 1.3 suites, so a TLS 1.3 client
// that asks for TLS_CHACHA20_POLY1305_SHA256 gets it; only the FIPS 140-3
// mode (GODEBUG=fips140=on) limits TLS 1.3 to the AES-GCM suites.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS12,
		MaxVersion:             tls.VersionTLS13,
		CipherSuites:           cipherSuites(),
		CurvePreferences:       curves(),
		SessionTicketsDisabled: true,
		NextProtos:             []string{"h2", "http/1.1"},
	}
}

// ClientTLSConfig returns a TLS configuration for Conclave's own clients
// (the native client, health checks, tools) that trusts only the
// certificates in roots and follows the same version, suite and group
// policy as ServerTLSConfig. A nil roots uses the system roots.
func ClientTLSConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs:          roots,
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     cipherSuites(),
		CurvePreferences: curves(),
	}
}

// CAPool returns the roots a client needs to verify the server using m.
// For the local CA that is the CA certificate alone. For an
// operator-provided certificate it is the system roots plus any
// self-signed certificate in the operator's chain (a self-signed leaf or an
// included root).
func CAPool(m *Material) (*x509.CertPool, error) {
	if m.CACert != nil {
		pool := x509.NewCertPool()
		pool.AddCert(m.CACert)
		return pool, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("pki: load system roots: %w", err)
	}
	for i, der := range m.Certificate.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate %d of the chain: %w", i, err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			pool.AddCert(c)
		}
	}
	return pool, nil
}
