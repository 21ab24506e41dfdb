package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"conclave/internal/testutil/fakeclock"
)

var testHosts = []string{"conclave.example", "localhost", "127.0.0.1", "::1", "192.0.2.10"}

// fixedClock returns a clock stuck at t.
func fixedClock(t time.Time) *fakeclock.Clock { return fakeclock.New(t) }

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ensure(t *testing.T, opts Options) *Material {
	t.Helper()
	m, err := Ensure(opts)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return m
}

func TestEnsureGenerates(t *testing.T) {
	dir := t.TempDir()
	m := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
	if !m.Generated {
		t.Error("Generated = false on first start")
	}
	tlsDir := filepath.Join(dir, "tls")
	if m.CAPath != filepath.Join(tlsDir, "ca.crt") {
		t.Errorf("CAPath = %q", m.CAPath)
	}

	st, err := os.Stat(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o700 {
		t.Errorf("tls dir mode = %o, want 700", got)
	}
	for _, name := range []string{"ca.key", "server.key"} {
		path := filepath.Join(tlsDir, name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %o, want 600", name, got)
		}
		key := readPKCS8(t, path)
		ek, ok := key.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			t.Errorf("%s: key is %T, want ECDSA P-256", name, key)
		}
	}
	for _, name := range []string{"ca.crt", "server.crt"} {
		if _, err := os.Stat(filepath.Join(tlsDir, name)); err != nil {
			t.Error(err)
		}
	}
	entries, _ := os.ReadDir(tlsDir)
	if len(entries) != 5 { // ca.crt, ca.key, ca.crl, server.crt, server.key
		t.Errorf("tls dir holds %d entries, want 5 (no temporary files left)", len(entries))
	}

	ca := m.CACert
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA KeyUsage = %v", ca.KeyUsage)
	}
	if !regexp.MustCompile(`^Conclave Local CA [A-Z2-7]{8}$`).MatchString(ca.Subject.CommonName) {
		t.Errorf("CA CN = %q", ca.Subject.CommonName)
	}
	if want := base.AddDate(10, 0, 0); !ca.NotAfter.Equal(want) {
		t.Errorf("CA NotAfter = %v, want %v", ca.NotAfter, want)
	}
	if len(ca.SubjectKeyId) == 0 {
		t.Error("CA has no SubjectKeyId")
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}

	leaf := m.Certificate.Leaf
	if leaf == nil {
		t.Fatal("Certificate.Leaf is nil")
	}
	if leaf.IsCA {
		t.Error("server certificate is a CA")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("server ExtKeyUsage = %v, want ServerAuth", leaf.ExtKeyUsage)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("server KeyUsage = %v, want DigitalSignature", leaf.KeyUsage)
	}
	if got := leaf.NotAfter.Sub(base); got != 365*24*time.Hour {
		t.Errorf("server valid for %v after issue, want 365 days", got)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("server serial %v is not a positive 128-bit number", leaf.SerialNumber)
	}
	if leaf.SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Error("server and CA share a serial number")
	}
	if len(leaf.SubjectKeyId) == 0 || string(leaf.AuthorityKeyId) != string(ca.SubjectKeyId) {
		t.Errorf("server SKID %x AKID %x, CA SKID %x", leaf.SubjectKeyId, leaf.AuthorityKeyId, ca.SubjectKeyId)
	}
	if pk, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("server key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if len(m.Certificate.Certificate) != 1 {
		t.Errorf("chain length %d, want 1 (the root is not sent)", len(m.Certificate.Certificate))
	}

	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(m.Fingerprint) {
		t.Errorf("Fingerprint %q is not colon-separated upper-case hex", m.Fingerprint)
	}
	sum := sha256.Sum256(ca.Raw)
	if want := strings.Join(hexBytes(sum[:]), ":"); m.Fingerprint != want {
		t.Errorf("Fingerprint = %s, want %s", m.Fingerprint, want)
	}
}

func hexBytes(b []byte) []string {
	out := make([]string, len(b))
	for i, c := range b {
		out[i] = fmt.Sprintf("%02X", c)
	}
	return out
}

func readPKCS8(t *testing.T, path string) crypto.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("%s: not a PKCS#8 PEM file", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return key
}

func TestEnsureReuses(t *testing.T) {
	dir := t.TempDir()
	first := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
	keyBefore, err := os.ReadFile(filepath.Join(dir, "tls", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	second := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base.Add(24 * time.Hour))})
	if second.Generated {
		t.Error("Generated = true on second start")
	}
	if second.Fingerprint != first.Fingerprint {
		t.Error("CA changed on second start")
	}
	if a, b := first.Certificate.Leaf.SerialNumber, second.Certificate.Leaf.SerialNumber; a.Cmp(b) != 0 {
		t.Errorf("server serial changed: %v -> %v", a, b)
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, "tls", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if string(keyBefore) != string(keyAfter) {
		t.Error("server key rewritten on second start")
	}
	if !second.Certificate.PrivateKey.(crypto.Signer).Public().(*ecdsa.PublicKey).Equal(second.Certificate.Leaf.PublicKey) {
		t.Error("reloaded key does not match reloaded certificate")
	}
}

func TestEnsureReissue(t *testing.T) {
	tests := []struct {
		name    string
		hosts   []string
		at      time.Time
		reissue bool
	}{
		{"same hosts", testHosts, base, false},
		{"hosts reordered and differently cased", []string{"::1", "LOCALHOST", "Conclave.Example.", "192.0.2.10", "127.0.0.1"}, base, false},
		{"subset of hosts", []string{"localhost"}, base, false},
		{"added subdomain (within the CA's name constraints)", append(slices.Clone(testHosts), "meet.conclave.example"), base, true},
		{"31 days before expiry", testHosts, base.Add(334 * 24 * time.Hour), false},
		{"29 days before expiry", testHosts, base.Add(336 * 24 * time.Hour), true},
		{"expired", testHosts, base.Add(400 * 24 * time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
			second := ensure(t, Options{Dir: dir, Hosts: tt.hosts, Clock: fixedClock(tt.at)})
			if second.Fingerprint != first.Fingerprint {
				t.Error("CA was replaced")
			}
			reissued := first.Certificate.Leaf.SerialNumber.Cmp(second.Certificate.Leaf.SerialNumber) != 0
			if reissued != tt.reissue || second.Generated != tt.reissue {
				t.Errorf("reissued = %v, Generated = %v, want %v", reissued, second.Generated, tt.reissue)
			}
			if reissued {
				if got := second.Certificate.Leaf.NotBefore; !got.Equal(tt.at.Add(-time.Hour)) {
					t.Errorf("new NotBefore = %v", got)
				}
				verifyHosts(t, second, tt.hosts, tt.at)
			}
			// A third start is stable again.
			third := ensure(t, Options{Dir: dir, Hosts: tt.hosts, Clock: fixedClock(tt.at)})
			if third.Generated {
				t.Error("third start generated again")
			}
		})
	}
}

func TestEnsureReplacesCA(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, tlsDir string)
		at      time.Time
	}{
		{"CA files removed", func(t *testing.T, tlsDir string) {
			for _, f := range []string{"ca.crt", "ca.key"} {
				if err := os.Remove(filepath.Join(tlsDir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}, base},
		{"CA certificate removed, stale key left", func(t *testing.T, tlsDir string) {
			if err := os.Remove(filepath.Join(tlsDir, "ca.crt")); err != nil {
				t.Fatal(err)
			}
		}, base},
		{"CA expiring", func(*testing.T, string) {}, base.AddDate(10, 0, -10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
			tt.prepare(t, filepath.Join(dir, "tls"))
			second := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(tt.at)})
			if !second.Generated || second.Fingerprint == first.Fingerprint {
				t.Fatal("CA was not replaced")
			}
			if err := second.Certificate.Leaf.CheckSignatureFrom(second.CACert); err != nil {
				t.Errorf("server certificate not reissued under the new CA: %v", err)
			}
			verifyHosts(t, second, testHosts, tt.at)
		})
	}
}

func TestEnsureRefusesBrokenCA(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, tlsDir string)
		want    string
	}{
		{"key offline and the server certificate must be reissued", func(t *testing.T, tlsDir string) {
			for _, f := range []string{"ca.key", "server.crt"} {
				if err := os.Remove(filepath.Join(tlsDir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}, "is offline"},
		{"certificate corrupt", func(t *testing.T, tlsDir string) {
			if err := os.WriteFile(filepath.Join(tlsDir, "ca.crt"), []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "load CA"},
		{"not a CA", func(t *testing.T, tlsDir string) {
			for _, f := range []string{"crt", "key"} {
				data, err := os.ReadFile(filepath.Join(tlsDir, "server."+f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(tlsDir, "ca."+f), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}, "not a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
			tlsDir := filepath.Join(dir, "tls")
			tt.prepare(t, tlsDir)
			before, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
			_, err := Ensure(Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Ensure error = %v, want one mentioning %q", err, tt.want)
			}
			after, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
			if string(before) != string(after) {
				t.Error("CA certificate file was overwritten")
			}
		})
	}
}

func TestEnsureRepairsServerFiles(t *testing.T) {
	dir := t.TempDir()
	first := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
	if err := os.WriteFile(filepath.Join(dir, "tls", "server.crt"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := ensure(t, Options{Dir: dir, Hosts: testHosts, Clock: fixedClock(base)})
	if !second.Generated || second.Fingerprint != first.Fingerprint {
		t.Errorf("Generated = %v, CA kept = %v; want a new server certificate under the same CA",
			second.Generated, second.Fingerprint == first.Fingerprint)
	}
	verifyHosts(t, second, testHosts, base)
}

func TestEnsureOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no directory", Options{Hosts: testHosts}},
		{"invalid host", Options{Dir: t.TempDir(), Hosts: []string{"bad host"}}},
		{"only blank hosts", Options{Dir: t.TempDir(), Hosts: []string{" ", ""}}},
		{"cert file without key file", Options{CertFile: "x.crt"}},
		{"key file without cert file", Options{KeyFile: "x.key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Ensure(tt.opts); err == nil {
				t.Error("Ensure succeeded")
			}
		})
	}
}

// verifyHosts checks that m's server certificate verifies against its CA
// for every host.
func verifyHosts(t *testing.T, m *Material, hosts []string, at time.Time) {
	t.Helper()
	pool, err := CAPool(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		_, err := m.Certificate.Leaf.Verify(x509.VerifyOptions{
			DNSName:     strings.TrimSuffix(strings.Trim(h, "[]"), "."),
			Roots:       pool,
			CurrentTime: at,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify for %q: %v", h, err)
		}
	}
}

func TestServerCertificateVerifies(t *testing.T) {
	m := ensure(t, Options{Dir: t.TempDir(), Hosts: testHosts, Clock: fixedClock(base)})
	verifyHosts(t, m, testHosts, base)

	_, err := m.Certificate.Leaf.Verify(x509.VerifyOptions{
		DNSName:     "other.example",
		Roots:       mustPool(t, m),
		CurrentTime: base,
	})
	if err == nil {
		t.Error("certificate verifies for a host it was not issued for")
	}
	_, err = m.Certificate.Leaf.Verify(x509.VerifyOptions{
		DNSName:     "localhost",
		Roots:       x509.NewCertPool(),
		CurrentTime: base,
	})
	if err == nil {
		t.Error("certificate verifies without its CA")
	}
}

func mustPool(t *testing.T, m *Material) *x509.CertPool {
	t.Helper()
	pool, err := CAPool(m)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// writeSelfSigned writes a self-signed certificate for key, and the key,
// into dir and returns their paths.
func writeSelfSigned(t *testing.T, dir string, key crypto.Signer, notBefore, notAfter time.Time) (certPath, keyPath string) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "meet.example"},
		DNSNames:              []string{"meet.example"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, "op.crt")
	keyPath = filepath.Join(dir, "op.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestEnsureOperatorProvided(t *testing.T) {
	ecKey := func(c elliptic.Curve) func(*testing.T) crypto.Signer {
		return func(t *testing.T) crypto.Signer {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
	}
	rsaKey := func(bits int) func(*testing.T) crypto.Signer {
		return func(t *testing.T) crypto.Signer {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
	}
	edKey := func(t *testing.T) crypto.Signer {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	valid := [2]time.Time{base.Add(-time.Hour), base.AddDate(1, 0, 0)}
	tests := []struct {
		name      string
		key       func(*testing.T) crypto.Signer
		validity  [2]time.Time
		wantErr   string
		keyPolicy bool
	}{
		{"ECDSA P-256", ecKey(elliptic.P256()), valid, "", false},
		{"ECDSA P-384", ecKey(elliptic.P384()), valid, "", false},
		{"RSA 3072", rsaKey(3072), valid, "", false},
		{"RSA 2048 refused", rsaKey(2048), valid, "2048 bits is too short", true},
		{"ECDSA P-521 refused", ecKey(elliptic.P521()), valid, "P-521 is not allowed", true},
		{"Ed25519 refused", edKey, valid, "Ed25519", true},
		{"expired", ecKey(elliptic.P256()), [2]time.Time{base.AddDate(-1, 0, 0), base.Add(-time.Hour)}, "expired", false},
		{"not yet valid", ecKey(elliptic.P256()), [2]time.Time{base.Add(time.Hour), base.AddDate(1, 0, 0)}, "not valid before", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certPath, keyPath := writeSelfSigned(t, dir, tt.key(t), tt.validity[0], tt.validity[1])
			dataDir := filepath.Join(dir, "data")
			m, err := Ensure(Options{Dir: dataDir, Hosts: testHosts, Clock: fixedClock(base), CertFile: certPath, KeyFile: keyPath})
			if _, statErr := os.Stat(filepath.Join(dataDir, "tls")); !os.IsNotExist(statErr) {
				t.Error("generated material although an operator certificate was given")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Ensure error = %v, want one containing %q", err, tt.wantErr)
				}
				if errors.Is(err, ErrKeyPolicy) != tt.keyPolicy {
					t.Errorf("errors.Is(err, ErrKeyPolicy) = %v, want %v", !tt.keyPolicy, tt.keyPolicy)
				}
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if m.Generated || m.CACert != nil || m.CAPath != "" || !m.Operator() {
				t.Errorf("operator material: Generated=%v CACert=%v CAPath=%q", m.Generated, m.CACert, m.CAPath)
			}
			if m.Certificate.Leaf == nil || m.Fingerprint != Fingerprint(m.Certificate.Leaf) {
				t.Error("Fingerprint is not that of the operator's certificate")
			}
			// The self-signed operator certificate is its own root.
			if _, err := m.Certificate.Leaf.Verify(x509.VerifyOptions{DNSName: "meet.example", Roots: mustPool(t, m), CurrentTime: base}); err != nil {
				t.Errorf("verify against CAPool: %v", err)
			}
			if s := TrustInstructions(m); !strings.Contains(s, "operator-provided") || !strings.Contains(s, m.Fingerprint) {
				t.Errorf("TrustInstructions for operator certificate:\n%s", s)
			}
		})
	}
}

func TestEnsureOperatorKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certPath, _ := writeSelfSigned(t, dir, k1, base.Add(-time.Hour), base.AddDate(1, 0, 0))
	sub := filepath.Join(dir, "other")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	_, keyPath := writeSelfSigned(t, sub, k2, base.Add(-time.Hour), base.AddDate(1, 0, 0))
	_, err := Ensure(Options{Clock: fixedClock(base), CertFile: certPath, KeyFile: keyPath})
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Ensure error = %v, want a key mismatch", err)
	}
}

func TestSplitHosts(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr bool
	}{
		{[]string{"Example.COM.", "example.com", " localhost "}, []string{"example.com", "localhost"}, false},
		{[]string{"[::1]", "::1", "127.0.0.1", "::ffff:127.0.0.1"}, []string{"::1", "127.0.0.1"}, false},
		{[]string{"*.example.com", "my_host"}, []string{"*.example.com", "my_host"}, false},
		{[]string{"", "  "}, []string{}, false},
		{[]string{"bad host"}, nil, true},
		{[]string{"bücher.example"}, nil, true},
		{[]string{"-lead.example"}, nil, true},
		{[]string{"a..b"}, nil, true},
		{[]string{"foo.*.example"}, nil, true},
		{[]string{"fe80::1%eth0"}, nil, true},
		{[]string{strings.Repeat("a", 64) + ".example"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			set, err := splitHosts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !slices.Equal(set.all(), tt.want) {
				t.Errorf("got %q, want %q", set.all(), tt.want)
			}
		})
	}
}

func TestDefaultHosts(t *testing.T) {
	hosts := DefaultHosts()
	for _, want := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(hosts, want) {
			t.Errorf("DefaultHosts() = %q, missing %q", hosts, want)
		}
	}
	seen := make(map[string]bool)
	for _, h := range hosts {
		if seen[h] {
			t.Errorf("duplicate %q", h)
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil && ip.IsLinkLocalUnicast() {
			t.Errorf("link-local address %q included", h)
		}
	}
	if _, err := splitHosts(hosts); err != nil {
		t.Errorf("DefaultHosts() not usable: %v", err)
	}
	// The defaults must be accepted by Ensure as they are.
	ensure(t, Options{Dir: t.TempDir()})
}

func TestCheckKeyPolicy(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		pub  crypto.PublicKey
		ok   bool
	}{
		{"P-256", p256.Public(), true},
		{"P-224", p224.Public(), false},
		{"Ed25519", edPub, false},
		{"unknown", "not a key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKeyPolicy(tt.pub)
			if (err == nil) != tt.ok {
				t.Errorf("CheckKeyPolicy = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrKeyPolicy) {
				t.Errorf("error %v does not wrap ErrKeyPolicy", err)
			}
		})
	}
}

func TestTrustInstructions(t *testing.T) {
	dir := t.TempDir()
	m := ensure(t, Options{Dir: dir, Hosts: testHosts})
	s := TrustInstructions(m)
	for _, want := range []string{
		m.CAPath,
		m.Fingerprint,
		m.CACert.Subject.CommonName,
		"/usr/local/share/ca-certificates/conclave.crt && update-ca-certificates",
		"Chromium",
		"Firefox",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("TrustInstructions lacks %q:\n%s", want, s)
		}
	}
	t.Logf("startup message:\n%s", s)
	if got := shellQuote("/tmp/it's here/ca.crt"); got != `'/tmp/it'\''s here/ca.crt'` {
		t.Errorf("shellQuote = %s", got)
	}
}
