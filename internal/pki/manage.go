package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"conclave/internal/secrets"
)

// Operator-managed certificates: a node's certificate signed by the
// organisation's CA (a CSR made here, the signed chain imported back),
// and CA certificates the node trusts as a client (LDAP, syslog). They
// live under <data>/tls:
//
//	nodes/<node>/pending.key  key of the last CSR, until its certificate is imported
//	nodes/<node>/server.crt   imported chain (leaf first)
//	nodes/<node>/server.key   its key
//	trusted/<name>.crt        imported CA certificates
//
// Every node of a cluster has its own directory; a node serves its own
// imported certificate when it has one, else the generated one.
const (
	nodesDir   = "nodes"
	trustedDir = "trusted"
	pendingKey = "pending.key"
)

// KeyTypes lists the key types a CSR may use.
var KeyTypes = []string{"ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096"}

// CSRRequest describes a certificate signing request.
type CSRRequest struct {
	// KeyType is one of KeyTypes.
	KeyType string `json:"keyType"`
	// CommonName is the subject's CN; empty means the first name.
	CommonName string `json:"commonName"`
	// Organization and Country go in the subject when set.
	Organization string `json:"organization,omitempty"`
	Country      string `json:"country,omitempty"`
	// Names are the DNS names and IP addresses (subject alternative
	// names).
	Names []string `json:"names"`
}

// nodeDir returns <data>/tls/nodes/<node>, checking the node name.
func nodeDir(dataDir, node string) (string, error) {
	if node == "" || strings.ContainsAny(node, `/\`) || node == "." || node == ".." || len(node) > 64 {
		return "", fmt.Errorf("%q is not a valid node name", node)
	}
	return filepath.Join(dataDir, "tls", nodesDir, node), nil
}

// CreateCSR makes a new key for node (kept, sealed by box, until the
// signed certificate is imported) and returns the PEM request: ECDSA
// P-256 with SHA-256, P-384 with SHA-384, RSA 3072 with SHA-256 or RSA
// 4096 with SHA-384.
func CreateCSR(dataDir, node string, req CSRRequest, box *secrets.Box) ([]byte, error) {
	dir, err := nodeDir(dataDir, node)
	if err != nil {
		return nil, err
	}
	hosts, err := splitHosts(req.Names)
	if err != nil {
		return nil, err
	}
	if len(hosts.dns) == 0 && len(hosts.ips) == 0 {
		return nil, errors.New("a certificate request needs at least one DNS name or IP address")
	}
	var key crypto.Signer
	var alg x509.SignatureAlgorithm
	switch req.KeyType {
	case "ecdsa-p256", "":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		alg = x509.ECDSAWithSHA256
	case "ecdsa-p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		alg = x509.ECDSAWithSHA384
	case "rsa-3072":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
		alg = x509.SHA256WithRSA
	case "rsa-4096":
		key, err = rsa.GenerateKey(rand.Reader, 4096)
		alg = x509.SHA384WithRSA
	default:
		return nil, fmt.Errorf("key type %q is not one of %s", req.KeyType, strings.Join(KeyTypes, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	cn := req.CommonName
	if cn == "" {
		cn = hosts.all()[0]
	}
	subj := pkix.Name{CommonName: cn}
	if req.Organization != "" {
		subj.Organization = []string{req.Organization}
	}
	if req.Country != "" {
		subj.Country = []string{req.Country}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj, DNSNames: hosts.dns,
		IPAddresses: hosts.ips, SignatureAlgorithm: alg}, key)
	if err != nil {
		return nil, fmt.Errorf("create the request: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := box.WriteFile(filepath.Join(dir, pendingKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// CertPool is a pool of the certificates of a PEM bundle (the CA setting
// of a directory, a syslog server or certificate login); none is an
// error.
func CertPool(pemText []byte) (*x509.CertPool, error) {
	certs, err := ParseCertificates(pemText)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ParseCertificates returns the certificates of a PEM bundle, in order
// (blocks of other types are passed over); none is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate does not parse: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// ImportCertificate installs the signed certificate chain (PEM, leaf
// first, intermediates after) for node's pending key. The leaf must match
// that key, meet the key policy, be valid at now, be a TLS server
// certificate, and chain to a CA in roots (nil: the system roots and the
// trusted CAs of dataDir; a root included at the end of the chain is
// accepted only if one of those is it). It returns the certificate ready
// to serve.
func ImportCertificate(dataDir, node string, chainPEM []byte, roots *x509.CertPool, now time.Time, box *secrets.Box) (tls.Certificate, error) {
	dir, err := nodeDir(dataDir, node)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := ParseCertificates(chainPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := chain[0]
	keyPEM, err := box.ReadFile(filepath.Join(dir, pendingKey))
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, errors.New("there is no pending certificate request for this node: create a request first, have it signed, then import the certificate")
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return tls.Certificate{}, errors.New("the pending key is damaged; create a new request")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("the pending key is damaged: %w", err)
	}
	signer := key.(crypto.Signer)
	if !publicKeysEqual(signer.Public(), leaf.PublicKey) {
		return tls.Certificate{}, errors.New("the certificate is not for the key of this node's pending request (was it made from another request?)")
	}
	if err := CheckKeyPolicy(leaf.PublicKey); err != nil {
		return tls.Certificate{}, err
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("the certificate is valid from %s to %s, not now", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if roots == nil {
		if roots, err = TrustedPool(dataDir); err != nil {
			return tls.Certificate{}, err
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return tls.Certificate{}, fmt.Errorf("the certificate does not chain to a trusted CA (import the CA certificate first, or include the intermediates): %w", err)
	}
	var certPEM bytes.Buffer
	for _, c := range chain {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c != leaf {
			continue // roots are not sent
		}
		pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if err := box.WriteFile(filepath.Join(dir, ServerKeyFile), keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := secrets.WriteAtomic(filepath.Join(dir, ServerCertFile), certPEM.Bytes(), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	os.Remove(filepath.Join(dir, pendingKey))
	return LoadNode(dataDir, node, box)
}

// LoadNode loads node's imported certificate; fs.ErrNotExist (wrapped)
// when it has none.
func LoadNode(dataDir, node string, box *secrets.Box) (tls.Certificate, error) {
	dir, err := nodeDir(dataDir, node)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := ReadKeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile), box)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node %s certificate: %w", node, err)
	}
	return cert, nil
}

// ImportTrustedCA adds CA certificates (PEM) to those the node trusts as
// a client, under name. Only CA certificates are accepted.
func ImportTrustedCA(dataDir, name string, data []byte) ([]*x509.Certificate, error) {
	if name == "" || strings.ContainsAny(name, `/\. `) || len(name) > 64 {
		return nil, errors.New("give the CA a short name (letters, digits, '-' or '_')")
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("%q is not a CA certificate", c.Subject.CommonName)
		}
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	dir := filepath.Join(dataDir, "tls", trustedDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return certs, secrets.WriteAtomic(filepath.Join(dir, name+".crt"), out.Bytes(), 0o644)
}

// TrustedCAs returns the imported CA certificates by name.
func TrustedCAs(dataDir string) (map[string][]*x509.Certificate, error) {
	dir := filepath.Join(dataDir, "tls", trustedDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]*x509.Certificate{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		certs, err := ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("trusted CA %s: %w", e.Name(), err)
		}
		out[strings.TrimSuffix(e.Name(), ".crt")] = certs
	}
	return out, nil
}

// TrustedPool returns the system roots plus the imported CAs: what the
// node trusts as a client (LDAP over StartTLS, syslog servers) and what
// an imported certificate must chain to.
func TrustedPool(dataDir string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	cas, err := TrustedCAs(dataDir)
	if err != nil {
		return nil, err
	}
	for _, certs := range cas {
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool, nil
}

// Holder serves a certificate that can be replaced while the server runs:
// established connections keep theirs, new handshakes get the new one.
// Use its GetCertificate in the tls.Config.
type Holder struct {
	v atomic.Pointer[tls.Certificate]
}

// NewHolder returns a Holder serving cert.
func NewHolder(cert tls.Certificate) *Holder {
	h := &Holder{}
	h.Store(cert)
	return h
}

// Store replaces the served certificate.
func (h *Holder) Store(cert tls.Certificate) {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	h.v.Store(&cert)
}

// Load returns the served certificate.
func (h *Holder) Load() tls.Certificate { return *h.v.Load() }

// GetCertificate implements tls.Config.GetCertificate.
func (h *Holder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.v.Load(), nil
}

// CertInfo describes a certificate for the admin page and the expiry
// alarms.
type CertInfo struct {
	Role        string    `json:"role"` // "server", "local-ca", "trusted-ca:<name>"
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Names       []string  `json:"names,omitempty"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	KeyType     string    `json:"keyType"`
	Fingerprint string    `json:"fingerprint"`
}

// Describe returns a CertInfo.
func Describe(role string, c *x509.Certificate) CertInfo {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	sort.Strings(names)
	kt := fmt.Sprintf("%T", c.PublicKey)
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		kt = "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		kt = fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return CertInfo{Role: role, Subject: c.Subject.String(), Issuer: c.Issuer.String(), Names: names,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), KeyType: kt, Fingerprint: Fingerprint(c)}
}

// ParseCSR parses a PEM certificate request (tests, the CLI's display).
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("not a PEM certificate request")
	}
	return x509.ParseCertificateRequest(b.Bytes)
}
