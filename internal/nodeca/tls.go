package nodeca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// Suite and Curve are the only cipher suite and key exchange group of
// node-to-node connections.
const (
	Suite = tls.TLS_AES_256_GCM_SHA384
	Curve = tls.CurveP384
)

// Trust is what a node-to-node TLS endpoint checks its peer against.
type Trust struct {
	// Roots holds the cluster CA.
	Roots *x509.CertPool
	// Revoked reports whether a verified peer certificate is revoked; nil
	// means none is.
	Revoked func(*x509.Certificate) bool
	// Roles, when not empty, are the only peer roles accepted. A peer of
	// role RoleBus (an external NATS server) is refused unless Roles
	// names it.
	Roles []string
	// AnyAESGCM accepts TLS_AES_128_GCM_SHA256 besides
	// TLS_AES_256_GCM_SHA384 from a peer with the bus role only: a stock
	// nats-server (a Go TLS 1.3 server without Conclave's preference,
	// see aes256.go) picks AES-128-GCM whenever the client offers it, and
	// crypto/tls gives a client no way not to offer it. `conclave
	// nats-server` negotiates AES-256-GCM; every other peer must.
	AnyAESGCM bool
}

// check verifies the negotiated parameters and the peer of a finished
// handshake.
func (tr Trust) check(cs tls.ConnectionState, needPeer bool) error {
	role := ""
	if len(cs.VerifiedChains) > 0 {
		_, role, _ = Identity(cs.VerifiedChains[0][0])
	}
	if err := checkSuite(cs, tr.AnyAESGCM && role == RoleBus); err != nil {
		return err
	}
	if len(cs.VerifiedChains) == 0 {
		if needPeer {
			return errors.New("the peer presented no node certificate")
		}
		return nil
	}
	leaf := cs.VerifiedChains[0][0]
	if tr.Revoked != nil && tr.Revoked(leaf) {
		return fmt.Errorf("%w (serial %s)", ErrRevoked, SerialOf(leaf))
	}
	_, role, err := Identity(leaf)
	if err != nil {
		return err
	}
	if role == RoleBus && !slices.Contains(tr.Roles, RoleBus) || len(tr.Roles) > 0 && !slices.Contains(tr.Roles, role) {
		return fmt.Errorf("a %s node may not connect here", role)
	}
	return nil
}

// checkSuite refuses a handshake that did not end in TLS 1.3 with
// TLS_AES_256_GCM_SHA384 (or TLS_AES_128_GCM_SHA256 when aes128).
func checkSuite(cs tls.ConnectionState, aes128 bool) error {
	if cs.Version == tls.VersionTLS13 && (cs.CipherSuite == Suite || aes128 && cs.CipherSuite == tls.TLS_AES_128_GCM_SHA256) {
		return nil
	}
	return fmt.Errorf("node-to-node TLS must be TLS 1.3 with TLS_AES_256_GCM_SHA384, got %s with %s",
		tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
}

// RequireAES256 makes a server's TLS configuration made elsewhere (a NATS
// server's, read from its configuration file) follow the node-to-node
// policy of ServerConfig: a ClientHello that cannot negotiate TLS 1.3
// with TLS_AES_256_GCM_SHA384 on P-384 is refused, and so is a finished
// handshake with anything else. The preference of aes256.go makes this
// process choose AES-256-GCM whenever it is offered.
func RequireAES256(c *tls.Config) {
	if c == nil {
		return
	}
	getConfig, verify := c.GetConfigForClient, c.VerifyConnection
	c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if err := checkHello(h); err != nil {
			return nil, err
		}
		if getConfig != nil {
			return getConfig(h)
		}
		return nil, nil
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := checkSuite(cs, false); err != nil {
			return err
		}
		if verify != nil {
			return verify(cs)
		}
		return nil
	}
}

// checkHello refuses a ClientHello that would not negotiate TLS 1.3 with
// TLS_AES_256_GCM_SHA384 on P-384: the client must offer both and prefer
// AES-GCM to ChaCha20 (crypto/tls chooses among AES-GCM suites for such a
// client, and AES-256 first, see aes256.go).
func checkHello(h *tls.ClientHelloInfo) error {
	if !slices.Contains(h.SupportedVersions, tls.VersionTLS13) {
		return errors.New("node-to-node TLS needs TLS 1.3")
	}
	if !slices.Contains(h.CipherSuites, Suite) {
		return errors.New("node-to-node TLS needs TLS_AES_256_GCM_SHA384")
	}
	for _, s := range h.CipherSuites {
		switch s {
		case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384:
			goto preferred
		case tls.TLS_CHACHA20_POLY1305_SHA256:
			return errors.New("node-to-node TLS needs a client that prefers AES-GCM")
		}
	}
preferred:
	if !slices.Contains(h.SupportedCurves, Curve) {
		return errors.New("node-to-node TLS needs the P-384 group")
	}
	return nil
}

// ServerConfig is the TLS configuration of a node-to-node listener
// serving the certificate getCert returns (so that a renewed certificate
// is used from the next handshake). With clientAuth
// tls.RequireAndVerifyClientCert every peer must present a valid,
// unrevoked node certificate; with tls.VerifyClientCertIfGiven a peer
// without one may complete the handshake (the enrolment endpoint), but a
// peer with an invalid one is refused.
func ServerConfig(getCert func() *tls.Certificate, tr Trust, clientAuth tls.ClientAuthType) *tls.Config {
	base := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		CurvePreferences:       []tls.CurveID{Curve},
		ClientAuth:             clientAuth,
		ClientCAs:              tr.Roots,
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := getCert(); c != nil {
				return c, nil
			}
			return nil, errors.New("no node certificate yet")
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return tr.check(cs, clientAuth == tls.RequireAndVerifyClientCert)
		},
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if err := checkHello(h); err != nil {
				return nil, err
			}
			return base, nil
		},
	}
}

// ClientConfig is the TLS configuration of a node-to-node client
// presenting the certificate getCert returns (none yet when it returns
// nil, for enrolment), verifying the server against tr, with serverName
// the name or address the server's certificate must cover.
func ClientConfig(getCert func() *tls.Certificate, tr Trust, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{Curve},
		RootCAs:          tr.Roots,
		ServerName:       serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := getCert(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error { return tr.check(cs, true) },
	}
}
