package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/backup"
	"conclave/internal/perm"
	"conclave/internal/pki"
	"conclave/internal/settings"
	"conclave/internal/store"
)

// Operations is what the operator's endpoints need from the node
// (internal/server implements it): alarms, the audit log, settings,
// backups, certificates, metrics and the system's state.
type Operations interface {
	Alarms() []alarm.Alarm
	AuditLog() *audit.Log
	VerifyAudit(ctx context.Context) (audit.VerifyResult, error)
	System() any
	Settings() settings.Settings
	// ReplaceSettings validates and applies new settings.
	ReplaceSettings(ctx context.Context, s settings.Settings) error
	Backups() ([]backup.Info, error)
	CreateBackup(ctx context.Context, passphrase string) (backup.Info, error)
	BackupPath(name string) (string, error)
	// StageRestore checks a backup and stages it for the next start.
	StageRestore(r io.Reader, passphrase string) (backup.Header, error)
	CreateCSR(req pki.CSRRequest) ([]byte, error)
	ImportCertificate(ctx context.Context, chainPEM []byte) (pki.CertInfo, error)
	ImportTrustedCA(name string, pemData []byte) ([]pki.CertInfo, error)
	Certificates() []pki.CertInfo
	// Metrics serves the Prometheus metrics; MetricsAllowed reports
	// whether a request carries the scrape token.
	Metrics() http.Handler
	MetricsAllowed(r *http.Request) bool
}

// maxRestoreSize bounds an uploaded backup.
const maxRestoreSize = 4 << 30

// restorePath receives a backup to restore; its body is not bounded by
// maxBodySize.
const restorePath = "/api/backups/restore"

// opsRoutes returns the operator's rows of the route table (docs/api.md,
// "Operations"): the audit log for AuditView (the auditor's permission),
// the system's state for SystemView, changes for SystemManage.
func (s *Server) opsRoutes(m func(method, path string, p perm.Permission, h ManageFunc) Route) []Route {
	if s.Ops == nil {
		// A node without them (tests of the web layer alone) answers as
		// for an unknown path.
		m = func(method, path string, p perm.Permission, _ ManageFunc) Route {
			return Route{Method: method, Path: path, Where: Management, Perm: p, Manage: func(w http.ResponseWriter, _ *http.Request, _ store.User) {
				writeError(w, http.StatusNotFound, "not-found", "No such API endpoint.")
			}}
		}
	}
	rows := []Route{
		m("GET", "/api/audit", perm.AuditView, s.apiAudit),
		m("GET", "/api/audit/verify", perm.AuditView, s.apiAuditVerify),
		m("GET", "/api/alarms", perm.SystemView, s.apiAlarms),
		m("GET", "/api/system", perm.SystemView, s.apiSystem),
		m("GET", "/api/system/settings", perm.SystemView, s.apiSettings),
		m("PATCH", "/api/system/settings", perm.SystemManage, s.apiUpdateSettings),
		m("GET", "/api/backups", perm.SystemView, s.apiBackups),
		m("POST", "/api/backups", perm.SystemManage, s.apiCreateBackup),
		m("GET", "/api/backups/{name}", perm.SystemManage, s.apiDownloadBackup),
		m("POST", restorePath, perm.SystemManage, s.apiRestoreBackup),
		m("GET", "/api/certificates", perm.SystemView, s.apiCertificates),
		m("POST", "/api/certificates/csr", perm.SystemManage, s.apiCSR),
		m("POST", "/api/certificates/import", perm.SystemManage, s.apiImportCertificate),
		m("POST", "/api/certificates/trusted", perm.SystemManage, s.apiImportCA),
	}
	if s.Ops != nil {
		rows = append(rows, Route{Method: "GET", Path: "/metrics", Where: Management, Handle: s.metrics})
	}
	return rows
}

// recordOp audits an operator's action.
func (s *Server) recordOp(r *http.Request, u store.User, action, outcome, target string, details map[string]string) {
	if s.Audit == nil {
		return
	}
	if err := s.Audit.Record(r.Context(), audit.Event{Actor: u.Username, Source: clientAddr(r), Action: action,
		Target: target, Outcome: outcome, Details: details}); err != nil {
		s.log.Error("audit record failed", "action", action, "err", err)
	}
}

// auditFilter reads the filters of GET /api/audit.
func auditFilter(r *http.Request) (store.AuditFilter, error) {
	q := r.URL.Query()
	f := store.AuditFilter{Action: q.Get("action"), Actor: q.Get("actor"), Outcome: q.Get("outcome"),
		Source: q.Get("source"), Target: q.Get("target"), Text: q.Get("q"), Newest: q.Get("order") != "oldest"}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339, v)
			if err != nil {
				if tm, err = time.Parse("2006-01-02", v); err != nil {
					return f, fmt.Errorf("%s must be a date (2026-12-05) or an RFC 3339 time", t.name)
				}
			}
			*t.dst = tm
		}
	}
	for _, n := range []struct {
		name string
		dst  *int64
	}{{"after", &f.AfterSeq}, {"before", &f.BeforeSeq}} {
		if v := q.Get(n.name); v != "" {
			i, err := strconv.ParseInt(v, 10, 64)
			if err != nil || i < 0 {
				return f, fmt.Errorf("%s must be a record number", n.name)
			}
			*n.dst = i
		}
	}
	f.Limit = 200
	if v := q.Get("limit"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > 100000 {
			return f, errors.New("limit must be between 1 and 100000")
		}
		f.Limit = i
	}
	return f, nil
}

// apiAudit lists audit records, filtered, as JSON (default) or, with
// format=csv or format=json and download, as an export file.
func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, u store.User) {
	f, err := auditFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-filter", sentence(err))
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "csv" {
		writeError(w, http.StatusBadRequest, "invalid-format", "The format must be json or csv.")
		return
	}
	if format != "" && r.URL.Query().Get("limit") == "" {
		f.Limit = 100000
	}
	recs, err := s.Ops.AuditLog().List(r.Context(), f)
	if err != nil {
		s.log.Error("list audit", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "The server could not read the audit log.")
		return
	}
	out := make([]audit.FileRecord, len(recs))
	for i, rec := range recs {
		out[i] = audit.ToFile(rec)
	}
	if format == "" {
		writeJSON(w, http.StatusOK, map[string]any{"records": out})
		return
	}
	s.recordOp(r, u, audit.ActionAuditExported, audit.OutcomeSuccess, "audit", map[string]string{"format": format,
		"records": strconv.Itoa(len(out)), "filter": r.URL.RawQuery})
	name := "conclave-audit-" + time.Now().UTC().Format("20060102T150405Z") + "." + format
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	if format == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	audit.WriteCSV(w, out)
}

func (s *Server) apiAuditVerify(w http.ResponseWriter, r *http.Request, u store.User) {
	res, err := s.Ops.VerifyAudit(r.Context())
	body := map[string]any{"records": res.Records, "firstSeq": res.FirstSeq, "lastSeq": res.LastSeq,
		"unsealed": res.Unsealed, "fileRecords": res.FileRecords, "ok": err == nil}
	outcome := audit.OutcomeSuccess
	if err != nil {
		body["error"] = sentence(err)
		outcome = audit.OutcomeFailure
	}
	s.recordOp(r, u, audit.ActionAuditVerified, outcome, "audit", map[string]string{"records": strconv.FormatInt(res.Records, 10)})
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) apiAlarms(w http.ResponseWriter, r *http.Request, _ store.User) {
	writeJSON(w, http.StatusOK, map[string]any{"alarms": s.Ops.Alarms()})
}

func (s *Server) apiSystem(w http.ResponseWriter, r *http.Request, _ store.User) {
	writeJSON(w, http.StatusOK, s.Ops.System())
}

func (s *Server) apiSettings(w http.ResponseWriter, r *http.Request, _ store.User) {
	writeJSON(w, http.StatusOK, settings.Redacted(s.Ops.Settings()))
}

// apiUpdateSettings applies a partial settings object; secrets sent back
// as "[set]" keep their value. The audit entry names the settings that
// changed, never their values.
func (s *Server) apiUpdateSettings(w http.ResponseWriter, r *http.Request, u store.User) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", "The request body is too large.")
		return
	}
	cur := s.Ops.Settings()
	next, err := settings.Merge(cur, body)
	if err == nil {
		err = s.Ops.ReplaceSettings(r.Context(), next)
	}
	if err != nil {
		s.recordOp(r, u, audit.ActionConfigChanged, audit.OutcomeFailure, "settings", map[string]string{"error": err.Error()})
		writeError(w, http.StatusBadRequest, "invalid-settings", sentence(err))
		return
	}
	changed := settings.Changes(cur, next)
	if len(changed) > 0 {
		s.recordOp(r, u, audit.ActionConfigChanged, audit.OutcomeSuccess, "settings", map[string]string{"changed": strings.Join(changed, ",")})
	}
	writeJSON(w, http.StatusOK, settings.Redacted(next))
}

func (s *Server) apiBackups(w http.ResponseWriter, r *http.Request, _ store.User) {
	list, err := s.Ops.Backups()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "The server could not list the backups.")
		return
	}
	if list == nil {
		list = []backup.Info{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"backups": list})
}

func (s *Server) apiCreateBackup(w http.ResponseWriter, r *http.Request, u store.User) {
	var req struct {
		Passphrase string `json:"passphrase"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	info, err := s.Ops.CreateBackup(r.Context(), req.Passphrase)
	if err != nil {
		s.recordOp(r, u, audit.ActionBackupFailed, audit.OutcomeFailure, "backup", map[string]string{"error": err.Error()})
		writeError(w, http.StatusBadRequest, "backup-failed", sentence(err))
		return
	}
	s.recordOp(r, u, audit.ActionBackupCreated, audit.OutcomeSuccess, info.Name, map[string]string{"size": strconv.FormatInt(info.Size, 10), "trigger": "admin"})
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) apiDownloadBackup(w http.ResponseWriter, r *http.Request, u store.User) {
	name := r.PathValue("name")
	path, err := s.Ops.BackupPath(name)
	if err != nil {
		writeError(w, http.StatusNotFound, "not-found", sentence(err))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeError(w, http.StatusNotFound, "not-found", "No backup has this name.")
		return
	}
	defer f.Close()
	s.recordOp(r, u, "backup-downloaded", audit.OutcomeSuccess, name, nil)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	st, _ := f.Stat()
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// apiRestoreBackup takes a backup file as the request body and its
// passphrase in the X-Backup-Passphrase header, checks that it opens,
// and stages it: the node restores it at its next start.
func (s *Server) apiRestoreBackup(w http.ResponseWriter, r *http.Request, u store.User) {
	pass := r.Header.Get("X-Backup-Passphrase")
	r.Body = http.MaxBytesReader(w, r.Body, maxRestoreSize)
	h, err := s.Ops.StageRestore(r.Body, pass)
	if err != nil {
		s.recordOp(r, u, audit.ActionBackupRestored, audit.OutcomeFailure, "staged", map[string]string{"error": err.Error()})
		writeError(w, http.StatusBadRequest, "restore-failed", sentence(err))
		return
	}
	s.recordOp(r, u, audit.ActionBackupRestored, audit.OutcomeSuccess, "staged", map[string]string{"created": h.Created.Format(time.RFC3339),
		"node": h.Node, "version": h.Version})
	writeJSON(w, http.StatusAccepted, map[string]any{"created": h.Created, "node": h.Node, "version": h.Version,
		"message": "The backup opened and is staged. Restart Conclave to restore it; the current data is kept aside in the data directory."})
}

func (s *Server) apiCertificates(w http.ResponseWriter, r *http.Request, _ store.User) {
	writeJSON(w, http.StatusOK, map[string]any{"certificates": s.Ops.Certificates(), "keyTypes": pki.KeyTypes})
}

func (s *Server) apiCSR(w http.ResponseWriter, r *http.Request, u store.User) {
	var req pki.CSRRequest
	if !readJSON(w, r, &req) {
		return
	}
	csr, err := s.Ops.CreateCSR(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-request", sentence(err))
		return
	}
	s.recordOp(r, u, audit.ActionCSRCreated, audit.OutcomeSuccess, strings.Join(req.Names, ","), map[string]string{"key_type": req.KeyType})
	writeJSON(w, http.StatusOK, map[string]string{"csr": string(csr)})
}

func (s *Server) apiImportCertificate(w http.ResponseWriter, r *http.Request, u store.User) {
	var req struct {
		Chain string `json:"chain"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	info, err := s.Ops.ImportCertificate(r.Context(), []byte(req.Chain))
	if err != nil {
		s.recordOp(r, u, audit.ActionCertImported, audit.OutcomeFailure, "server", map[string]string{"error": err.Error()})
		writeError(w, http.StatusBadRequest, "invalid-certificate", sentence(err))
		return
	}
	s.recordOp(r, u, audit.ActionCertImported, audit.OutcomeSuccess, info.Subject, map[string]string{"fingerprint": info.Fingerprint,
		"not_after": info.NotAfter.Format(time.RFC3339)})
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) apiImportCA(w http.ResponseWriter, r *http.Request, u store.User) {
	var req struct {
		Name string `json:"name"`
		PEM  string `json:"pem"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	infos, err := s.Ops.ImportTrustedCA(req.Name, []byte(req.PEM))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-certificate", sentence(err))
		return
	}
	var fps []string
	for _, i := range infos {
		fps = append(fps, i.Fingerprint)
	}
	s.recordOp(r, u, audit.ActionCAImported, audit.OutcomeSuccess, req.Name, map[string]string{"fingerprints": strings.Join(fps, ",")})
	writeJSON(w, http.StatusOK, map[string]any{"certificates": infos})
}

// metrics serves /metrics to a scraper with the bearer token, or to a
// signed-in administrator.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if !s.Ops.MetricsAllowed(r) {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="conclave"`)
			writeError(w, http.StatusUnauthorized, "no-session", "Send the metrics token as a bearer token, or sign in.")
			return
		}
		_, u, err := s.Sessions.Lookup(r.Context(), c.Value)
		if err != nil {
			writeError(w, http.StatusUnauthorized, "no-session", "Your session has ended; sign in again.")
			return
		}
		perms, err := s.Roles.Permissions(r.Context(), u)
		if err != nil || !perms.Has(perm.SystemView) {
			writeError(w, http.StatusForbidden, "forbidden", "This needs the metrics token or the permission "+string(perm.SystemView)+".")
			return
		}
	}
	s.Ops.Metrics().ServeHTTP(w, r)
}
