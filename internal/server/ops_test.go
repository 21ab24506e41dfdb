package server_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/clocksync"
	"conclave/internal/config"
	"conclave/internal/perm"
	"conclave/internal/secrets"
	"conclave/internal/server"
	"conclave/internal/settings"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
)

// A protected setting edited on disk is put back by the self-check, with
// the alarm raised and an audit record naming the file.
func TestSelfCheckRestoresEditedSetting(t *testing.T) {
	clk := fakeclock.New(time.Now().UTC())
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk}})
	path := filepath.Join(srv.DataDir(), settings.FileName)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// An intruder turns off the audit files' cap and points syslog away.
	edited := strings.Replace(string(good), `"maxTotalMB": 2048`, `"maxTotalMB": 1048576`, 1)
	if edited == string(good) {
		t.Fatalf("settings file %s lacks the expected text", good)
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	res := srv.SelfCheck()
	if res.Fatal != nil || len(res.Changes) != 1 || !res.Changes[0].Restored {
		t.Fatalf("self-check: %+v", res)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, good) {
		t.Fatalf("settings not restored:\n%s", now)
	}
	if srv.Settings().Audit.MaxTotalMB != 2048 {
		t.Fatalf("the running node took the edit: %+v", srv.Settings().Audit)
	}
	var raised bool
	for _, a := range srv.ActiveAlarms() {
		raised = raised || a.Kind == alarm.KindSelfCheck
	}
	if !raised {
		t.Fatalf("no self-check alarm: %+v", srv.ActiveAlarms())
	}
	recs, _ := srv.Store().ListAudit(context.Background(), store.AuditFilter{Action: audit.ActionSelfCheckRestored})
	if len(recs) != 1 || recs[0].Target != settings.FileName {
		t.Fatalf("audit records %+v", recs)
	}

	// A change through the API is Conclave's own: the self-check keeps it.
	addAccount(t, srv, "root", perm.Administrator)
	c := newAPIClient(t, srv)
	c.login("root", testPassword)
	if st, body, _ := c.do("PATCH", "/api/system/settings", map[string]any{"audit": map[string]any{"maxTotalMB": 4096}}, true); st != http.StatusOK {
		t.Fatalf("patch: %d %v", st, body)
	}
	if res := srv.SelfCheck(); len(res.Changes) != 0 {
		t.Fatalf("self-check after an API change: %+v", res)
	}

	// A file that cannot be put back (its good copy is gone too) makes the
	// node refuse to serve, and say why.
	os.WriteFile(path, []byte(edited), 0o600)
	os.Remove(filepath.Join(srv.DataDir(), "selfcheck", "good", settings.FileName))
	if res := srv.SelfCheck(); res.Fatal == nil {
		t.Fatalf("self-check without a good copy: %+v", res)
	}
	resp, err := c.hc.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz while refusing: %d", resp.StatusCode)
	}
}

// A node with a master key leaves no private key readable in its data
// directory, whichever package wrote it (every optional part on: the SIP
// edge with its device CA and call records, the cluster's CA); a wrong
// key refuses to start.
func TestEveryKeySealed(t *testing.T) {
	key := strings.Repeat("ab", 32)
	var dir string
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) {
		c.Secrets.Key = key
		c.SIPListen, c.SIPRelayIP = "127.0.0.1:0", "127.0.0.1"
		c.ClusterListen, c.Cluster.BusListen, c.Cluster.RelayListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		dir = c.DataDir
	}}, "board")
	if clear := clearKeys(srv.DataDir()); len(clear) > 0 {
		t.Fatalf("private keys in the clear: %v (read and write them through secrets.Box and add them to secrets.KeyFiles)", clear)
	}
	// A restore staged from the admin page waits for the next start in
	// the data directory: its keys are sealed there too.
	addAccount(t, srv, "root", perm.Administrator)
	c := newAPIClient(t, srv)
	c.login("root", testPassword)
	_, b, _ := c.do("POST", "/api/backups", map[string]any{"passphrase": "a backup passphrase"}, true)
	name, _ := b["name"].(string)
	path, err := srv.Backups().Path(name)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	req, _ := http.NewRequest("POST", srv.URL()+"/api/backups/restore", bytes.NewReader(data))
	req.Header.Set("X-CSRF-Token", c.csrf)
	req.Header.Set("X-Backup-Passphrase", "a backup passphrase")
	resp, err := c.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stage a restore: %v %v", resp, err)
	}
	resp.Body.Close()
	staged := 0
	pending := filepath.Join(srv.DataDir(), "restore-pending")
	filepath.WalkDir(pending, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if data, _ := os.ReadFile(p); secrets.Sealed(data) {
			staged++
		}
		return nil
	})
	clear := clearKeys(pending)
	if len(clear) > 0 || staged == 0 {
		t.Fatalf("the staged restore holds private keys in the clear: %v (%d sealed files)", clear, staged)
	}
	srv.Close()
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen, cfg.MediaUDP, cfg.MediaTCP, cfg.Hosts = dir, "127.0.0.1:0", "127.0.0.1:0", "", []string{"127.0.0.1"}
	cfg.Secrets.Key = strings.Repeat("cd", 32)
	if _, err := server.Open(cfg, slog.New(slog.DiscardHandler), server.Options{}); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("open with another master key: %v", err)
	}
}

// clearKeys lists the files under dir (relative to it) that hold a
// private key in the clear: a PEM private key, or a .key file that is not
// sealed.
func clearKeys(dir string) []string {
	var clear []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte("PRIVATE KEY-----")) || strings.HasSuffix(p, ".key") && !secrets.Sealed(data) {
			rel, _ := filepath.Rel(dir, p)
			clear = append(clear, rel)
		}
		return nil
	})
	return clear
}

// scrape reads /metrics with the bearer token and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, c *apiClient, token string) map[string]*promFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", c.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the Prometheus parser refuses /metrics: %v", err)
	}
	out := map[string]*promFamily{}
	for name, f := range fams {
		pf := &promFamily{}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			v := 0.0
			switch {
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Histogram != nil:
				v = float64(m.Histogram.GetSampleCount())
			}
			pf.samples = append(pf.samples, promSample{labels, v})
		}
		out[name] = pf
	}
	return out
}

type promSample struct {
	labels map[string]string
	v      float64
}

type promFamily struct{ samples []promSample }

func (f *promFamily) value(kv ...string) float64 {
	if f == nil {
		return -1
	}
	for _, s := range f.samples {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			ok = ok && s.labels[kv[i]] == kv[i+1]
		}
		if ok {
			return s.v
		}
	}
	return -1
}

// /metrics on the HTTPS listener needs the token (or a session allowed to
// see the system); scraped and parsed, its figures move with a meeting,
// sign-ins and alarms.
func TestMetricsScrape(t *testing.T) {
	token := "a-metrics-token-for-the-test"
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	synced := false
	clk := fakeclock.New(time.Now().UTC())
	srv2 := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk, ClockSync: func() clocksync.State {
		return clocksync.State{Synced: synced, Status: "error"}
	}}, Config: func(c *config.Config) { c.MetricsTokenFile = tokenFile }}, "lounge")
	c := newAPIClient(t, srv2)
	if st, _, _ := c.do("GET", "/metrics", nil, false); st != http.StatusUnauthorized {
		t.Fatalf("/metrics without credentials: %d", st)
	}
	req, _ := http.NewRequest("GET", c.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer wrong-token-of-some-length")
	if resp, err := c.hc.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics with a wrong token: %v %v", resp, err)
	}
	m := scrape(t, c, token)
	for _, name := range []string{"conclave_meetings", "conclave_participants", "conclave_forwarded_packets_total",
		"conclave_forwarded_bytes_total", "conclave_forward_delay_seconds", "conclave_alarms", "conclave_logins_total",
		"go_goroutines", "process_cpu_seconds_total", "conclave_build_info", "conclave_clock_synchronized",
		"conclave_certificate_expiry_timestamp_seconds"} {
		if m[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if m["conclave_meetings"].value() != 0 || m["conclave_participants"].value() != 0 {
		t.Fatalf("meetings before any: %v %v", m["conclave_meetings"].value(), m["conclave_participants"].value())
	}
	if v := m["conclave_alarms"].value("kind", alarm.KindClock, "severity", "major"); v != 1 {
		t.Fatalf("clock alarm gauge %v, want 1 (the clock is not synchronised)", v)
	}
	if m["conclave_clock_synchronized"].value() != 0 {
		t.Fatal("clock reported synchronised")
	}

	// A meeting of two moves the gauges; a sign-in and a failure move the
	// counter.
	a := dialFrom(t, srv2, "127.0.0.50")
	a.sendRaw(`{"v":1,"type":"join","room":"lounge","name":"Ann"}`)
	if msg := a.next(); msg.Type != signal.TypeWelcome {
		t.Fatalf("join: %+v", msg)
	}
	b := dialFrom(t, srv2, "127.0.0.51")
	b.sendRaw(`{"v":1,"type":"join","room":"lounge","name":"Ben"}`)
	if msg := b.next(); msg.Type != signal.TypeWelcome {
		t.Fatalf("join: %+v", msg)
	}
	addAccount(t, srv2, "root", perm.Administrator)
	c.login("root", testPassword)
	newAPIClient(t, srv2).do("POST", "/api/login", map[string]string{"username": "root", "password": "Wrong-Password-9"}, false)
	m = scrape(t, c, token)
	if m["conclave_meetings"].value() != 1 || m["conclave_participants"].value() != 2 {
		t.Fatalf("during the meeting: meetings %v participants %v", m["conclave_meetings"].value(), m["conclave_participants"].value())
	}
	if m["conclave_logins_total"].value("outcome", "success") != 1 || m["conclave_logins_total"].value("outcome", "failure") != 1 {
		t.Fatalf("logins %+v", m["conclave_logins_total"].samples)
	}
	// A signed-in session with system.view may read it too.
	if st, _, _ := c.do("GET", "/metrics", nil, false); st != http.StatusOK {
		t.Fatalf("/metrics with an administrator session: %d", st)
	}
}

// An imported certificate close to its end raises the expiry alarm:
// minor 30 days before, major 7 days before, critical once expired.
func TestCertificateExpiryAlarms(t *testing.T) {
	clk := fakeclock.New(time.Now().UTC())
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk}})
	addAccount(t, srv, "root", perm.Administrator)
	c := newAPIClient(t, srv)
	c.login("root", testPassword)
	ca, caKey, caPEM := newTestCA(t, "Org CA")
	if st, body, _ := c.do("POST", "/api/certificates/trusted", map[string]any{"name": "org", "pem": caPEM}, true); st != http.StatusOK {
		t.Fatalf("trust: %d %v", st, body)
	}
	_, csr, _ := c.do("POST", "/api/certificates/csr", map[string]any{"names": []string{"127.0.0.1"}}, true)
	notAfter := clk.Now().Add(40 * 24 * time.Hour)
	chain := signCSR(t, csr["csr"].(string), ca, caKey, notAfter)
	if st, body, _ := c.do("POST", "/api/certificates/import", map[string]any{"chain": string(chain)}, true); st != http.StatusOK {
		t.Fatalf("import: %d %v", st, body)
	}
	severity := func() alarm.Severity {
		for _, a := range srv.ActiveAlarms() {
			if a.Kind == alarm.KindCertificate && a.Subject == "server" {
				return a.Severity
			}
		}
		return ""
	}
	if s := severity(); s != "" {
		t.Fatalf("alarm with 40 days left: %s", s)
	}
	clk.Jump(11 * 24 * time.Hour) // 29 days left (Jump: periodic timers tick once, not every 2 s of 11 days)
	if s := severity(); s != alarm.Minor {
		t.Fatalf("with 29 days left: %q, want minor", s)
	}
	clk.Jump(23 * 24 * time.Hour) // 6 days left
	if s := severity(); s != alarm.Major {
		t.Fatalf("with 6 days left: %q, want major", s)
	}
	clk.Jump(7 * 24 * time.Hour)
	if s := severity(); s != alarm.Critical {
		t.Fatalf("expired: %q, want critical", s)
	}
}

// A restore staged on the admin page is put in place at the next start
// (the data of the time of the backup comes back, what came after is set
// aside in the data directory); a restore the node did not stage itself
// is refused at start.
func TestStagedRestoreAppliedAtStart(t *testing.T) {
	key := strings.Repeat("ab", 32)
	dir := filepath.Join(t.TempDir(), "data")
	start := func() *testserver.Server {
		return testserver.Start(t, testserver.Options{Config: func(c *config.Config) { c.DataDir, c.Secrets.Key = dir, key }})
	}
	srv := start()
	ctx := context.Background()
	addAccount(t, srv, "root", perm.Administrator)
	if _, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "before", DisplayName: "Before"}); err != nil {
		t.Fatal(err)
	}
	c := newAPIClient(t, srv)
	c.login("root", testPassword)
	_, b, _ := c.do("POST", "/api/backups", map[string]any{"passphrase": "a backup passphrase"}, true)
	name, _ := b["name"].(string)
	path, err := srv.Backups().Path(name)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if _, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "after", DisplayName: "After"}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL()+"/api/backups/restore", bytes.NewReader(data))
	req.Header.Set("X-CSRF-Token", c.csrf)
	req.Header.Set("X-Backup-Passphrase", "a backup passphrase")
	resp, err := c.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stage a restore: %v %v", resp, err)
	}
	resp.Body.Close()
	srv.Close()

	srv = start()
	if _, err := srv.Store().RoomByAlias(ctx, "before"); err != nil {
		t.Fatalf("the room of the backup's time: %v", err)
	}
	if _, err := srv.Store().RoomByAlias(ctx, "after"); err == nil {
		t.Fatal("a room made after the backup survived its restore")
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "replaced-*", "conclave.db"))
	if len(aside) != 1 {
		t.Fatalf("the replaced data was not set aside: %v", aside)
	}
	if _, err := os.Stat(filepath.Join(dir, "restore-pending")); !os.IsNotExist(err) {
		t.Fatalf("the staged restore is still there: %v", err)
	}
	if res, err := audit.VerifyLog(ctx, srv.Store(), audit.VerifyOptions{Key: srv.AuditLog().Key()}); err != nil {
		t.Fatalf("the restored audit log: %+v %v", res, err)
	}
	srv.Close()

	// Files dropped into restore-pending by someone else are refused.
	os.MkdirAll(filepath.Join(dir, "restore-pending"), 0o700)
	os.WriteFile(filepath.Join(dir, "restore-pending", "settings.json"), []byte(`{"audit":{"maxTotalMB":1048576}}`), 0o600)
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen, cfg.MediaUDP, cfg.MediaTCP, cfg.Hosts = dir, "127.0.0.1:0", "127.0.0.1:0", "", []string{"127.0.0.1"}
	cfg.Secrets.Key = key
	if s, err := server.Open(cfg, slog.New(slog.DiscardHandler), server.Options{}); err == nil || !strings.Contains(err.Error(), "did not stage") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("start with a restore the node did not stage: %v", err)
	}
}
