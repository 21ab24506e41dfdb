package syslog

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/store"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	dir                       string
	roots                     *x509.CertPool
	client                    tls.Certificate
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, eku x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := &testPKI{dir: dir, roots: x509.NewCertPool()}
	p.roots.AddCert(ca)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	srvDER, srvKey := issue("127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.certFile = write("server.pem", "CERTIFICATE", srvDER)
	kd, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	p.keyFile = write("server.key", "PRIVATE KEY", kd)
	cliDER, cliKey := issue("conclave-node", x509.ExtKeyUsageClientAuth, nil)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return p
}

// rsyslog runs Debian's rsyslogd with rsyslog-gnutls as an RFC 5425
// receiver on a loopback port, requiring a client certificate from the
// test CA, and writing each message as received to out.
type rsyslog struct {
	t    *testing.T
	conf string
	out  string
	port int
	cmd  *exec.Cmd
}

func startRsyslog(t *testing.T, p *testPKI) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("rsyslogd is not installed (scripts/test installs rsyslog and rsyslog-gnutls): %v", err)
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(m) == 0 {
			t.Fatal("rsyslog-gnutls is not installed (scripts/test installs it)")
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &rsyslog{t: t, conf: filepath.Join(dir, "rsyslog.conf"), out: filepath.Join(dir, "received.log"), port: port}
	conf := fmt.Sprintf(`global(workDirectory=%q
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile=%q
  defaultNetstreamDriverCertFile=%q
  defaultNetstreamDriverKeyFile=%q
  maxMessageSize="64k")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
template(name="raw" type="string" string="%%rawmsg%%\n")
input(type="imtcp" address="127.0.0.1" port="%d")
action(type="omfile" file=%q template="raw" flushOnTXEnd="on" asyncWriting="off")
`, dir, p.caFile, p.certFile, p.keyFile, port, r.out)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *rsyslog) start() {
	r.t.Helper()
	pid := filepath.Join(filepath.Dir(r.conf), "rsyslogd.pid")
	os.Remove(pid)
	cmd := exec.Command("rsyslogd", "-n", "-f", r.conf, "-i", pid)
	cmd.Path = "/usr/sbin/rsyslogd"
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.cmd = cmd
	// Ready when the port accepts connections.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd did not listen on %d: %v", r.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rsyslog) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.cmd.Wait()
	r.cmd = nil
}

var seqRe = regexp.MustCompile(`\[conclave@32473 seq="(\d+)"`)

// received returns the sequence numbers of the messages received so far.
func (r *rsyslog) received() []int64 {
	f, err := os.Open(r.out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var seqs []int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := seqRe.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			seqs = append(seqs, n)
		}
	}
	return seqs
}

// waitFor waits until n messages have arrived.
func (r *rsyslog) waitFor(n int) []int64 {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := r.received()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslog received %d messages, want %d: %v", len(got), n, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Debian's rsyslog receives the audit log over TLS with a client
// certificate; stopped, it misses nothing: the records written meanwhile
// arrive, in order, once it is back, and an alarm is raised while it is
// down.
func TestRsyslogReceivesEverythingInOrder(t *testing.T) {
	p := newTestPKI(t)
	rs := startRsyslog(t, p)
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	alarms := alarm.New(nil)
	events := make(chan string, 16)
	alarms.Observe(alarmEvents(events))
	log := audit.NewLog(st, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fw, err := New(ctx, Config{Server: Server{Name: "siem", Address: fmt.Sprintf("127.0.0.1:%d", rs.port), Roots: p.roots, ClientCert: &p.client},
		Store: st, Dir: filepath.Join(dir, "syslog"), Hostname: "node1", Alarms: alarms, Retry: 50 * time.Millisecond, MaxRetry: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log.AddSink(fw)
	go fw.Run(ctx)

	record := func(i int) {
		if err := log.Record(ctx, audit.Event{Actor: "alice", Source: "192.0.2.1", Action: audit.ActionLogin, Target: "alice",
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"i": strconv.Itoa(i), "quote": `a "b" ]c\`}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		record(i)
	}
	rs.waitFor(5)

	rs.stop()
	for i := 5; i < 40; i++ {
		record(i)
	}
	// The alarm is raised while the server is down.
	awaitAlarm := func(want string) {
		t.Helper()
		for {
			select {
			case e := <-events:
				if e == want {
					return
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no %s alarm event; status %+v", want, fw.Status())
			}
		}
	}
	awaitAlarm("raised " + alarm.KindSyslog + ":siem")
	rs.start()
	got := rs.waitFor(40)
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("received sequence %v: want 1..40 in order, each once", got)
		}
	}
	if len(got) != 40 {
		t.Fatalf("received %d messages, want 40: %v", len(got), got)
	}
	awaitAlarm("cleared " + alarm.KindSyslog + ":siem")
	// The message is RFC 5424 with the record's fields.
	data, _ := os.ReadFile(rs.out)
	first := strings.SplitN(string(data), "\n", 2)[0]
	if !strings.HasPrefix(first, "<109>1 ") || !strings.Contains(first, " node1 conclave - login [conclave@32473 seq=\"1\" actor=\"alice\" source=\"192.0.2.1\"") {
		t.Fatalf("first message %q is not the expected RFC 5424 form", first)
	}
}

// alarmEvents tells "raised kind:subject" and "cleared kind:subject".
type alarmEvents chan string

func (e alarmEvents) Raised(a alarm.Alarm)  { e <- "raised " + a.Kind + ":" + a.Subject }
func (e alarmEvents) Cleared(a alarm.Alarm) { e <- "cleared " + a.Kind + ":" + a.Subject }

// A server whose certificate the configured CA did not sign is refused.
func TestSyslogRefusesUnknownServer(t *testing.T) {
	p := newTestPKI(t)
	rs := startRsyslog(t, p)
	other := newTestPKI(t)
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	audit.NewLog(st, nil).Record(context.Background(), audit.Event{Action: "x"})
	fw, err := New(context.Background(), Config{Server: Server{Name: "siem", Address: fmt.Sprintf("127.0.0.1:%d", rs.port), Roots: other.roots, ClientCert: &p.client},
		Store: st, Dir: filepath.Join(dir, "syslog")})
	if err != nil {
		t.Fatal(err)
	}
	fw.delivered = 0
	if err := fw.deliver(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("deliver to a server of another CA: %v, want a certificate error", err)
	}
}
