package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/backup"
	"conclave/internal/clocksync"
	"conclave/internal/pki"
	"conclave/internal/selfcheck"
	"conclave/internal/settings"
	"conclave/internal/syslog"
	"conclave/internal/version"
)

// opsWeb is the node as the web layer's Operations.
type opsWeb struct{ s *Server }

func (w opsWeb) Alarms() []alarm.Alarm       { return w.s.ops.alarms.Active() }
func (w opsWeb) AuditLog() *audit.Log        { return w.s.audit }
func (w opsWeb) Settings() settings.Settings { return w.s.ops.settings.Get() }

func (w opsWeb) VerifyAudit(ctx context.Context) (audit.VerifyResult, error) {
	w.s.audit.Sync(ctx)
	return audit.VerifyLog(ctx, w.s.store, audit.VerifyOptions{Key: w.s.audit.Key(), Dir: w.s.audit.Dir()})
}

// SystemStatus is GET /api/system.
type SystemStatus struct {
	Version   version.Info    `json:"version"`
	Node      string          `json:"node"`
	Started   time.Time       `json:"started"`
	Clock     clocksync.State `json:"clock"`
	ClockText string          `json:"clockText"`
	Alarms    []alarm.Alarm   `json:"alarms"`
	SelfCheck struct {
		Signed   time.Time `json:"signed"`
		Files    []string  `json:"files"`
		Refusing string    `json:"refusing,omitempty"`
	} `json:"selfCheck"`
	Audit struct {
		Bytes    int64 `json:"bytes"`
		MaxBytes int64 `json:"maxBytes"`
	} `json:"audit"`
	Syslog []syslog.Status `json:"syslog"`
	Backup struct {
		Last backup.Result `json:"last"`
		Next time.Time     `json:"next,omitzero"`
	} `json:"backup"`
	MasterKey    bool           `json:"masterKey"`
	Certificates []pki.CertInfo `json:"certificates"`
}

func (w opsWeb) System() any {
	o := w.s.ops
	var st SystemStatus
	st.Version = version.Get()
	st.Node = o.node
	st.Started = w.s.started
	st.Clock = o.clockState()
	st.ClockText = st.Clock.Summary()
	st.Alarms = o.alarms.Active()
	st.SelfCheck.Signed = o.checker.Signed()
	st.SelfCheck.Files = o.checker.Files()
	st.SelfCheck.Refusing = o.Refusing()
	st.Audit.Bytes = w.s.audit.BytesUsed()
	st.Audit.MaxBytes = int64(o.settings.Get().Audit.MaxTotalMB) << 20
	st.Syslog = o.syslogStatus()
	st.Backup.Last, st.Backup.Next = o.backups.Last()
	st.MasterKey = o.box.Enabled()
	st.Certificates = o.certificates()
	return st
}

func (w opsWeb) ReplaceSettings(ctx context.Context, next settings.Settings) error {
	o := w.s.ops
	if err := o.settings.Replace(next); err != nil {
		return err
	}
	if err := o.checker.Commit(); err != nil {
		return err
	}
	a := next.Audit
	w.s.audit.SetLimits(int64(a.MaxFileMB)<<20, int64(a.MaxTotalMB)<<20, uint64(a.MinFreeMB)<<20)
	o.applySyslog(w.s.ctx)
	o.backups.Schedule(w.s.ctx)
	return nil
}

func (w opsWeb) Backups() ([]backup.Info, error) { return w.s.ops.backups.List() }

func (w opsWeb) CreateBackup(ctx context.Context, passphrase string) (backup.Info, error) {
	return w.s.ops.backups.Create(ctx, passphrase)
}

func (w opsWeb) BackupPath(name string) (string, error) { return w.s.ops.backups.Path(name) }

func (w opsWeb) StageRestore(r io.Reader, passphrase string) (backup.Header, error) {
	return w.s.ops.stageRestore(r, passphrase)
}

func (w opsWeb) CreateCSR(req pki.CSRRequest) ([]byte, error) {
	if len(req.Names) == 0 {
		req.Names = w.s.cfg.Hosts
	}
	if len(req.Names) == 0 {
		return nil, errors.New("give the names (DNS names and addresses) the certificate must cover")
	}
	return pki.CreateCSR(w.s.cfg.DataDir, w.s.ops.node, req, w.s.ops.box)
}

func (w opsWeb) ImportCertificate(ctx context.Context, chain []byte) (pki.CertInfo, error) {
	o := w.s.ops
	cert, err := pki.ImportCertificate(w.s.cfg.DataDir, o.node, chain, nil, o.clock.Now(), o.box)
	if err != nil {
		return pki.CertInfo{}, err
	}
	if err := o.checker.Commit(); err != nil {
		return pki.CertInfo{}, err
	}
	o.reloadCertificate(ctx)
	return pki.Describe("server", cert.Leaf), nil
}

func (w opsWeb) ImportTrustedCA(name string, pemData []byte) ([]pki.CertInfo, error) {
	certs, err := pki.ImportTrustedCA(w.s.cfg.DataDir, name, pemData)
	if err != nil {
		return nil, err
	}
	if err := w.s.ops.checker.Commit(); err != nil {
		return nil, err
	}
	var out []pki.CertInfo
	for _, c := range certs {
		out = append(out, pki.Describe("trusted-ca:"+name, c))
	}
	w.s.ops.applySyslog(w.s.ctx)
	return out, nil
}

func (w opsWeb) Certificates() []pki.CertInfo        { return w.s.ops.certificates() }
func (w opsWeb) Metrics() http.Handler               { return metricsHandler(w.s.ops.registry) }
func (w opsWeb) MetricsAllowed(r *http.Request) bool { return w.s.ops.metricsAllowed(r) }

// SelfCheck runs the self-check now (it also runs at start and every five
// minutes): protected files changed outside Conclave are put back, with
// an alarm and an audit record.
func (s *Server) SelfCheck() selfcheck.Result { return s.ops.SelfCheck(s.ctx, s) }

// ActiveAlarms returns the active alarms of the node's alarm list.
func (s *Server) ActiveAlarms() []alarm.Alarm { return s.ops.alarms.Active() }

// Settings returns the node's runtime settings.
func (s *Server) Settings() settings.Settings { return s.ops.settings.Get() }

// AuditLog returns the node's audit log.
func (s *Server) AuditLog() *audit.Log { return s.audit }

// Backups returns the node's backup manager.
func (s *Server) Backups() *backup.Manager { return s.ops.backups }
