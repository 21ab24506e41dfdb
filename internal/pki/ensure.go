package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"conclave/internal/clock"
	"conclave/internal/secrets"
)

// File names of the generated material inside <Dir>/tls.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	CRLFile        = "ca.crl"
)

const (
	caValidityYears = 10
	serverValidity  = 365 * 24 * time.Hour
	// renewBefore is how long before expiry a certificate is replaced.
	renewBefore = 30 * 24 * time.Hour
	// backdate absorbs small clock differences between server and clients.
	backdate     = time.Hour
	organization = "Conclave"
	caNamePrefix = "Conclave Local CA "
)

// Options says where Ensure keeps its material and what the server
// certificate must cover.
type Options struct {
	// Dir is the data directory; the generated files live in Dir/tls.
	// It is required unless CertFile and KeyFile are set.
	Dir string
	// Hosts are the DNS names and IP addresses the server certificate must
	// cover. When empty, DefaultHosts is used.
	Hosts []string
	// Clock tells the time certificates are checked and issued at; nil
	// means clock.System.
	Clock clock.Clock
	// CRLURL, when set, is written into issued server certificates as
	// their CRL distribution point; the server serves Material.CRL there.
	CRLURL string
	// CertFile and KeyFile name an operator-provided certificate chain and
	// private key (PEM). When set, they are used as they are and nothing is
	// generated. Both must be set together.
	CertFile, KeyFile string
	// Box seals the generated keys at rest (package secrets); nil keeps
	// them clear.
	Box *secrets.Box
}

// Material is the server's TLS identity as Ensure found or made it.
type Material struct {
	// Certificate is the server certificate chain and key, with Leaf set.
	Certificate tls.Certificate
	// CACert is the local CA certificate, or nil when the operator provided
	// the server certificate.
	CACert *x509.Certificate
	// CAPath is the path of the local CA certificate file, or "" when the
	// operator provided the server certificate.
	CAPath string
	// Fingerprint is the SHA-256 fingerprint of the local CA certificate, or
	// of the server certificate when the operator provided it, formatted as
	// by the Fingerprint function.
	Fingerprint string
	// Generated is true when a CA or a server certificate was created during
	// this call.
	Generated bool
	// CRL is the local CA's certificate revocation list (DER), listing the
	// server certificates it replaced; nil for an operator certificate.
	CRL []byte
	// CAKeyOffline is true when the CA's private key is not in the data
	// directory (taken offline by the operator); the server certificate is
	// then used as long as it stays valid, and nothing new is signed.
	CAKeyOffline bool
	// Notices are sentences for the operator about what Ensure changed and
	// why, such as a new CA that clients must trust.
	Notices []string
}

// Operator reports whether the material is an operator-provided certificate
// rather than one issued by the local CA.
func (m *Material) Operator() bool { return m.CACert == nil }

// Ensure returns the server's TLS material.
//
// With CertFile and KeyFile set it loads them, checks that the key matches
// the certificate, that the key meets the key policy (see CheckKeyPolicy) and
// that the certificate is currently valid, and generates nothing.
//
// Otherwise it keeps a local CA and a server certificate in Dir/tls. The CA
// is created on first use and reused afterwards (a new one is created only
// when its certificate file is missing or it expires within 30 days). The
// server certificate is issued again when it is missing or unreadable, does
// not match its key, expires within 30 days, was not signed by the current
// CA, or does not cover every configured host.
//
// Ensure does not lock the directory; callers must not run it concurrently
// on the same Dir.
func Ensure(opts Options) (*Material, error) {
	now := clock.Or(opts.Clock).Now
	if opts.CertFile != "" || opts.KeyFile != "" {
		return loadOperator(opts.CertFile, opts.KeyFile, now())
	}
	if opts.Dir == "" {
		return nil, errors.New("pki: no data directory given for the generated certificates")
	}
	hostList := opts.Hosts
	if len(hostList) == 0 {
		hostList = DefaultHosts()
	}
	hosts, err := splitHosts(hostList)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if len(hosts.dns) == 0 && len(hosts.ips) == 0 {
		return nil, errors.New("pki: no host names or IP addresses to put in the server certificate")
	}

	dir := filepath.Join(opts.Dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: restrict %s: %w", dir, err)
	}

	t := now()
	ca, caKey, caNew, notice, err := ensureCA(dir, hosts, t, opts.Box)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cert, replaced, srvNew, err := ensureServer(dir, ca, caKey, hosts, opts.CRLURL, t, opts.Box)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	crl, err := ensureCRL(dir, ca, caKey, replaced, t)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	m := &Material{
		Certificate:  cert,
		CACert:       ca,
		CAPath:       filepath.Join(dir, CACertFile),
		Fingerprint:  Fingerprint(ca),
		Generated:    caNew || srvNew,
		CRL:          crl,
		CAKeyOffline: caKey == nil,
	}
	if notice != "" {
		m.Notices = append(m.Notices, notice)
	}
	if caKey == nil {
		m.Notices = append(m.Notices, fmt.Sprintf("the CA key %s is offline; the server certificate (valid until %s) is used as it is, and must be renewed by %s: put the key back for one start before then",
			filepath.Join(dir, CAKeyFile), cert.Leaf.NotAfter.UTC().Format(time.DateOnly), cert.Leaf.NotAfter.Add(-renewBefore).UTC().Format(time.DateOnly)))
	}
	return m, nil
}

// loadOperator loads and checks an operator-provided certificate and key.
func loadOperator(certFile, keyFile string, now time.Time) (*Material, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("pki: set both the certificate file and the key file, or neither to use the generated certificate")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: load certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("pki: parse certificate %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	if err := CheckKeyPolicy(leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("pki: certificate %s: %w", certFile, err)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("pki: certificate %s expired on %s; renew it, or remove the certificate and key settings to use a generated certificate",
			certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("pki: certificate %s is not valid before %s; check the system clock",
			certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return &Material{Certificate: cert, Fingerprint: Fingerprint(leaf)}, nil
}

// ensureCA loads the CA from dir, or creates it when its certificate file is
// missing, it expires within renewBefore, or its name constraints do not
// limit it to the configured hosts. It reports whether it created one, with
// a notice for the operator when an existing CA was replaced. When the CA
// certificate is there but its key is not (taken offline), the key
// returned is nil.
func ensureCA(dir string, hosts hostSet, now time.Time, box *secrets.Box) (*x509.Certificate, crypto.Signer, bool, string, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	pair, err := ReadKeyPair(certPath, keyPath, box)
	notice := ""
	switch {
	case errors.Is(err, ErrNoCert):
		// First start (a key without its certificate was never trusted by
		// anyone, so it is replaced).
	case errors.Is(err, ErrNoKey):
		ca, err := readCert(certPath)
		if err != nil {
			return nil, nil, false, "", fmt.Errorf("load CA: %w; fix or remove the files to create a new CA", err)
		}
		if err := checkCA(certPath, ca); err != nil {
			return nil, nil, false, "", err
		}
		return ca, nil, false, "", nil
	case err != nil:
		return nil, nil, false, "", fmt.Errorf("load CA: %w; fix or remove the files to create a new CA", err)
	default:
		ca := pair.Leaf
		if err := checkCA(certPath, ca); err != nil {
			return nil, nil, false, "", err
		}
		signer, ok := pair.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, nil, false, "", fmt.Errorf("CA key %s cannot sign", keyPath)
		}
		why := ""
		switch {
		case ca.NotAfter.Sub(now) < renewBefore:
			why = "the old one expires on " + ca.NotAfter.UTC().Format(time.DateOnly)
		case !constrainedTo(ca, hosts):
			why = "the old one was not limited (X.509 name constraints) to the configured host names " + strings.Join(hosts.all(), ", ")
		default:
			return ca, signer, false, "", nil
		}
		notice = fmt.Sprintf("a new local CA was created because %s; clients must now trust the new CA certificate %s (fingerprint below) and may drop the old one, %q",
			why, certPath, ca.Subject.CommonName)
	}
	ca, key, err := createCA(hosts, now)
	if err != nil {
		return nil, nil, false, "", err
	}
	if err := WriteKeyPair(certPath, keyPath, ca.Raw, key, box); err != nil {
		return nil, nil, false, "", fmt.Errorf("save CA: %w", err)
	}
	// A new CA starts a new revocation list.
	if err := os.Remove(filepath.Join(dir, CRLFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false, "", fmt.Errorf("remove the old CA's revocation list: %w", err)
	}
	return ca, key, true, notice, nil
}

// checkCA refuses a certificate that cannot act as the local CA.
func checkCA(path string, ca *x509.Certificate) error {
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s is not a CA certificate (it cannot sign certificates)", path)
	}
	if err := CheckKeyPolicy(ca.PublicKey); err != nil {
		return fmt.Errorf("CA certificate %s: %w", path, err)
	}
	return nil
}

// readCert loads one PEM certificate.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// nameConstraints returns the X.509 name constraints that limit a CA to
// hosts: each DNS name (and its subdomains; a wildcard "*.name" gives the
// subdomains of name only) and each IP address alone.
func nameConstraints(hosts hostSet) (dns []string, ips []*net.IPNet) {
	for _, n := range hosts.dns {
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			n = "." + rest
		}
		dns = append(dns, n)
	}
	for _, ip := range hosts.ips {
		bits := 128
		if ip4 := ip.To4(); ip4 != nil {
			ip, bits = ip4, 32
		}
		ips = append(ips, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	return dns, ips
}

// constrainedTo reports whether ca carries critical name constraints and
// they permit every host in hosts (names covered by a permitted domain,
// addresses by a permitted range).
func constrainedTo(ca *x509.Certificate, hosts hostSet) bool {
	if !ca.PermittedDNSDomainsCritical || len(ca.PermittedDNSDomains)+len(ca.PermittedIPRanges) == 0 ||
		len(ca.ExcludedDNSDomains)+len(ca.ExcludedIPRanges) > 0 {
		return false
	}
	for _, n := range hosts.dns {
		ok := false
		for _, c := range ca.PermittedDNSDomains {
			if permitsName(c, n) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, ip := range hosts.ips {
		ok := false
		for _, r := range ca.PermittedIPRanges {
			if r.Contains(ip) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// ensureServer loads the server certificate from dir, or issues a new one
// from ca when the existing one is unusable. It reports whether it issued
// one and, if so, the certificate it replaced (nil if none was readable).
// With the CA key offline (nil caKey), an unusable certificate is an error.
func ensureServer(dir string, ca *x509.Certificate, caKey crypto.Signer, hosts hostSet, crlURL string, now time.Time, box *secrets.Box) (tls.Certificate, *x509.Certificate, bool, error) {
	certPath := filepath.Join(dir, ServerCertFile)
	keyPath := filepath.Join(dir, ServerKeyFile)
	pair, err := ReadKeyPair(certPath, keyPath, box)
	if err == nil && serverUsable(pair.Leaf, ca, hosts, crlURL, now, caKey == nil) {
		pair.Certificate = serverChain(pair.Certificate[0], ca)
		return pair, nil, false, nil
	}
	if caKey == nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("the server certificate %s must be issued again (it is missing, expiring, or does not cover the hosts %s) but the CA key %s is offline; put the key back for one start",
			certPath, strings.Join(hosts.all(), ", "), filepath.Join(dir, CAKeyFile))
	}
	var old *x509.Certificate
	if err == nil {
		old = pair.Leaf
	}
	// Any problem with the server files is repaired by issuing again: they
	// hold no state worth keeping.
	der, key, err := issueServer(ca, caKey, hosts, crlURL, now)
	if err != nil {
		return tls.Certificate{}, nil, false, err
	}
	if err := WriteKeyPair(certPath, keyPath, der, key, box); err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("save server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("parse issued server certificate: %w", err)
	}
	return tls.Certificate{Certificate: serverChain(der, ca), PrivateKey: key, Leaf: leaf}, old, true, nil
}

// serverChain returns the chain to send for leaf: the leaf alone when ca is a
// root, or the leaf and ca when ca is an imported intermediate.
func serverChain(leaf []byte, ca *x509.Certificate) [][]byte {
	if bytes.Equal(ca.RawIssuer, ca.RawSubject) {
		return [][]byte{leaf}
	}
	return [][]byte{leaf, ca.Raw}
}

// serverUsable reports whether leaf may keep being used. With the CA key
// offline, a certificate is used until it expires rather than renewed
// early, and a changed CRL address does not call for a new one.
func serverUsable(leaf, ca *x509.Certificate, hosts hostSet, crlURL string, now time.Time, keyOffline bool) bool {
	if !bytes.Equal(leaf.RawIssuer, ca.RawSubject) || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	margin := renewBefore
	if keyOffline {
		margin = 0
	}
	if now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < margin {
		return false
	}
	if !keyOffline && !slices.Equal(leaf.CRLDistributionPoints, crlPoints(crlURL)) {
		return false
	}
	if CheckKeyPolicy(leaf.PublicKey) != nil {
		return false
	}
	return covers(leaf, hosts)
}

// covers reports whether leaf names every host in hosts.
func covers(leaf *x509.Certificate, hosts hostSet) bool {
	have := make(map[string]bool, len(leaf.DNSNames))
	for _, n := range leaf.DNSNames {
		have[strings.ToLower(n)] = true
	}
	for _, n := range hosts.dns {
		if !have[n] {
			return false
		}
	}
	for _, ip := range hosts.ips {
		found := false
		for _, lip := range leaf.IPAddresses {
			if lip.Equal(ip) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// crlPoints is the CRL distribution points of a server certificate.
func crlPoints(url string) []string {
	if url == "" {
		return nil
	}
	return []string{url}
}

// permitsName reports whether the DNS name constraint c permits name n:
// "x" permits x and its subdomains, ".x" its subdomains only.
func permitsName(c, n string) bool {
	if strings.HasPrefix(c, ".") {
		return strings.HasSuffix(n, c)
	}
	return n == c || strings.HasSuffix(n, "."+c)
}

// createCA makes a self-signed ECDSA P-256 CA valid for caValidityYears,
// limited by critical X.509 name constraints to hosts: whoever steals its
// key can issue certificates for these names only, not for the
// organisation's other sites or the public web.
func createCA(hosts hostSet, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   caNamePrefix + rand.Text()[:8],
			Organization: []string{organization},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	tmpl.PermittedDNSDomains, tmpl.PermittedIPRanges = nameConstraints(hosts)
	tmpl.PermittedDNSDomainsCritical = true
	if len(tmpl.PermittedDNSDomains) == 0 {
		// Without a DNS constraint, a CA limited to addresses could still
		// sign any name; permit only the reserved ".invalid" domain.
		tmpl.PermittedDNSDomains = []string{"invalid"}
	}
	if len(tmpl.PermittedIPRanges) == 0 {
		// Likewise, without an address constraint any address could be
		// signed; permit only an unusable one.
		tmpl.PermittedIPRanges = []*net.IPNet{{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(32, 32)}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return ca, key, nil
}

// issueServer makes an ECDSA P-256 server certificate for hosts signed by ca.
func issueServer(ca *x509.Certificate, caKey crypto.Signer, hosts hostSet, crlURL string, now time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	all := hosts.all()
	notAfter := now.Add(serverValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   all[0],
			Organization: []string{organization},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              hosts.dns,
		IPAddresses:           hosts.ips,
		SubjectKeyId:          skid,
		CRLDistributionPoints: crlPoints(crlURL),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	return der, key, nil
}

// randomSerial returns a positive random serial number of at most 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// ErrNoCert and ErrNoKey are wrapped by ReadKeyPair's error when the
// certificate or the key file does not exist (both also wrap
// fs.ErrNotExist).
var (
	ErrNoCert = fmt.Errorf("certificate file missing: %w", fs.ErrNotExist)
	ErrNoKey  = fmt.Errorf("key file missing: %w", fs.ErrNotExist)
)

// ReadKeyPair loads a PEM certificate and its key, opening the key with
// box when it is sealed under the master key (package secrets), and checks
// that they match. The leaf is parsed. A missing file gives an error that
// wraps ErrNoCert or ErrNoKey.
func ReadKeyPair(certPath, keyPath string, box *secrets.Box) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certPath, ErrNoCert)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read %s: %w", certPath, err)
	}
	keyPEM, err := box.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyPath, ErrNoKey)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read %s: %w", keyPath, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s with key %s: %w", certPath, keyPath, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("parse %s: %w", certPath, err)
		}
	}
	return pair, nil
}

// WriteKeyPair stores key (PKCS#8 PEM, mode 0600, sealed by box when it
// is not nil) and then the certificate (PEM, mode 0644), each replaced
// atomically.
func WriteKeyPair(certPath, keyPath string, certDER []byte, key crypto.Signer, box *secrets.Box) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := box.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	return secrets.WriteAtomic(certPath, certPEM, 0o644)
}
