// Package slapd runs Debian's OpenLDAP server for a test: on a loopback
// port, with a fresh database under the test's temporary directory,
// StartTLS with a certificate from a test CA (or, for the refusal test, no
// TLS at all), and the entries the test gives. scripts/test installs
// slapd; a test fails, never skips, when it is missing.
package slapd

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"conclave/internal/testutil/testca"
	"conclave/internal/testutil/wait"
)

// Suffix is the directory's base DN; RootDN and RootPassword its
// administrator.
const (
	Suffix       = "dc=example,dc=org"
	RootDN       = "cn=admin," + Suffix
	RootPassword = "root-secret-Pw1"
)

// Options shape the directory.
type Options struct {
	// NoTLS starts a directory that offers no StartTLS.
	NoTLS bool
	// LDIF holds the entries to load below the suffix entry (which is
	// made).
	LDIF string
	// LockAfter, when positive, turns on the password policy overlay
	// (ppolicy) with a default policy that locks an account after that
	// many failed binds.
	LockAfter int
}

// Server is a running slapd.
type Server struct {
	URL  string // ldap://127.0.0.1:PORT
	Addr string
	CA   *testca.CA // nil with NoTLS
	cmd  *exec.Cmd
	dir  string
}

// Start runs slapd until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/slapd"); serr != nil {
			t.Fatalf("slapd is not installed (scripts/test installs the Debian package slapd): %v", err)
		}
		bin = "/usr/sbin/slapd"
	}
	dir := t.TempDir()
	s := &Server{dir: dir}
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	var tlsConf string
	if !o.NoTLS {
		s.CA = testca.New(t, "Directory test CA")
		leaf := s.CA.Issue(t, testca.Options{CN: "127.0.0.1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNS: []string{"localhost"}, Server: true})
		ca := testca.WriteFile(t, dir, "ca.pem", s.CA.PEM())
		cert := testca.WriteFile(t, dir, "cert.pem", leaf.CertPEM())
		key := testca.WriteFile(t, dir, "key.pem", leaf.KeyPEM())
		tlsConf = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n", ca, cert, key)
	}
	var policyConf, policyLDIF string
	if o.LockAfter > 0 {
		policyConf = "moduleload ppolicy\n"
		policyLDIF = fmt.Sprintf("dn: ou=policies,%[1]s\nobjectClass: organizationalUnit\nou: policies\n\n"+
			"dn: cn=default,ou=policies,%[1]s\nobjectClass: person\nobjectClass: pwdPolicy\ncn: default\nsn: default\n"+
			"pwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: %[2]d\npwdLockoutDuration: 0\n\n", Suffix, o.LockAfter)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
%[7]s
pidfile %[1]s/slapd.pid
%[2]s
database mdb
maxsize 16777216
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[6]s
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
%[8]s`, dir, tlsConf, Suffix, RootDN, RootPassword, db, policyConf, ppolicyOverlay(o.LockAfter))
	confPath := testca.WriteFile(t, dir, "slapd.conf", conf)
	ldif := fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n%s%s", Suffix, policyLDIF, o.LDIF)
	ldifPath := testca.WriteFile(t, dir, "data.ldif", ldif)
	if out, err := exec.Command("/usr/sbin/slapadd", "-f", confPath, "-l", ldifPath).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	s.URL = "ldap://" + s.Addr
	var logs bytes.Buffer
	s.cmd = exec.Command(bin, "-f", confPath, "-h", s.URL+"/", "-d", "0")
	s.cmd.Stdout, s.cmd.Stderr = &logs, &logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("slapd output:\n%s", logs.String())
		}
	})
	ready := func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("slapd exited: %v\n%s", err, logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	wait.For(t, "slapd to accept connections", 15*time.Second, ready)
	return s
}

// Stop ends slapd now (the directory goes down).
func (s *Server) Stop() {
	s.cmd.Process.Kill()
}

// Admin connects as the directory's administrator, over StartTLS when the
// directory has TLS.
func (s *Server) Admin(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if s.CA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(s.CA.Cert)
		if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Bind(RootDN, RootPassword); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// User returns the LDIF of an inetOrgPerson under ou=people.
func User(uid, name, password string) string {
	parts := strings.Fields(name)
	sn := parts[len(parts)-1]
	return fmt.Sprintf("dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n",
		uid, Suffix, uid, name, sn, password)
}

// Group returns the LDIF of a groupOfNames under ou=groups with members
// given by uid.
func Group(cn string, uids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n", cn, Suffix, cn)
	for _, u := range uids {
		fmt.Fprintf(&b, "member: uid=%s,ou=people,%s\n", u, Suffix)
	}
	return b.String() + "\n"
}

// OUs returns the LDIF of ou=people and ou=groups.
func OUs() string {
	return fmt.Sprintf("dn: ou=people,%[1]s\nobjectClass: organizationalUnit\nou: people\n\ndn: ou=groups,%[1]s\nobjectClass: organizationalUnit\nou: groups\n\n", Suffix)
}

// ppolicyOverlay is the slapd.conf text that applies the default password
// policy, or nothing.
func ppolicyOverlay(lockAfter int) string {
	if lockAfter <= 0 {
		return ""
	}
	return "overlay ppolicy\nppolicy_default \"cn=default,ou=policies," + Suffix + "\"\n"
}
