package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"conclave/internal/nodeca"
	"conclave/internal/store"
)

// An external NATS cluster (--nats) is configured from the same source as
// the embedded server: ExternalUsers turns the cluster's enrolled nodes
// into nats-server users mapped from their certificates (verify_and_map),
// each with NodePermissions, and WriteExternalConfig writes the server's
// configuration (TLS 1.3 on P-384 with the cluster CA, JetStream, routes).
// conclave cluster nats-config writes both; docs/cluster.md, "An external
// NATS cluster", says how they are kept current.

// ManagementUser is the user name of the management node on an external
// NATS server: the identity URI of its certificate (nodeca.IssueSelf).
const ManagementUser = nodeca.URIPrefix + nodeca.RoleManagement + ":management"

// UsersFile is the name of the file of users that the configuration
// written by WriteExternalConfig includes, in the same directory.
const UsersFile = "conclave-users.conf"

// ExternalUser is a user of an external NATS server: the certificate
// identity it maps (the enrolment URI of a node's certificates), and what
// it may do (nil: everything, the management node).
type ExternalUser struct {
	Name        string
	Node        string
	Role        string
	Enrolled    time.Time
	Permissions *server.Permissions
}

// ExternalUsers lists the users of an external NATS server: the
// management node, and every node enrolled and not removed, under the
// enrolment URI its certificates carry (nodeca.EnrolmentURI), so that the
// certificates of a removed node (revoked) and of its earlier enrolments
// map to no user. stale names the nodes whose newest certificate predates
// enrolment URIs: they must renew (conclave node renew) to be admitted.
func ExternalUsers(ctx context.Context, st store.NodeStore) (users []ExternalUser, stale []string, err error) {
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	users = []ExternalUser{{Name: ManagementUser, Node: "management", Role: nodeca.RoleManagement}}
	for _, n := range nodes {
		if !n.RemovedAt.IsZero() {
			continue
		}
		users = append(users, ExternalUser{Name: nodeca.EnrolmentURI(n), Node: n.Name, Role: n.Role,
			Enrolled: n.EnrolledAt, Permissions: NodePermissions(n.Name)})
		certs, err := st.NodeCerts(ctx, n.Name)
		if err != nil {
			return nil, nil, err
		}
		if len(certs) > 0 {
			if c, err := x509.ParseCertificate(certs[0].DER); err == nil && nodeca.Enrolment(c) == "" {
				stale = append(stale, n.Name)
			}
		}
	}
	return users, stale, nil
}

// WriteExternalUsers writes the users file (UsersFile) of an external NATS
// server.
func WriteExternalUsers(w io.Writer, users []ExternalUser, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Conclave's nodes on this NATS server, written by `conclave cluster nats-config` at %s.\n", now.UTC().Format(time.RFC3339))
	b.WriteString("# Do not edit: write it again after a node is enrolled or removed, then `nats-server --signal reload`.\n")
	b.WriteString("# A certificate of the cluster CA that maps to none of these users is refused.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    # %s (%s", u.Node, u.Role)
		if !u.Enrolled.IsZero() {
			fmt.Fprintf(&b, ", enrolled %s", u.Enrolled.UTC().Format(time.RFC3339))
		}
		b.WriteString(")\n")
		fmt.Fprintf(&b, "    { user: %s", quote(u.Name))
		if p := u.Permissions; p != nil {
			b.WriteString("\n      permissions: {\n")
			writeSubjectPermission(&b, "publish", p.Publish)
			writeSubjectPermission(&b, "subscribe", p.Subscribe)
			b.WriteString("      }\n    ")
		}
		b.WriteString(" }\n")
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSubjectPermission(b *strings.Builder, what string, p *server.SubjectPermission) {
	if p == nil {
		return
	}
	fmt.Fprintf(b, "        %s: {", what)
	if len(p.Allow) > 0 {
		fmt.Fprintf(b, " allow: %s", quoteList(p.Allow))
	}
	if len(p.Deny) > 0 {
		fmt.Fprintf(b, " deny: %s", quoteList(p.Deny))
	}
	b.WriteString(" }\n")
}

// ExternalServer describes one server of an external NATS cluster.
type ExternalServer struct {
	// Name is the server's name (server_name), unique in its NATS
	// cluster.
	Name string
	// Listen is host:port for the nodes (default 0.0.0.0:4222).
	Listen string
	// CAFile, CertFile and KeyFile are the cluster CA and the server's
	// certificate and key (nodeca.CA.IssueBus), as the server reads them.
	CAFile, CertFile, KeyFile string
	// StoreDir is JetStream's directory.
	StoreDir string
	// Cluster names the NATS cluster (and its servers' certificates);
	// RouteListen (host:port) and Routes (host:port of every server of
	// the NATS cluster) make it one of several servers. No Routes: a
	// single server.
	Cluster     string
	RouteListen string
	Routes      []string
}

// WriteExternalConfig writes the nats-server configuration of s. It
// includes UsersFile (WriteExternalUsers) from its own directory.
func WriteExternalConfig(w io.Writer, s ExternalServer, now time.Time) error {
	if err := nodeca.ValidName(s.Name); err != nil {
		return fmt.Errorf("NATS server name: %w", err)
	}
	if s.Listen == "" {
		s.Listen = "0.0.0.0:4222"
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		return fmt.Errorf("NATS listen address %q: %w", s.Listen, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# nats-server configuration of the bus of a Conclave cluster, written by `conclave cluster nats-config` at %s.\n", now.UTC().Format(time.RFC3339))
	b.WriteString("# Clients (Conclave's nodes) need a certificate of the cluster CA that maps to a user of " + UsersFile + ".\n")
	fmt.Fprintf(&b, "server_name: %s\nlisten: %s\nmax_payload: %d\n\n", quote(s.Name), quote(s.Listen), 1<<20)
	b.WriteString("tls {\n")
	writeTLS(&b, s)
	b.WriteString("  verify_and_map: true\n  handshake_first: true\n  timeout: 5\n}\n\n")
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %s\n}\n\n", quote(s.StoreDir))
	if len(s.Routes) > 0 {
		if err := nodeca.ValidName(s.Cluster); err != nil {
			return fmt.Errorf("NATS cluster name: %w", err)
		}
		if s.RouteListen == "" {
			s.RouteListen = "0.0.0.0:6222"
		}
		routes := make([]string, 0, len(s.Routes))
		for _, r := range s.Routes {
			if _, port, err := net.SplitHostPort(r); err != nil || port == "" {
				return fmt.Errorf("NATS route %q: use host:port", r)
			}
			routes = append(routes, "tls://"+r)
		}
		b.WriteString("# The servers of the NATS cluster authenticate each other by their certificates\n")
		b.WriteString("# (the same identity for all, issued by `conclave cluster nats-config -cluster`).\n")
		fmt.Fprintf(&b, "cluster {\n  name: %s\n  listen: %s\n  routes: %s\n", quote(s.Cluster), quote(s.RouteListen), quoteList(routes))
		fmt.Fprintf(&b, "  authorization { user: %s }\n", quote(nodeca.URIPrefix+nodeca.RoleBus+":"+s.Cluster))
		b.WriteString("  tls {\n")
		writeTLS(&b, s)
		b.WriteString("    verify_and_map: true\n    timeout: 5\n  }\n}\n\n")
	}
	fmt.Fprintf(&b, "include %s\n", quote("./"+UsersFile))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTLS writes the TLS parameters every node-to-node link has:
// TLS 1.3 on P-384 with the cluster CA. crypto/tls does not let a
// server choose among TLS 1.3's suites: a nats-server negotiates
// AES-128-GCM or AES-256-GCM, as the client prefers (Conclave's nodes
// offer AES-256-GCM first, but a Go server prefers AES-128-GCM), never
// ChaCha20 with AES-preferring clients.
func writeTLS(b *strings.Builder, s ExternalServer) {
	fmt.Fprintf(b, "  cert_file: %s\n  key_file: %s\n  ca_file: %s\n", quote(s.CertFile), quote(s.KeyFile), quote(s.CAFile))
	b.WriteString("  min_version: \"1.3\"\n  curve_preferences: [\"CurveP384\"]\n")
}

// quote writes s as a quoted string of the NATS configuration format.
func quote(s string) string { return strconv.Quote(s) }

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// CheckExternal checks, when the management node starts with --nats,
// that the external NATS server it reached lets it use JetStream (the
// configuration bucket and the spool need it), and warns through warn
// when the server negotiated AES-128-GCM (a stock nats-server) or its
// certificate has less than 30 days left.
func CheckExternal(ctx context.Context, nc *nats.Conn, url string, now time.Time, warn func(msg string, args ...any)) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("the NATS server at %s has no JetStream for Conclave: enable it (a jetstream block; `conclave cluster nats-config` writes one): %w", url, err)
		}
		return fmt.Errorf("the NATS server at %s does not let the management node use JetStream; is its configuration the one `conclave cluster nats-config` writes? %w", url, err)
	}
	if cs, err := nc.TLSConnectionState(); err == nil && cs.CipherSuite != nodeca.Suite {
		warn("cluster: the external NATS server negotiated "+tls.CipherSuiteName(cs.CipherSuite)+", not AES-256-GCM like every other node-to-node link; run its servers with `conclave nats-server -c nats-server.conf`",
			"url", url)
	}
	if cs, err := nc.TLSConnectionState(); err == nil && len(cs.PeerCertificates) > 0 {
		if left := cs.PeerCertificates[0].NotAfter.Sub(now); left < 30*24*time.Hour {
			warn("cluster: the external NATS server's certificate expires soon; run `conclave cluster nats-config` again and reload the server",
				"url", url, "expires", cs.PeerCertificates[0].NotAfter)
		}
	}
	return nil
}

// connectError explains a refused bus connection.
func connectError(url string, err error) error {
	var verr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return fmt.Errorf("connect to the bus at %s: the NATS server refused this node's certificate (%w); "+
			"an external NATS server admits the nodes listed in its configuration: write it again with `conclave cluster nats-config` "+
			"after enrolling or removing a node, and reload it", url, err)
	case errors.As(err, &verr):
		return fmt.Errorf("connect to the bus at %s: the NATS server's certificate is not one of this cluster (%w); "+
			"give an external NATS server the certificate `conclave cluster nats-config` issues for the host names in --nats", url, err)
	}
	return fmt.Errorf("connect to the bus at %s: %w", url, err)
}

// Files of an external NATS server's directory (WriteExternalDir).
const (
	ExternalConfigFile = "nats-server.conf"
	ExternalCAFile     = "cluster-ca.pem"
	ExternalCertFile   = "nats-server.pem"
	ExternalKeyFile    = "nats-server-key.pem"
)

// ExternalDir is what WriteExternalDir writes.
type ExternalDir struct {
	// Dir is where the files are written; Path where the server will
	// read them (the same directory copied to the NATS host), Dir when
	// empty.
	Dir, Path string
	// Server is the server's configuration; its file names are filled
	// in. Hosts are the names and addresses the nodes reach it at (the
	// host of --nats), for its certificate.
	Server ExternalServer
	Hosts  []string
	// UsersOnly writes only the users file (after a node is enrolled or
	// removed), leaving the configuration and certificate alone.
	UsersOnly bool
}

// ExternalResult says what WriteExternalDir did.
type ExternalResult struct {
	Users []ExternalUser
	// Stale: nodes to renew (see ExternalUsers).
	Stale []string
	// NewCert: a certificate was issued (none yet, hosts or cluster
	// changed, or a third of its life left); CertExpiry: when the one in
	// place expires.
	NewCert    bool
	CertExpiry time.Time
}

// WriteExternalDir writes the configuration of one external NATS server
// into d.Dir: the cluster CA, the server's certificate and key (issued by
// ca, kept while valid for the same hosts with more than a third of its
// life left), its configuration and the users file from st.
func WriteExternalDir(ctx context.Context, ca *nodeca.CA, st store.NodeStore, d ExternalDir, now time.Time) (ExternalResult, error) {
	var res ExternalResult
	users, stale, err := ExternalUsers(ctx, st)
	if err != nil {
		return res, fmt.Errorf("the cluster's nodes: %w", err)
	}
	res.Users, res.Stale = users, stale
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return res, err
	}
	if d.UsersOnly {
		if _, err := os.Stat(filepath.Join(d.Dir, ExternalConfigFile)); err != nil {
			return res, fmt.Errorf("no NATS configuration in %s to update the users of: write it first (without -users-only)", d.Dir)
		}
	} else {
		if d.Server.Cluster == "" {
			d.Server.Cluster = "conclave"
		}
		path := d.Path
		if path == "" {
			if path, err = filepath.Abs(d.Dir); err != nil {
				return res, err
			}
		}
		d.Server.CAFile = filepath.Join(path, ExternalCAFile)
		d.Server.CertFile = filepath.Join(path, ExternalCertFile)
		d.Server.KeyFile = filepath.Join(path, ExternalKeyFile)
		if d.Server.StoreDir == "" {
			d.Server.StoreDir = filepath.Join(path, "jetstream")
		}
		var conf strings.Builder
		if err := WriteExternalConfig(&conf, d.Server, now); err != nil {
			return res, err
		}
		if res.NewCert, res.CertExpiry, err = busCertificate(ca, d, now); err != nil {
			return res, err
		}
		if err := writeFileAtomic(filepath.Join(d.Dir, ExternalCAFile), ca.PEM(), 0o644); err != nil {
			return res, err
		}
		if err := writeFileAtomic(filepath.Join(d.Dir, ExternalConfigFile), []byte(conf.String()), 0o644); err != nil {
			return res, err
		}
	}
	var u strings.Builder
	if err := WriteExternalUsers(&u, users, now); err != nil {
		return res, err
	}
	return res, writeFileAtomic(filepath.Join(d.Dir, UsersFile), []byte(u.String()), 0o644)
}

// busCertificate keeps the server certificate in d.Dir if it is of ca,
// of the same NATS cluster, for the same hosts and has more than a third
// of its life left, and issues a new key and certificate otherwise.
func busCertificate(ca *nodeca.CA, d ExternalDir, now time.Time) (issued bool, expiry time.Time, err error) {
	certPath, keyPath := filepath.Join(d.Dir, ExternalCertFile), filepath.Join(d.Dir, ExternalKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf := pair.Leaf
		name, role, _ := nodeca.Identity(leaf)
		_, verr := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if verr == nil && role == nodeca.RoleBus && name == d.Server.Cluster && sameHosts(leaf, d.Hosts) &&
			leaf.NotAfter.Sub(now) > nodeca.CertLifetime/3 {
			return false, leaf.NotAfter, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return false, time.Time{}, err
	}
	leaf, err := ca.IssueBus(&key.PublicKey, d.Hosts, d.Server.Cluster)
	if err != nil {
		return false, time.Time{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, time.Time{}, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return false, time.Time{}, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		return false, time.Time{}, err
	}
	return true, leaf.NotAfter, nil
}

// sameHosts reports whether c names exactly hosts.
func sameHosts(c *x509.Certificate, hosts []string) bool {
	have := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		want = append(want, h)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LogErrors is an option of Connect that logs the connection's
// asynchronous errors through log instead of nats.go's printing them to
// the standard error: a certificate the server refuses while connecting
// again (with the advice of connectError), a permission the server
// denies. The same error is logged at most once a minute.
func LogErrors(log *slog.Logger, url string) nats.Option {
	var mu sync.Mutex
	last := map[string]time.Time{}
	report := func(what string, sub *nats.Subscription, err error) {
		msg := err.Error()
		mu.Lock()
		seen, ok := last[msg]
		if ok && time.Since(seen) < time.Minute {
			mu.Unlock()
			return
		}
		last[msg] = time.Now()
		mu.Unlock()
		args := []any{"url", url, "err", connectError(url, err)}
		if sub != nil {
			args = append(args, "subject", sub.Subject)
		}
		log.Warn(what, args...)
	}
	return func(o *nats.Options) error {
		o.AsyncErrorCB = func(_ *nats.Conn, sub *nats.Subscription, err error) {
			report("cluster: the bus refused a request", sub, err)
		}
		o.ReconnectErrCB = func(_ *nats.Conn, err error) {
			if err != nil {
				report("cluster: connecting to the bus failed; trying again", nil, err)
			}
		}
		return nil
	}
}
