// Package nodeca is the trust between Conclave's nodes: the cluster's
// internal certificate authority, kept by the management node, which
// issues each node a certificate after a one-time enrolment token, renews
// it before it expires and revokes it when the node is removed; and the
// TLS configuration every node-to-node connection uses (mutually
// authenticated TLS 1.3 with TLS_AES_256_GCM_SHA384 and P-384 only).
//
// The cluster CA is its own authority, apart from the web CA of
// internal/pki: browsers never trust it, and a web certificate can never
// pass for a node.
package nodeca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"conclave/internal/clock"
	"conclave/internal/pki"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// Node roles.
const (
	RoleManagement = "management"
	RoleConference = "conference"
	RoleEdge       = "edge"
	// RoleBus is the role of the certificate of an external NATS server
	// (conclave cluster nats-config): good only for serving the bus, never
	// accepted from a peer unless a Trust names it.
	RoleBus = "bus"
)

// Lifetimes.
const (
	// CertLifetime is how long a node certificate is valid (90 days). A
	// node renews it once RenewAfter of it has passed, so that it always
	// has 60 days left in normal operation, and a node cut off from the
	// management node keeps working that long.
	CertLifetime = 90 * 24 * time.Hour
	// RenewAfter is the fraction of CertLifetime after which a node asks
	// for a new certificate.
	RenewAfter = 1.0 / 3
	// TokenLifetime is how long an enrolment token stays valid unless the
	// administrator says otherwise.
	TokenLifetime = 24 * time.Hour
	caLifetime    = 10 * 365 * 24 * time.Hour
)

// URIPrefix starts the URI subject alternative name that carries a
// node's name and role in its certificate: urn:conclave:node:ROLE:NAME.
const URIPrefix = "urn:conclave:node:"

// EnrolmentPrefix starts a second URI subject alternative name of a
// conference or edge node's certificate, naming the enrolment it belongs
// to: urn:conclave:enrolment:ROLE:NAME:ENROLLED, ENROLLED the enrolment
// time in Unix nanoseconds. Every certificate of one enrolment (renewals
// included) carries the same one; a node removed and enrolled again under
// the same name gets another, so that an identity keyed on it (a user of
// an external NATS server) does not admit the revoked certificates of the
// earlier enrolment.
const EnrolmentPrefix = "urn:conclave:enrolment:"

// Errors.
var (
	// ErrBadToken: the token is unknown, used or expired.
	ErrBadToken = errors.New("the enrolment token is unknown, already used or expired; ask the administrator for a new one (conclave cluster add-node)")
	// ErrRevoked: the certificate was revoked.
	ErrRevoked = errors.New("the node certificate is revoked")
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName reports, as a user-facing error, why name cannot name a node:
// 1 to 63 lower-case letters, digits and '-', starting with a letter or a
// digit.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("the node name %q is not valid: use 1 to 63 lower-case letters, digits and '-', starting with a letter or a digit", name)
	}
	return nil
}

// ValidRole reports whether role can be enrolled (the management node is
// not enrolled: it holds the CA).
func ValidRole(role string) error {
	if role != RoleConference && role != RoleEdge {
		return fmt.Errorf("the node role %q is not valid: use conference or edge", role)
	}
	return nil
}

// CA is the cluster's certificate authority, on the management node.
type CA struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	pem   []byte
	store store.NodeStore
	clk   clock.Clock

	mu      sync.RWMutex
	revoked map[string]bool // serials
	crlURL  string
}

// SetCRLURL sets the CRL distribution point written into the
// certificates issued from now on (the cluster listener serves the CRL).
func (ca *CA) SetCRLURL(u string) {
	ca.mu.Lock()
	ca.crlURL = u
	ca.mu.Unlock()
}

// CRL returns a revocation list of the revoked node certificates, signed
// by the CA, valid for a day.
func (ca *CA) CRL(ctx context.Context) ([]byte, error) {
	certs, err := ca.store.RevokedNodeCerts(ctx, ca.clk.Now())
	if err != nil {
		return nil, err
	}
	now := ca.clk.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(now.Unix()), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}
	for _, c := range certs {
		serial, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			continue
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: serial, RevocationTime: c.RevokedAt})
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
}

// Files of the CA in its directory.
const (
	caCertFile = "cluster-ca.pem"
	caKeyFile  = "cluster-ca-key.pem"
)

// Open loads the CA from dir, creating a new P-384 CA there on first use,
// and loads the revoked serials from st.
func Open(dir string, org string, st store.NodeStore, clk clock.Clock) (*CA, error) {
	return OpenSealed(dir, org, st, clk, nil)
}

// OpenSealed is Open with the CA key sealed at rest by box (package
// secrets).
func OpenSealed(dir string, org string, st store.NodeStore, clk clock.Clock, box *secrets.Box) (*CA, error) {
	clk = clock.Or(clk)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	ca := &CA{store: st, clk: clk, revoked: map[string]bool{}}
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	err := ca.load(certPath, keyPath, box)
	if errors.Is(err, pki.ErrNoCert) {
		err = ca.create(certPath, keyPath, org, box)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster CA in %s: %w", dir, err)
	}
	if err := ca.RefreshRevoked(context.Background()); err != nil {
		return nil, err
	}
	return ca, nil
}

func (ca *CA) create(certPath, keyPath, org string, box *secrets.Box) error {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return err
	}
	now := ca.clk.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Conclave cluster CA", Organization: []string{org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := pki.WriteKeyPair(certPath, keyPath, der, key, box); err != nil {
		return err
	}
	return ca.load(certPath, keyPath, box)
}

func (ca *CA) load(certPath, keyPath string, box *secrets.Box) error {
	pair, err := pki.ReadKeyPair(certPath, keyPath, box)
	if err != nil {
		return err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P384() {
		return errors.New("the CA key is not the P-384 key of the CA certificate")
	}
	ca.cert, ca.key = pair.Leaf, key
	ca.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Leaf.Raw})
	return nil
}

// Cert is the CA certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() []byte { return ca.pem }

// Pool is a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Fingerprint is "sha256:" and the hexadecimal SHA-256 of the CA
// certificate, which a node pins when it enrols.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert) }

// Fingerprint is "sha256:" and the hexadecimal SHA-256 of c.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewToken makes a one-time enrolment token for a node called name with
// role and location labels, valid for ttl (TokenLifetime when 0). Only
// its hash is stored.
func (ca *CA) NewToken(ctx context.Context, name, role, labels, createdBy string, ttl time.Duration) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	if err := ValidRole(role); err != nil {
		return "", err
	}
	if ttl <= 0 {
		ttl = TokenLifetime
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(token))
	now := ca.clk.Now()
	if err := ca.store.CreateNodeToken(ctx, store.NodeToken{TokenHash: sum[:], Name: name, Role: role, Labels: labels,
		CreatedBy: createdBy, CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
		return "", err
	}
	return token, nil
}

// Issued is a certificate the CA issued to a node.
type Issued struct {
	Node   store.Node
	Cert   *x509.Certificate
	DER    []byte
	Serial string
}

// Enrol consumes token and issues a certificate for the public key of the
// certificate request csrDER, to the node the token names. The request's
// DNS names and IP addresses (the node's node-to-node addresses) go into
// the certificate; its subject is ignored.
func (ca *CA) Enrol(ctx context.Context, token string, csrDER []byte) (Issued, error) {
	csr, err := checkCSR(csrDER)
	if err != nil {
		return Issued{}, err
	}
	sum := sha256.Sum256([]byte(token))
	now := ca.clk.Now()
	t, err := ca.store.ConsumeNodeToken(ctx, sum[:], now)
	if errors.Is(err, store.ErrNotFound) {
		return Issued{}, ErrBadToken
	}
	if err != nil {
		return Issued{}, err
	}
	n := store.Node{Name: t.Name, Role: t.Role, Labels: t.Labels, EnrolledAt: now}
	iss, err := ca.issue(n, csr, now)
	if err != nil {
		return Issued{}, err
	}
	if err := ca.store.EnrolNode(ctx, n, store.NodeCert{Serial: iss.Serial, Node: n.Name, IssuedAt: now,
		NotAfter: iss.Cert.NotAfter, DER: iss.DER}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return Issued{}, fmt.Errorf("a node called %s is already part of the cluster; remove it first (conclave cluster remove-node)", n.Name)
		}
		return Issued{}, err
	}
	return iss, nil
}

// Renew issues a fresh certificate to the node that authenticated with
// peer (already verified against the CA by TLS), for the key of csrDER.
func (ca *CA) Renew(ctx context.Context, peer *x509.Certificate, csrDER []byte) (Issued, error) {
	name, role, err := Identity(peer)
	if err != nil {
		return Issued{}, err
	}
	if ca.Revoked(peer) {
		return Issued{}, ErrRevoked
	}
	csr, err := checkCSR(csrDER)
	if err != nil {
		return Issued{}, err
	}
	n, err := ca.store.NodeByName(ctx, name)
	if err != nil {
		return Issued{}, fmt.Errorf("renew %s: %w", name, err)
	}
	if !n.RemovedAt.IsZero() || n.Role != role {
		return Issued{}, ErrRevoked
	}
	now := ca.clk.Now()
	iss, err := ca.issue(n, csr, now)
	if err != nil {
		return Issued{}, err
	}
	if err := ca.store.AddNodeCert(ctx, store.NodeCert{Serial: iss.Serial, Node: name, IssuedAt: now,
		NotAfter: iss.Cert.NotAfter, DER: iss.DER}); err != nil {
		return Issued{}, err
	}
	return iss, nil
}

// EnrolmentURI is the enrolment URI (EnrolmentPrefix) of the
// certificates of node n in its current enrolment.
func EnrolmentURI(n store.Node) string {
	return EnrolmentPrefix + n.Role + ":" + n.Name + ":" + strconv.FormatInt(n.EnrolledAt.UnixNano(), 10)
}

// Enrolment returns the enrolment URI a certificate carries, or "" for
// a certificate issued before enrolment URIs existed, or not to an
// enrolled node (the management node's, a bus server's).
func Enrolment(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(s, EnrolmentPrefix) {
			return s
		}
	}
	return ""
}

// IssueBus issues the certificate of a server of an external NATS
// cluster (conclave cluster nats-config) for key pub, valid for hosts,
// with the role RoleBus and the name of the NATS cluster: every server of
// one NATS cluster carries the same identity, which their routes
// authenticate each other by. It is not recorded (it is not a node) and
// lives CertLifetime; nats-config issues a new one when a third of that
// is left.
func (ca *CA) IssueBus(pub *ecdsa.PublicKey, hosts []string, cluster string) (*x509.Certificate, error) {
	if err := ValidName(cluster); err != nil {
		return nil, fmt.Errorf("NATS cluster name: %w", err)
	}
	tmpl := &x509.CertificateRequest{PublicKey: pub}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if err := validHost(h); err != nil {
			return nil, err
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(tmpl.IPAddresses)+len(tmpl.DNSNames) == 0 {
		return nil, errors.New("a NATS server certificate needs the host names or addresses the nodes reach it at")
	}
	iss, err := ca.issue(store.Node{Name: cluster, Role: RoleBus}, tmpl, ca.clk.Now())
	if err != nil {
		return nil, err
	}
	return iss.Cert, nil
}

// IssueSelf issues a certificate for the management node itself (its
// cluster listener and its NATS server), for key and the given hosts. It
// is not recorded: the management node holds the CA key anyway.
func (ca *CA) IssueSelf(pub *ecdsa.PublicKey, hosts []string) (*x509.Certificate, error) {
	tmpl := &x509.CertificateRequest{PublicKey: pub}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	iss, err := ca.issue(store.Node{Name: "management", Role: RoleManagement}, tmpl, ca.clk.Now())
	if err != nil {
		return nil, err
	}
	return iss.Cert, nil
}

func (ca *CA) issue(n store.Node, csr *x509.CertificateRequest, now time.Time) (Issued, error) {
	serial := randomSerial()
	u, _ := url.Parse(URIPrefix + n.Role + ":" + n.Name)
	uris := []*url.URL{u}
	if !n.EnrolledAt.IsZero() {
		e, _ := url.Parse(EnrolmentURI(n))
		uris = append(uris, e)
	}
	ca.mu.RLock()
	crl := ca.crlURL
	ca.mu.RUnlock()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: n.Name, OrganizationalUnit: []string{n.Role}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(CertLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         uris,
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
	}
	if crl != "" {
		tmpl.CRLDistributionPoints = []string{crl}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return Issued{}, fmt.Errorf("issue node certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Issued{}, err
	}
	return Issued{Node: n, Cert: cert, DER: der, Serial: hex.EncodeToString(serial.Bytes())}, nil
}

// checkCSR parses a certificate request and checks its signature and that
// its key is ECDSA P-384.
func checkCSR(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("the certificate request does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate request's signature is wrong: %w", err)
	}
	k, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P384() {
		return nil, errors.New("a node key must be ECDSA P-384")
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) > 16 {
		return nil, errors.New("the certificate request names more than 16 addresses")
	}
	for _, d := range csr.DNSNames {
		if err := validHost(d); err != nil {
			return nil, fmt.Errorf("the certificate request: %w", err)
		}
	}
	return csr, nil
}

// hostRE is a host name: dot-separated labels of letters, digits and
// '-', none empty.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$`)

// validHost checks that h is a host name. A certificate's DNS names must
// be nothing else: an external NATS server maps a certificate to a user
// by its DNS names before its URIs (verify_and_map), so a DNS name
// spelling another node's identity URI would take that node's place.
func validHost(h string) error {
	if len(h) > 253 || !hostRE.MatchString(h) {
		return fmt.Errorf("%q is not a host name", h)
	}
	return nil
}

// Remove takes a node out of the cluster and revokes its certificates at
// once: the running cluster refuses it from its next connection.
func (ca *CA) Remove(ctx context.Context, name string) error {
	if err := ca.store.RemoveNode(ctx, name, ca.clk.Now()); err != nil {
		return err
	}
	return ca.RefreshRevoked(ctx)
}

// RefreshRevoked reloads the revoked serials from the store.
func (ca *CA) RefreshRevoked(ctx context.Context) error {
	certs, err := ca.store.RevokedNodeCerts(ctx, ca.clk.Now())
	if err != nil {
		return err
	}
	m := make(map[string]bool, len(certs))
	for _, c := range certs {
		m[c.Serial] = true
	}
	ca.mu.Lock()
	ca.revoked = m
	ca.mu.Unlock()
	return nil
}

// RevokedSerials lists the revoked serials, for distribution to nodes.
func (ca *CA) RevokedSerials() []string {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	out := make([]string, 0, len(ca.revoked))
	for s := range ca.revoked {
		out = append(out, s)
	}
	return out
}

// Revoked reports whether c is revoked.
func (ca *CA) Revoked(c *x509.Certificate) bool {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.revoked[hex.EncodeToString(c.SerialNumber.Bytes())]
}

// Identity returns the node name and role a node certificate carries.
func Identity(c *x509.Certificate) (name, role string, err error) {
	for _, u := range c.URIs {
		s := u.String()
		if !strings.HasPrefix(s, URIPrefix) {
			continue
		}
		role, name, ok := strings.Cut(strings.TrimPrefix(s, URIPrefix), ":")
		if ok && ValidName(name) == nil {
			return name, role, nil
		}
	}
	return "", "", errors.New("the certificate names no Conclave node")
}

// SerialOf is a certificate's serial as the store keeps it.
func SerialOf(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40 // never a leading zero byte
	return new(big.Int).SetBytes(b)
}
