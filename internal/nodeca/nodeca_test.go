package nodeca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

type cluster struct {
	ca  *CA
	st  *store.DB
	clk *fakeclock.Clock
	ln  *Listener
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := fakeclock.New(time.Now())
	ca, err := Open(t.TempDir(), "Example", st, clk)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(ca, "127.0.0.1:0", []string{"127.0.0.1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &cluster{ca: ca, st: st, clk: clk, ln: ln}
}

func (c *cluster) enrol(t *testing.T, name string) *Node {
	t.Helper()
	tok, err := c.ca.NewToken(context.Background(), name, RoleConference, "paris", "root", 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Enrol(context.Background(), t.TempDir(), c.ln.Addr().String(), tok, c.ca.Fingerprint(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("enrol %s: %v", name, err)
	}
	return n
}

func TestEnrolRenewRemove(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	addr := c.ln.Addr().String()
	var enrolments atomic.Int32
	c.ln.OnEnrol(func() { enrolments.Add(1) })
	defer func() {
		// Each refused attempt below leaves it alone; the one enrolment
		// runs it once.
		if n := enrolments.Load(); n != 1 {
			t.Errorf("OnEnrol ran %d times, want once", n)
		}
	}()

	tok, err := c.ca.NewToken(ctx, "paris-1", RoleConference, "paris", "root", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Enrol(ctx, t.TempDir(), addr, tok, "sha256:"+strings.Repeat("0", 64), nil); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("enrolment with a wrong pin = %v, want a pin mismatch", err)
	}
	dir := t.TempDir()
	n, err := Enrol(ctx, dir, addr, tok, c.ca.Fingerprint(), []string{"127.0.0.1", "node1.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := n.Leaf()
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() || leaf.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("node certificate key %T, signature %v; want P-384 and ECDSA-SHA384", leaf.PublicKey, leaf.SignatureAlgorithm)
	}
	if n.Name() != "paris-1" || n.Role() != RoleConference || leaf.DNSNames[0] != "node1.example.org" {
		t.Errorf("identity %s/%s %v", n.Name(), n.Role(), leaf.DNSNames)
	}
	if got := leaf.NotAfter.Sub(c.clk.Now()); got < CertLifetime-time.Hour || got > CertLifetime {
		t.Errorf("lifetime %v, want %v", got, CertLifetime)
	}
	if _, err := Enrol(ctx, t.TempDir(), addr, tok, c.ca.Fingerprint(), nil); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("second use of the token = %v, want refused", err)
	}
	if again, err := LoadNode(dir); err != nil || again.Name() != "paris-1" {
		t.Errorf("LoadNode = %v", err)
	}

	// Rotation: not yet due; due after two thirds of the lifetime.
	if n.NeedsRenewal(c.clk.Now()) {
		t.Error("a new certificate needs renewal")
	}
	c.clk.Advance(31 * 24 * time.Hour)
	if !n.NeedsRenewal(c.clk.Now()) {
		t.Error("a certificate two thirds through its life does not need renewal")
	}
	old := n.Leaf()
	if err := n.Renew(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if SerialOf(n.Leaf()) == SerialOf(old) || n.Leaf().PublicKey.(*ecdsa.PublicKey).Equal(old.PublicKey) {
		t.Error("renewal kept the serial or the key")
	}
	certs, _ := c.st.NodeCerts(ctx, "paris-1")
	if len(certs) != 2 {
		t.Errorf("%d certificates recorded, want 2", len(certs))
	}

	// Removal revokes every certificate: renewal and any connection with
	// it are refused during the handshake.
	if err := c.ca.Remove(ctx, "paris-1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Renew(ctx, addr); err == nil {
		t.Fatal("a removed node renewed its certificate")
	}
}

// TestHandshakeParameters: node-to-node connections between Go nodes
// negotiate TLS 1.3, TLS_AES_256_GCM_SHA384 and P-384, and present node
// certificates on both sides.
func TestHandshakeParameters(t *testing.T) {
	c := newCluster(t)
	a, b := c.enrol(t, "node-a"), c.enrol(t, "node-b")
	tr := Trust{Roots: c.ca.Pool(), Revoked: c.ca.Revoked}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(a.Certificate, tr, tls.RequireAndVerifyClientCert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := make(chan tls.ConnectionState, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if tc.Handshake() == nil {
			server <- tc.ConnectionState()
			io.Copy(io.Discard, tc)
		} else {
			close(server)
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), ClientConfig(b.Certificate, tr, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	if cs.Version != tls.VersionTLS13 || cs.CipherSuite != tls.TLS_AES_256_GCM_SHA384 || cs.CurveID != tls.CurveP384 {
		t.Errorf("negotiated %s %s %v", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	}
	scs, ok := <-server
	if !ok {
		t.Fatal("server handshake failed")
	}
	if name, _, _ := Identity(scs.PeerCertificates[0]); name != "node-b" {
		t.Errorf("server sees peer %q", name)
	}
}

// TestRefusedPeers: a peer without a certificate, with one from another
// CA, or with a revoked one does not get a connection.
func TestRefusedPeers(t *testing.T) {
	c := newCluster(t)
	a, b := c.enrol(t, "node-a"), c.enrol(t, "node-b")
	tr := Trust{Roots: c.ca.Pool(), Revoked: c.ca.Revoked}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(a.Certificate, tr, tls.RequireAndVerifyClientCert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if conn.(*tls.Conn).Handshake() == nil {
					conn.Write([]byte("hello"))
				}
			}()
		}
	}()
	try := func(getCert func() *tls.Certificate) error {
		conn, err := tls.Dial("tcp", ln.Addr().String(), ClientConfig(getCert, Trust{Roots: c.ca.Pool()}, "127.0.0.1"))
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 5)
		_, err = io.ReadFull(conn, buf)
		return err
	}
	if err := try(b.Certificate); err != nil {
		t.Fatalf("a valid node is refused: %v", err)
	}
	if err := try(func() *tls.Certificate { return nil }); err == nil {
		t.Error("a peer without a certificate got through")
	}
	if err := try(func() *tls.Certificate { return foreignCert(t) }); err == nil {
		t.Error("a peer with another CA's certificate got through")
	}
	if err := c.ca.Remove(context.Background(), "node-b"); err != nil {
		t.Fatal(err)
	}
	if err := try(b.Certificate); err == nil {
		t.Error("a removed (revoked) node got through")
	}
}

// foreignCert is a self-signed P-384 certificate that claims a node name.
func foreignCert(t *testing.T) *tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "node-x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestCheckHello(t *testing.T) {
	all := []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}
	v13 := []uint16{tls.VersionTLS13}
	p384 := []tls.CurveID{tls.X25519, tls.CurveP384}
	for _, c := range []struct {
		name   string
		hello  tls.ClientHelloInfo
		wantOK bool
	}{
		{"go client", tls.ClientHelloInfo{CipherSuites: all, SupportedVersions: v13, SupportedCurves: p384}, true},
		{"aes-256 only", tls.ClientHelloInfo{CipherSuites: all[1:2], SupportedVersions: v13, SupportedCurves: p384}, true},
		{"aes-128 only", tls.ClientHelloInfo{CipherSuites: all[:1], SupportedVersions: v13, SupportedCurves: p384}, false},
		{"chacha first", tls.ClientHelloInfo{CipherSuites: []uint16{all[2], all[1]}, SupportedVersions: v13, SupportedCurves: p384}, false},
		{"tls 1.2", tls.ClientHelloInfo{CipherSuites: all, SupportedVersions: []uint16{tls.VersionTLS12}, SupportedCurves: p384}, false},
		{"no p-384", tls.ClientHelloInfo{CipherSuites: all, SupportedVersions: v13, SupportedCurves: []tls.CurveID{tls.X25519}}, false},
	} {
		if err := checkHello(&c.hello); (err == nil) != c.wantOK {
			t.Errorf("%s: checkHello = %v, want ok=%v", c.name, err, c.wantOK)
		}
	}
}

func TestPreferAES256(t *testing.T) {
	l := []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}
	preferAES256(l)
	if l[0] != tls.TLS_AES_256_GCM_SHA384 || l[1] != tls.TLS_AES_128_GCM_SHA256 || l[2] != tls.TLS_CHACHA20_POLY1305_SHA256 {
		t.Errorf("preferAES256 = %x", l)
	}
}

// TestEnrolmentIdentity: every certificate of one enrolment names it
// (renewals included), an enrolment after a removal names another, and
// a certificate request whose DNS name is not a host name is refused, so
// that it cannot spell another identity for a server that maps
// certificates to users by their names (an external NATS server).
func TestEnrolmentIdentity(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	addr := c.ln.Addr().String()
	n := c.enrol(t, "paris-1")
	rec, err := c.st.NodeByName(ctx, "paris-1")
	if err != nil {
		t.Fatal(err)
	}
	first := Enrolment(n.Leaf())
	if first == "" || first != EnrolmentURI(rec) || !strings.HasPrefix(first, EnrolmentPrefix+"conference:paris-1:") {
		t.Fatalf("enrolment URI %q, store says %q", first, EnrolmentURI(rec))
	}
	if name, role, err := Identity(n.Leaf()); err != nil || name != "paris-1" || role != RoleConference {
		t.Fatalf("Identity beside the enrolment URI = %s %s %v", name, role, err)
	}
	if err := n.Renew(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if got := Enrolment(n.Leaf()); got != first {
		t.Errorf("a renewal names enrolment %q, want %q", got, first)
	}
	if err := c.ca.Remove(ctx, "paris-1"); err != nil {
		t.Fatal(err)
	}
	c.clk.Advance(time.Second)
	if again := Enrolment(c.enrol(t, "paris-1").Leaf()); again == first {
		t.Errorf("enrolled again under the same name, the enrolment URI stays %q", again)
	}

	for _, host := range []string{"urn:conclave:enrolment:conference:paris-1:1", "CN=management,OU=management", "a..b", "x y"} {
		tok, err := c.ca.NewToken(ctx, "lyon-1", RoleConference, "", "root", 0)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{host}}, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ca.Enrol(ctx, tok, csr); err == nil || !strings.Contains(err.Error(), "not a host name") {
			t.Errorf("a request naming %q: %v, want refused", host, err)
		}
	}
}

// TestBusCertificate: the certificate of an external NATS server has the
// role bus, the name of its NATS cluster and the hosts given; a peer
// presenting it is refused except where a bus server is expected.
func TestBusCertificate(t *testing.T) {
	c := newCluster(t)
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := c.ca.IssueBus(&key.PublicKey, nil, "conclave"); err == nil {
		t.Error("a NATS server certificate without hosts was issued")
	}
	if _, err := c.ca.IssueBus(&key.PublicKey, []string{"nats 1"}, "conclave"); err == nil {
		t.Error("a NATS server certificate for a malformed host was issued")
	}
	leaf, err := c.ca.IssueBus(&key.PublicKey, []string{"nats-1.example.org", "10.0.0.5"}, "conclave")
	if err != nil {
		t.Fatal(err)
	}
	if name, role, err := Identity(leaf); err != nil || name != "conclave" || role != RoleBus || Enrolment(leaf) != "" {
		t.Fatalf("bus certificate identity %s %s %v, enrolment %q", name, role, err, Enrolment(leaf))
	}
	if len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 1 {
		t.Errorf("bus certificate names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	cs := func(suite uint16) tls.ConnectionState {
		return tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: suite, VerifiedChains: [][]*x509.Certificate{{leaf, c.ca.Cert()}}}
	}
	for _, tc := range []struct {
		tr    Trust
		suite uint16
		ok    bool
	}{
		{Trust{}, Suite, false},
		{Trust{Roles: []string{RoleConference, RoleEdge}}, Suite, false},
		{Trust{Roles: []string{RoleManagement, RoleBus}}, Suite, true},
		{Trust{Roles: []string{RoleManagement, RoleBus}}, tls.TLS_AES_128_GCM_SHA256, false},
		{Trust{Roles: []string{RoleManagement, RoleBus}, AnyAESGCM: true}, tls.TLS_AES_128_GCM_SHA256, true},
		{Trust{Roles: []string{RoleManagement, RoleBus}, AnyAESGCM: true}, tls.TLS_CHACHA20_POLY1305_SHA256, false},
	} {
		if err := tc.tr.check(cs(tc.suite), true); (err == nil) != tc.ok {
			t.Errorf("roles %v, AnyAESGCM %v, %s: %v, want accepted %v", tc.tr.Roles, tc.tr.AnyAESGCM, tls.CipherSuiteName(tc.suite), err, tc.ok)
		}
	}
	// AES-128-GCM is the stock nats-server's choice only: the management
	// node (the embedded bus) is held to AES-256-GCM on the same
	// connection settings.
	mgmt, err := c.ca.IssueSelf(&key.PublicKey, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tr := Trust{Roles: []string{RoleManagement, RoleBus}, AnyAESGCM: true}
	state := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, VerifiedChains: [][]*x509.Certificate{{mgmt, c.ca.Cert()}}}
	if err := tr.check(state, true); err == nil {
		t.Error("AES-128-GCM accepted from the management node")
	}
	state.CipherSuite = Suite
	if err := tr.check(state, true); err != nil {
		t.Errorf("AES-256-GCM from the management node: %v", err)
	}
}
