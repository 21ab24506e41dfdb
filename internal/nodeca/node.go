package nodeca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"conclave/internal/secrets"
)

// Files of a node's identity in its data directory.
const (
	nodeCertFile = "node.pem"
	nodeKeyFile  = "node-key.pem"
)

// Paths of the cluster listener's endpoints (on the management node).
const (
	EnrolPath = "/cluster/v1/enrol"
	RenewPath = "/cluster/v1/renew"
	CRLPath   = "/cluster/v1/crl"
)

// Node is a node's identity: its key and certificate from the cluster CA,
// and the CA it trusts. The certificate is swapped atomically when it is
// renewed.
type Node struct {
	dir   string
	box   *secrets.Box // seals the key at rest; nil keeps it clear
	cert  atomic.Pointer[tls.Certificate]
	roots *x509.CertPool
	ca    *x509.Certificate
}

// LoadNode reads the identity a node saved in dir at enrolment, its key
// in the clear.
func LoadNode(dir string) (*Node, error) { return LoadNodeSealed(dir, nil) }

// LoadNodeSealed is LoadNode with the node's key sealed at rest by box
// (package secrets): a key saved in the clear is read and sealed at
// once, so that turning the master key on protects an enrolled node too.
func LoadNodeSealed(dir string, box *secrets.Box) (*Node, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("this node has not enrolled yet (conclave node enrol): %w", err)
	}
	n := &Node{dir: dir, box: box}
	if err := n.setCA(caPEM); err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, nodeCertFile))
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	keyPath := filepath.Join(dir, nodeKeyFile)
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	keyPEM, err := box.Open(keyPath, raw)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if box.Enabled() && !secrets.Sealed(raw) {
		if err := box.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("seal the node key: %w", err)
		}
	}
	n.cert.Store(&c)
	return n, nil
}

func (n *Node) setCA(caPEM []byte) error {
	b, _ := pem.Decode(caPEM)
	if b == nil {
		return errors.New("the cluster CA file holds no certificate")
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	n.ca = ca
	n.roots = x509.NewCertPool()
	n.roots.AddCert(ca)
	return nil
}

// Certificate returns the current certificate.
func (n *Node) Certificate() *tls.Certificate { return n.cert.Load() }

// Leaf is the current certificate, parsed.
func (n *Node) Leaf() *x509.Certificate { return n.cert.Load().Leaf }

// Roots is a pool holding the cluster CA.
func (n *Node) Roots() *x509.CertPool { return n.roots }

// Name and Role of the node, from its certificate.
func (n *Node) Name() string { name, _, _ := Identity(n.Leaf()); return name }

// Role of the node, from its certificate.
func (n *Node) Role() string { _, role, _ := Identity(n.Leaf()); return role }

// NeedsRenewal reports whether RenewAfter of the certificate's lifetime
// has passed at now.
func (n *Node) NeedsRenewal(now time.Time) bool {
	l := n.Leaf()
	life := l.NotAfter.Sub(l.NotBefore)
	return now.After(l.NotBefore.Add(time.Duration(float64(life) * RenewAfter)))
}

// newKeyAndCSR makes a P-384 key and a request for hosts.
func newKeyAndCSR(hosts []string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	return key, csr, err
}

// enrolRequest and enrolResponse are the cluster listener's JSON bodies.
type enrolRequest struct {
	Token string `json:"token,omitempty"`
	CSR   []byte `json:"csr"`
}

type enrolResponse struct {
	Cert  []byte `json:"cert"`
	CA    []byte `json:"ca"`
	Error string `json:"error,omitempty"`
}

// Enrol makes a key, asks the management node's cluster listener at addr
// (host:port) for a certificate with the one-time token, and saves the
// identity in dir. pin is the cluster CA's fingerprint ("sha256:..."), as
// `conclave cluster add-node` prints it: the management node is trusted
// only if its certificate chains to a CA with that fingerprint. hosts are
// the node's node-to-node addresses, which its certificate will cover.
func Enrol(ctx context.Context, dir, addr, token, pin string, hosts []string) (*Node, error) {
	return EnrolSealed(ctx, dir, addr, token, pin, hosts, nil)
}

// EnrolSealed is Enrol with the node's key sealed at rest by box.
func EnrolSealed(ctx context.Context, dir, addr, token, pin string, hosts []string, box *secrets.Box) (*Node, error) {
	if !strings.HasPrefix(pin, "sha256:") {
		return nil, errors.New("the CA pin must look like sha256:<64 hexadecimal digits>, as conclave cluster add-node prints it")
	}
	key, csr, err := newKeyAndCSR(hosts)
	if err != nil {
		return nil, err
	}
	pinned := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{Curve},
		InsecureSkipVerify: true, // verified against the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			certs := cs.PeerCertificates
			if len(certs) < 2 {
				return errors.New("the management node sent no CA certificate")
			}
			ca := certs[len(certs)-1]
			if Fingerprint(ca) != strings.ToLower(pin) {
				return fmt.Errorf("the management node's CA is %s, not the pinned %s: refusing to enrol", Fingerprint(ca), pin)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the management node's certificate: %w", err)
			}
			return Trust{}.check(cs, false)
		},
	}
	resp, err := post(ctx, pinned, addr, EnrolPath, enrolRequest{Token: token, CSR: csr})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, caCertFile), resp.CA, 0o644); err != nil {
		return nil, err
	}
	n := &Node{dir: dir, box: box}
	if err := n.setCA(resp.CA); err != nil {
		return nil, err
	}
	if err := n.save(key, resp.Cert); err != nil {
		return nil, err
	}
	return n, nil
}

// Renew asks the management node at addr for a new certificate for a new
// key, authenticating with the current one, and saves it.
func (n *Node) Renew(ctx context.Context, addr string) error {
	key, csr, err := newKeyAndCSR(append(ipStrings(n.Leaf().IPAddresses), n.Leaf().DNSNames...))
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	conf := ClientConfig(n.Certificate, Trust{Roots: n.roots, Roles: []string{RoleManagement}}, host)
	resp, err := post(ctx, conf, addr, RenewPath, enrolRequest{CSR: csr})
	if err != nil {
		return err
	}
	return n.save(key, resp.Cert)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// save writes key and certificate (PEM) and makes them current.
func (n *Node) save(key *ecdsa.PrivateKey, certPEM []byte) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the issued certificate does not match the key: %w", err)
	}
	// The chain and usage are checked here; the validity period at each
	// handshake, by the peer's clock.
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: n.roots, CurrentTime: c.Leaf.NotBefore.Add(time.Minute),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the issued certificate does not chain to the cluster CA: %w", err)
	}
	if err := n.box.WriteFile(filepath.Join(n.dir, nodeKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := secrets.WriteAtomic(filepath.Join(n.dir, nodeCertFile), certPEM, 0o644); err != nil {
		return err
	}
	n.cert.Store(&c)
	return nil
}

func post(ctx context.Context, conf *tls.Config, addr, path string, body enrolRequest) (enrolResponse, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: false}}
	defer hc.CloseIdleConnections()
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(data))
	if err != nil {
		return enrolResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return enrolResponse{}, fmt.Errorf("reach the management node at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	var out enrolResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return enrolResponse{}, fmt.Errorf("management node at %s: %s, unreadable answer", addr, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return enrolResponse{}, fmt.Errorf("management node at %s: %s", addr, out.Error)
	}
	return out, nil
}
