package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/backup"
	"conclave/internal/clock"
	"conclave/internal/clocksync"
	"conclave/internal/config"
	"conclave/internal/meeting"
	"conclave/internal/pki"
	"conclave/internal/secrets"
	"conclave/internal/selfcheck"
	"conclave/internal/settings"
	"conclave/internal/store"
	"conclave/internal/syslog"
	"conclave/internal/version"
	"conclave/internal/web"
)

// The operator's side of a node (docs/admin.md): the master key, the
// runtime settings, the self-check, the alarms, the sealed audit log with
// its files and syslog forwarders, backups, certificates, metrics and the
// clock's state.

// Intervals of the periodic checks.
const (
	selfCheckInterval = 5 * time.Minute
	auditSyncInterval = 5 * time.Second
	certCheckInterval = time.Hour
	clockInterval     = time.Minute
)

// ops holds the operator's parts of a node.
type ops struct {
	cfg      config.Config
	log      *slog.Logger
	clock    clock.Clock
	opts     Options
	box      *secrets.Box
	settings *settings.Store
	alarms   *alarm.Center
	checker  *selfcheck.Checker
	backups  *backup.Manager
	certs    *pki.Holder
	registry *prometheus.Registry
	counter  *auditCounter
	node     string
	audit    *audit.Log
	material *pki.Material
	store    *store.DB
	token    string // bearer token for /metrics; "" for none

	refusing atomic.Pointer[string] // why the node refuses to serve

	renewing       atomic.Bool              // checkCerts is renewing (no recursion)
	pendingChanges []selfcheck.Change       // put back at start
	upgrade        *selfcheck.BinaryUpgrade // a new binary at start

	mu       sync.Mutex
	syslog   map[string]*syslog.Forwarder
	cancels  map[string]context.CancelFunc
	clockNow clocksync.State
	ctx      context.Context
	stops    []func()
}

// isNewDataDir reports whether no server has run on dir yet (no
// database, or one without a server-started record: made by the CLI
// only, or by a version without the self-check). A missing manifest is
// then made rather than refused.
func isNewDataDir(cfg config.Config) bool {
	if cfg.Database == "" {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, backup.DatabaseFile)); errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	st, err := store.Open(cfg.StoreName())
	if err != nil {
		return false
	}
	defer st.Close()
	recs, err := st.ListAudit(context.Background(), store.AuditFilter{Action: audit.ActionServerStarted, Limit: 1})
	return err == nil && len(recs) == 0
}

// openOpsEarly runs before anything reads the data directory: a staged
// restore is put in place, the master key is checked, clear keys are
// sealed, the self-check puts back what changed, and the settings load.
func openOpsEarly(cfg config.Config, log *slog.Logger, opts Options) (*ops, error) {
	o := &ops{cfg: cfg, log: log, clock: clock.Or(opts.Clock), opts: opts, syslog: map[string]*syslog.Forwarder{}, cancels: map[string]context.CancelFunc{}}
	isNew := isNewDataDir(cfg)
	var err error
	o.box, err = secrets.Open(cfg.DataDir, secrets.Source{KeyFile: cfg.Secrets.KeyFile, Key: cfg.Secrets.Key, Passphrase: cfg.Secrets.Passphrase})
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	sealed, err := o.box.SealDir(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("encrypt the keys at rest: %w", err)
	}
	for _, p := range sealed {
		log.Info("key encrypted at rest", "file", p)
	}
	o.alarms = alarm.New(o.clock)
	binary := opts.Binary
	if binary == "" {
		binary, _ = os.Executable()
	}
	if opts.Binary == "-" {
		binary = ""
	}
	var up *selfcheck.BinaryUpgrade
	o.checker, up, err = selfcheck.Open(selfcheck.Config{DataDir: cfg.DataDir, Box: o.box, Binary: binary,
		Version: version.Get().Version, Now: o.clock.Now, New: isNew})
	if err != nil {
		return nil, fmt.Errorf("refusing to serve: %w", err)
	}
	restored, err := o.applyStagedRestore()
	if err != nil {
		return nil, err
	}
	if restored {
		// The restore was verified when it was staged; its files are the
		// configuration now.
		if err := o.checker.Commit(); err != nil {
			return nil, err
		}
	}
	res := o.checker.Check()
	if res.Fatal != nil {
		return nil, fmt.Errorf("refusing to serve: %w", res.Fatal)
	}
	o.pendingChanges = res.Changes
	o.upgrade = up
	o.settings, err = settings.Open(cfg.DataDir, o.box)
	if err != nil {
		return nil, err
	}
	o.node = cfg.NodeName
	if o.node == "" {
		o.node, _ = os.Hostname()
		if o.node == "" {
			o.node = "node"
		}
	}
	return o, nil
}

// tlsMaterial returns the certificate the node serves: its imported one
// when it has one, else the generated (or operator-file) one.
func (o *ops) tlsMaterial(m *pki.Material) (tls.Certificate, error) {
	o.material = m
	if o.cfg.CertFile != "" {
		return m.Certificate, nil
	}
	cert, err := pki.LoadNode(o.cfg.DataDir, o.node, o.box)
	if errors.Is(err, fs.ErrNotExist) {
		return m.Certificate, nil
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil
}

// openAudit opens the sealed audit log with its files.
func (o *ops) openAudit(st *store.DB) (*audit.Log, error) {
	o.store = st
	dir := filepath.Join(o.cfg.DataDir, "audit")
	key, err := audit.LoadKey(filepath.Join(dir, audit.KeyFile), o.box, true)
	if err != nil {
		return nil, err
	}
	set := o.settings.Get().Audit
	l, err := audit.OpenLog(st, o.clock, audit.LogConfig{Key: key, Dir: dir, MaxFileSize: int64(set.MaxFileMB) << 20,
		MaxTotalSize: int64(set.MaxTotalMB) << 20, MinFree: uint64(set.MinFreeMB) << 20, Alarms: o.alarms,
		FreeSpace: o.opts.FreeSpace, Logger: o.log})
	if err != nil {
		return nil, err
	}
	o.audit = l
	o.counter = newAuditCounter()
	l.AddObserver(o.counter)
	o.alarms.Observe(alarmObserver{log: o.log, audit: l})
	return l, nil
}

// finish runs once every part is open: it signs the configuration as
// good, records the start, and builds the metrics.
func (o *ops) finish(ctx context.Context, s *Server) error {
	o.ctx = ctx
	if err := o.checker.Commit(); err != nil {
		return fmt.Errorf("self-check: %w", err)
	}
	rec := func(e audit.Event) {
		if err := o.audit.Record(ctx, e); err != nil {
			o.log.Error("audit record failed", "action", e.Action, "err", err)
		}
	}
	info := version.Get()
	if o.upgrade != nil {
		rec(audit.Event{Action: audit.ActionBinaryChanged, Outcome: audit.OutcomeInfo, Target: info.Version,
			Details: map[string]string{"old_version": o.upgrade.OldVersion, "new_version": o.upgrade.NewVersion,
				"old_sha256": o.upgrade.OldHash, "new_sha256": o.upgrade.NewHash}})
	}
	o.reportChanges(ctx, o.pendingChanges, "start")
	rec(audit.Event{Action: audit.ActionServerStarted, Outcome: audit.OutcomeInfo, Target: o.node,
		Details: map[string]string{"version": info.Version, "revision": info.Revision, "master_key": fmt.Sprint(o.box.Enabled())}})
	if o.cfg.MetricsTokenFile != "" {
		b, err := os.ReadFile(o.cfg.MetricsTokenFile)
		if err != nil {
			return fmt.Errorf("metrics token: %w", err)
		}
		o.token = strings.TrimSpace(string(b))
		if len(o.token) < 16 {
			return errors.New("the metrics token must have at least 16 characters")
		}
	}
	o.registry = newRegistry(nodeFigures{
		media:    s.engine,
		meetings: s.meetings.Stats,
		alarms:   o.alarms,
		audit:    o.audit,
		clock:    func() bool { return o.clockState().Synced },
		certs:    o.certExpiries,
		syslog:   o.syslogUp,
		relay:    s.https.stats(),
	}, o.counter)
	// The database goes into every backup: SQLite as a copy of its file,
	// PostgreSQL as pg_dump's archive.
	var err error
	o.backups, err = backup.NewManager(backup.ManagerConfig{
		Source: backup.Source{DataDir: o.cfg.DataDir, Box: o.box, Snapshot: o.store.Snapshot, SnapshotName: SnapshotName(o.store),
			Version: info.Version, Node: o.node},
		Settings: func() settings.Backup { return o.settings.Get().Backup },
		Clock:    o.clock, Alarms: o.alarms, Audit: o.audit, Logger: o.log,
	})
	return err
}

// reportChanges raises the self-check alarm and audits what the
// self-check put back.
func (o *ops) reportChanges(ctx context.Context, changes []selfcheck.Change, when string) {
	if len(changes) == 0 {
		return
	}
	var names []string
	for _, ch := range changes {
		names = append(names, ch.Path+" "+ch.What)
		action, outcome := audit.ActionSelfCheckRestored, audit.OutcomeSuccess
		if !ch.Restored {
			action, outcome = audit.ActionSelfCheckFailed, audit.OutcomeFailure
		}
		det := map[string]string{"change": ch.What, "when": when}
		if ch.Error != "" {
			det["error"] = ch.Error
		}
		if err := o.audit.Record(ctx, audit.Event{Action: action, Outcome: outcome, Target: ch.Path, Details: det}); err != nil {
			o.log.Error("audit record failed", "err", err)
		}
		o.log.Warn("self-check: configuration changed outside Conclave", "file", ch.Path, "change", ch.What, "restored", ch.Restored)
	}
	o.alarms.Raise(alarm.KindSelfCheck, "configuration", alarm.Major,
		"Protected configuration was changed outside Conclave and put back as it was: "+strings.Join(names, ", ")+". Find out who changed it.")
}

// start begins the periodic work.
func (o *ops) start(ctx context.Context, s *Server) {
	go o.audit.Run(ctx, auditSyncInterval)
	o.backups.Schedule(ctx)
	o.applySyslog(ctx)
	o.checkClock()
	o.checkCerts()
	// The certificate checks follow the node's clock (expiry is a rule
	// about time; tests move it). The self-check and the reading of the
	// kernel's clock state are inspections repeated on real time
	// (Server.SelfCheck runs one at once).
	every := func(d time.Duration, f func()) func() {
		t := time.NewTicker(d)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					f()
				}
			}
		}()
		return t.Stop
	}
	o.stops = append(o.stops,
		every(selfCheckInterval, func() { o.SelfCheck(ctx, s) }),
		every(clockInterval, o.checkClock),
		every(clockInterval, func() { o.reloadIfChanged(ctx) }),
		clock.Every(o.clock, certCheckInterval, o.checkCerts),
		o.backups.Stop,
	)
}

// stop ends the periodic work and the forwarders, and records the stop.
func (o *ops) stop() {
	for _, f := range o.stops {
		f()
	}
	o.mu.Lock()
	for _, c := range o.cancels {
		c()
	}
	fws := make([]*syslog.Forwarder, 0, len(o.syslog))
	for _, f := range o.syslog {
		fws = append(fws, f)
	}
	o.mu.Unlock()
	if o.audit != nil {
		if err := o.audit.Record(context.Background(), audit.Event{Action: audit.ActionServerStopped, Outcome: audit.OutcomeInfo, Target: o.node}); err != nil {
			o.log.Error("audit record failed", "err", err)
		}
	}
	for _, f := range fws {
		<-f.Done()
	}
	if o.audit != nil {
		o.audit.Close()
	}
}

// SelfCheck runs the self-check now: what changed is put back, alarmed
// and audited; what cannot be put back makes the node refuse to serve.
func (o *ops) SelfCheck(ctx context.Context, s *Server) selfcheck.Result {
	res := o.checker.Check()
	o.reportChanges(ctx, res.Changes, "periodic")
	if res.Fatal != nil {
		reason := res.Fatal.Error()
		o.refusing.Store(&reason)
		o.alarms.Raise(alarm.KindSelfCheck, "refusing", alarm.Critical, "The node refuses to serve: "+reason)
		o.log.Error("self-check failed: refusing to serve", "err", res.Fatal)
		return res
	}
	for _, ch := range res.Changes {
		switch {
		case ch.Path == settings.FileName:
			if err := o.settings.Reload(); err != nil {
				o.log.Error("reload settings", "err", err)
			}
			o.applySyslog(ctx)
			o.backups.Schedule(ctx)
		case strings.HasPrefix(ch.Path, "tls/"):
			o.reloadCertificate(ctx)
		}
	}
	return res
}

// Refusing says why the node refuses to serve, "" when it serves.
func (o *ops) Refusing() string {
	if p := o.refusing.Load(); p != nil {
		return *p
	}
	return ""
}

// refuseGuard answers every request with 503 while the node refuses to
// serve (the self-check could not restore the configuration).
func (o *ops) refuseGuard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := o.Refusing(); why != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "Conclave refuses to serve: "+why+"\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// reloadCertificate serves the certificate on disk (imported, renewed or
// restored) without dropping connections.
func (o *ops) reloadCertificate(ctx context.Context) {
	m, err := pki.Ensure(pki.Options{Dir: o.cfg.DataDir, Hosts: o.cfg.Hosts, CertFile: o.cfg.CertFile, KeyFile: o.cfg.KeyFile, Box: o.box})
	if err != nil {
		o.log.Error("reload certificate", "err", err)
		return
	}
	cert, err := o.tlsMaterial(m)
	if err != nil {
		o.log.Error("reload certificate", "err", err)
		return
	}
	old := o.certs.Load()
	o.certs.Store(cert)
	if m.Generated {
		o.checker.Commit()
	}
	if old.Leaf == nil || cert.Leaf == nil || pki.Fingerprint(old.Leaf) != pki.Fingerprint(cert.Leaf) {
		o.log.Info("serving a new certificate", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
		if err := o.audit.Record(ctx, audit.Event{Action: audit.ActionCertReloaded, Outcome: audit.OutcomeSuccess, Target: o.node,
			Details: map[string]string{"fingerprint": pki.Fingerprint(cert.Leaf), "not_after": cert.Leaf.NotAfter.UTC().Format(time.RFC3339)}}); err != nil {
			o.log.Error("audit record failed", "err", err)
		}
		o.checkCerts()
	}
}

// reloadIfChanged serves the node's imported certificate when the file
// on disk is not the one served (installed by `conclave cert import`
// while the server runs).
func (o *ops) reloadIfChanged(ctx context.Context) {
	if o.cfg.CertFile != "" {
		return
	}
	cert, err := pki.LoadNode(o.cfg.DataDir, o.node, o.box)
	if err != nil || cert.Leaf == nil {
		return
	}
	if cur := o.certs.Load(); cur.Leaf == nil || pki.Fingerprint(cur.Leaf) != pki.Fingerprint(cert.Leaf) {
		o.reloadCertificate(ctx)
	}
}

// certificates lists the node's certificates.
func (o *ops) certificates() []pki.CertInfo {
	var out []pki.CertInfo
	if c := o.certs.Load(); c.Leaf != nil {
		out = append(out, pki.Describe("server", c.Leaf))
	}
	if o.material != nil && o.material.CACert != nil {
		out = append(out, pki.Describe("local-ca", o.material.CACert))
	}
	cas, err := pki.TrustedCAs(o.cfg.DataDir)
	if err == nil {
		names := make([]string, 0, len(cas))
		for n := range cas {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			for _, c := range cas[n] {
				out = append(out, pki.Describe("trusted-ca:"+n, c))
			}
		}
	}
	return out
}

func (o *ops) certExpiries() map[string]time.Time {
	out := map[string]time.Time{}
	for _, c := range o.certificates() {
		out[c.Role] = c.NotAfter
	}
	return out
}

// checkCerts raises or clears the expiry alarms: minor within the first
// threshold (30 days), major within the second (7 days), critical once
// expired. A generated server certificate close to expiry is renewed.
func (o *ops) checkCerts() {
	days := o.settings.Get().CertAlarmDays
	now := o.clock.Now()
	// The generated certificate (not an imported or operator one) renews
	// itself 30 days before its end; the reload issues the new one and
	// checks again.
	if c := o.certs.Load(); c.Leaf != nil && o.material != nil && !o.material.Operator() && o.ctx != nil &&
		o.material.Certificate.Leaf != nil && pki.Fingerprint(c.Leaf) == pki.Fingerprint(o.material.Certificate.Leaf) &&
		c.Leaf.NotAfter.Sub(now) < 30*24*time.Hour && o.renewing.CompareAndSwap(false, true) {
		o.reloadCertificate(o.ctx)
		o.renewing.Store(false)
		return
	}
	for _, c := range o.certificates() {
		left := c.NotAfter.Sub(now)
		var sev alarm.Severity
		switch {
		case left <= 0:
			sev = alarm.Critical
		case left <= time.Duration(days[1])*24*time.Hour:
			sev = alarm.Major
		case left <= time.Duration(days[0])*24*time.Hour:
			sev = alarm.Minor
		}
		if sev == "" {
			o.alarms.Clear(alarm.KindCertificate, c.Role)
			continue
		}
		msg := fmt.Sprintf("The %s certificate (%s) expires on %s, in %d days: renew it.", c.Role, c.Subject, c.NotAfter.Format(time.DateOnly), int(left.Hours()/24))
		if left <= 0 {
			msg = fmt.Sprintf("The %s certificate (%s) expired on %s.", c.Role, c.Subject, c.NotAfter.Format(time.DateOnly))
		}
		o.alarms.Raise(alarm.KindCertificate, c.Role, sev, msg)
	}
}

// clockState reads the clock's synchronisation state.
func (o *ops) clockState() clocksync.State {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.clockNow
}

func (o *ops) checkClock() {
	read := o.opts.ClockSync
	if read == nil {
		read = clocksync.System
	}
	st := read()
	o.mu.Lock()
	o.clockNow = st
	o.mu.Unlock()
	o.alarms.Set(!st.Synced, alarm.KindClock, "system", alarm.Major, st.Summary())
}

// applySyslog starts, restarts and stops forwarders to match the settings.
func (o *ops) applySyslog(ctx context.Context) {
	want := map[string]settings.SyslogServer{}
	for _, s := range o.settings.Get().Syslog.Servers {
		want[s.Name] = s
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, cancel := range o.cancels {
		cancel()
		delete(o.cancels, name)
		delete(o.syslog, name)
		o.alarms.Clear(alarm.KindSyslog, name)
	}
	for name, srv := range want {
		roots, err := o.syslogRoots(srv.CA)
		if err != nil {
			o.alarms.Raise(alarm.KindSyslog, name, alarm.Major, "Syslog server "+name+": "+err.Error())
			continue
		}
		var cert *tls.Certificate
		if srv.ClientCert != "" {
			c, err := tls.X509KeyPair([]byte(srv.ClientCert), []byte(srv.ClientKey))
			if err != nil {
				o.alarms.Raise(alarm.KindSyslog, name, alarm.Major, "Syslog server "+name+": the client certificate and key do not load: "+err.Error())
				continue
			}
			cert = &c
		}
		host, _ := os.Hostname()
		fctx, cancel := context.WithCancel(ctx)
		fw, err := syslog.New(fctx, syslog.Config{Server: syslog.Server{Name: name, Address: srv.Address, ServerName: srv.ServerName,
			Roots: roots, ClientCert: cert}, Store: o.store, Dir: filepath.Join(o.cfg.DataDir, "syslog"), Hostname: host,
			Alarms: o.alarms, Clock: o.clock, Logger: o.log})
		if err != nil {
			cancel()
			o.alarms.Raise(alarm.KindSyslog, name, alarm.Major, "Syslog server "+name+": "+err.Error())
			continue
		}
		o.syslog[name], o.cancels[name] = fw, cancel
		o.audit.AddSink(fw)
		go fw.Run(fctx)
		fw.Notify()
	}
}

func (o *ops) syslogRoots(caPEM string) (*x509.CertPool, error) {
	if caPEM == "" {
		return pki.TrustedPool(o.cfg.DataDir)
	}
	return pki.CertPool([]byte(caPEM))
}

func (o *ops) syslogStatus() []syslog.Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]syslog.Status, 0, len(o.syslog))
	for _, f := range o.syslog {
		out = append(out, f.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (o *ops) syslogUp() map[string]bool {
	out := map[string]bool{}
	for _, s := range o.syslogStatus() {
		out[s.Name] = s.Up
	}
	return out
}

// metricsAllowed reports whether r carries the metrics bearer token.
func (o *ops) metricsAllowed(r *http.Request) bool {
	if o.token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(o.token)) == 1
}

// alarmObserver writes each alarm change to the log and the audit log.
// Break-in blocks have audit actions of their own (alarmEvents).
type alarmObserver struct {
	log   *slog.Logger
	audit audit.Recorder
}

func (a alarmObserver) Raised(al alarm.Alarm) {
	a.log.Warn("alarm raised", "kind", al.Kind, "subject", al.Subject, "severity", al.Severity, "message", al.Message)
	a.record(al, audit.ActionAlarmRaised, audit.OutcomeFailure)
}

func (a alarmObserver) Cleared(al alarm.Alarm) {
	a.log.Info("alarm cleared", "kind", al.Kind, "subject", al.Subject)
	a.record(al, audit.ActionAlarmCleared, audit.OutcomeInfo)
}

func (a alarmObserver) record(al alarm.Alarm, action, outcome string) {
	if al.Kind == alarm.KindRoomBlocked || al.Kind == alarm.KindAddressQuarantined {
		return
	}
	if err := a.audit.Record(context.Background(), audit.Event{Action: action, Outcome: outcome, Target: al.Kind + ":" + al.Subject,
		Details: map[string]string{"kind": al.Kind, "severity": string(al.Severity), "message": al.Message}}); err != nil {
		a.log.Error("audit record failed", "action", action, "err", err)
	}
}

// stagedDir holds a restore staged from the admin page; stagedSig its
// signature by the self-check key.
const (
	stagedDir = "restore-pending"
	stagedSig = "restore-pending.sig"
)

// applyStagedRestore puts a restore staged from the admin page in place
// before the node opens anything, if its signature (made by this node's
// self-check key when the backup was checked) verifies: each entry
// replaces the current one, which is kept in <data>/replaced-<time>. The
// master key's files and the self-check stay.
func (o *ops) applyStagedRestore() (bool, error) {
	dataDir := o.cfg.DataDir
	staged := filepath.Join(dataDir, stagedDir)
	ents, err := os.ReadDir(staged)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sig, _ := os.ReadFile(filepath.Join(dataDir, stagedSig))
	digest, err := selfcheck.TreeDigest(staged)
	if err != nil {
		return false, err
	}
	if !o.checker.VerifyBlob(digest, sig) {
		return false, fmt.Errorf("refusing to serve: %s holds a restore that this node did not stage (its signature does not verify); remove it, or restore with 'conclave backup restore'", staged)
	}
	aside := filepath.Join(dataDir, "replaced-"+o.clock.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return false, err
	}
	cur, err := os.ReadDir(dataDir)
	if err != nil {
		return false, err
	}
	for _, e := range cur {
		n := e.Name()
		switch {
		case n == stagedDir, n == stagedSig, strings.HasPrefix(n, "replaced-"), n == backup.Dir, n == "files",
			n == secrets.CheckFile, n == secrets.SaltFile, n == selfcheck.Dir:
			continue
		}
		if err := os.Rename(filepath.Join(dataDir, n), filepath.Join(aside, n)); err != nil {
			return false, fmt.Errorf("restore: move %s aside: %w", n, err)
		}
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(staged, e.Name()), filepath.Join(dataDir, e.Name())); err != nil {
			return false, fmt.Errorf("restore: put %s in place: %w", e.Name(), err)
		}
	}
	if err := os.RemoveAll(staged); err != nil {
		return false, err
	}
	os.Remove(filepath.Join(dataDir, stagedSig))
	if _, err := o.box.SealDir(dataDir); err != nil {
		return false, err
	}
	o.log.Warn("restored the staged backup; the previous data is in "+aside, "dir", aside)
	return true, nil
}

// stageRestore checks a backup and stages it for the next start, its
// keys sealed under the master key as they wait in the data directory.
// A node whose store is PostgreSQL does not stage: the database it runs
// on is replaced by `conclave backup restore` onto an empty one.
func (o *ops) stageRestore(r io.Reader, passphrase string) (backup.Header, error) {
	staged := filepath.Join(o.cfg.DataDir, stagedDir)
	os.RemoveAll(staged)
	os.Remove(filepath.Join(o.cfg.DataDir, stagedSig))
	if o.store.Engine() == "postgres" {
		return backup.Header{}, errors.New("this node's store is PostgreSQL, which the admin page does not replace under the running node: restore with 'conclave backup restore -data NEWDIR -database postgres://.../EMPTY' onto a new data directory and an empty database")
	}
	h, err := backup.Restore(r, passphrase, staged, o.box)
	if err != nil {
		return h, err
	}
	if _, err := os.Stat(filepath.Join(staged, backup.PostgresFile)); err == nil {
		os.RemoveAll(staged)
		return h, errors.New("this backup was made on a node whose store is PostgreSQL; restore it with 'conclave backup restore -database postgres://...'")
	}
	digest, err := selfcheck.TreeDigest(staged)
	if err == nil {
		err = secrets.WriteAtomic(filepath.Join(o.cfg.DataDir, stagedSig), o.checker.SignBlob(digest), 0o600)
	}
	if err != nil {
		os.RemoveAll(staged)
		return h, err
	}
	return h, nil
}

// webOps adapts ops to the web layer's interface.
var _ web.Operations = (*opsWeb)(nil)

// hostAuditor records the meetings' host actions in the audit log.
type hostAuditor struct {
	log   *slog.Logger
	audit audit.Recorder
}

func (h hostAuditor) HostAction(a meeting.HostAction) {
	if err := h.audit.Record(context.Background(), audit.Event{Actor: a.Actor, Source: a.Source, Action: a.Action,
		Target: a.Target, Outcome: audit.OutcomeSuccess, Details: a.Details}); err != nil {
		h.log.Error("audit record failed", "action", a.Action, "err", err)
	}
}
