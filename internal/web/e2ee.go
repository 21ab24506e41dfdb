package web

import (
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/files"
	"conclave/internal/ra"
	"conclave/internal/store"
)

// uploadHeader carries a participant's upload token on file requests.
const uploadHeader = "X-Conclave-Upload"

// fileIDHeader carries the id a client chose for its upload: E2EE binds it
// into every encrypted chunk (docs/e2ee.md, section 10).
const fileIDHeader = "X-Conclave-File-Id"

func (s *Server) apiOrg(w http.ResponseWriter, r *http.Request) {
	var org OrgKey
	switch {
	case s.Org != nil:
		org = s.Org
	case s.Authority != nil:
		org = s.Authority
	}
	if org == nil || len(org.PublicKey()) == 0 {
		writeError(w, http.StatusServiceUnavailable, "no-org-key", "This node has not received the organisation's key yet.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"orgId": org.OrgID(), "name": org.Name(),
		"publicKey": base64.StdEncoding.EncodeToString(org.PublicKey()), "logKey": org.LogVerifierKey()})
}

// apiChallenge gives a signed-in session a proof-of-possession challenge
// (docs/e2ee.md, section 7).
func (s *Server) apiChallenge(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.session(w, r)
	if !ok {
		return
	}
	if !sameOrigin(r) || !validCSRF(sess, r) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return
	}
	c := s.Authority.Challenge(string(sess.IDHash))
	writeJSON(w, http.StatusOK, map[string]string{"challenge": base64.StdEncoding.EncodeToString(c)})
}

func (s *Server) apiCredential(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.session(w, r)
	if !ok {
		return
	}
	if !sameOrigin(r) || !validCSRF(sess, r) {
		writeError(w, http.StatusForbidden, "csrf", "The request lacks a valid CSRF token; reload the page.")
		return
	}
	if !s.passwordCurrent(w, u) {
		return
	}
	var req struct {
		DevicePublicKey string `json:"devicePublicKey"`
		Challenge       string `json:"challenge"`
		Signature       string `json:"signature"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	pub, err1 := base64.StdEncoding.DecodeString(req.DevicePublicKey)
	chal, err2 := base64.StdEncoding.DecodeString(req.Challenge)
	sig, err3 := base64.StdEncoding.DecodeString(req.Signature)
	if err1 != nil || err2 != nil || err3 != nil {
		writeError(w, http.StatusBadRequest, "invalid-key", "The device key, challenge or signature is not base64.")
		return
	}
	if len(chal) == 0 || len(sig) == 0 {
		writeError(w, http.StatusBadRequest, "proof-required", "A credential request needs a challenge (POST /api/e2ee/challenge) signed by the device key.")
		return
	}
	cred, notAfter, err := s.Authority.IssueWithProof(r.Context(), string(sess.IDHash), u, pub, chal, sig)
	switch {
	case errors.Is(err, ra.ErrProof):
		s.audited(r, u, "credential-refused", u.Username)
		writeError(w, http.StatusForbidden, "bad-proof", sentence(err))
		return
	case errors.Is(err, ra.ErrRevoked):
		writeError(w, http.StatusForbidden, "revoked", sentence(err))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid-key", sentence(err))
		return
	}
	s.audited(r, u, "credential-issued", u.Username)
	writeJSON(w, http.StatusOK, map[string]string{"credential": base64.StdEncoding.EncodeToString(cred),
		"notAfter": notAfter.Format(time.RFC3339)})
}

// LogSource is what answers the E2EE transparency log's requests
// (docs/e2ee.md, section 13): the registration authority on the
// management node, a conference node's verified copy of it
// (package logmirror) on the others. Both answer in the same JSON, from
// the same tree code (package logtree).
type LogSource interface {
	// Checkpoint returns the signed checkpoint of the latest tree.
	Checkpoint() ([]byte, error)
	// Prove returns the checkpoint (to = 0), a consistency proof and
	// inclusion proofs; ra.ErrTreeSize for a size the log does not have.
	Prove(from, to int64, records []tlog.Hash) (ra.Proof, error)
	// Entries returns records start.. of the tree of size size with
	// their inclusion proofs; ra.ErrTreeSize as Prove.
	Entries(start, size int64) ([]ra.Entry, error)
}

// logAPI serves the log's three endpoints from a LogSource.
type logAPI struct {
	src LogSource
	log *slog.Logger
}

// LogHandler serves GET /api/e2ee/log/checkpoint, POST
// /api/e2ee/log/prove and GET /api/e2ee/log/entries from src, exactly as
// the management node does (a conference node answers from its copy of
// the log with it).
func LogHandler(src LogSource, log *slog.Logger) http.Handler {
	api := logAPI{src: src, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/e2ee/log/checkpoint", api.checkpoint)
	mux.HandleFunc("POST /api/e2ee/log/prove", api.prove)
	mux.HandleFunc("GET /api/e2ee/log/entries", api.entries)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not-found", "No such API endpoint.")
	})
	return mux
}

// logAPI returns the handlers of the log kept by the Authority.
func (s *Server) logAPI() logAPI { return logAPI{src: s.Authority, log: s.log} }

func (l logAPI) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := l.src.Checkpoint()
	if err != nil {
		l.log.Error("log checkpoint", "err", err)
		writeError(w, http.StatusInternalServerError, "log", "The log is unavailable.")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(cp)
}

// hashesJSON encodes tlog hashes as base64 strings.
func hashesJSON(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// maxProveRecords bounds the records of one prove request.
const maxProveRecords = 256

func (l logAPI) prove(w http.ResponseWriter, r *http.Request) {
	var req struct {
		From    int64    `json:"from"`
		To      int64    `json:"to"`
		Records []string `json:"records"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Records) > maxProveRecords {
		writeError(w, http.StatusBadRequest, "too-many", "Ask for at most 256 records at once.")
		return
	}
	var hs []tlog.Hash
	for _, rec := range req.Records {
		b, err := base64.StdEncoding.DecodeString(rec)
		if err != nil || len(b) != tlog.HashSize {
			writeError(w, http.StatusBadRequest, "invalid-hash", "A record hash is not 32 bytes of base64.")
			return
		}
		var h tlog.Hash
		copy(h[:], b)
		hs = append(hs, h)
	}
	p, err := l.src.Prove(req.From, req.To, hs)
	if errors.Is(err, ra.ErrTreeSize) {
		writeError(w, http.StatusBadRequest, "tree-size", "The log has no tree of that size.")
		return
	} else if err != nil {
		l.log.Error("log proof", "err", err)
		writeError(w, http.StatusInternalServerError, "log", "The log is unavailable.")
		return
	}
	type inclusion struct {
		Index int64    `json:"index"`
		Proof []string `json:"proof"`
	}
	out := struct {
		Checkpoint  string      `json:"checkpoint,omitempty"`
		Size        int64       `json:"size"`
		Consistency []string    `json:"consistency"`
		Inclusion   []inclusion `json:"inclusion"`
	}{Checkpoint: string(p.Checkpoint), Size: p.Size, Consistency: hashesJSON(p.Consistency), Inclusion: []inclusion{}}
	for _, in := range p.Inclusion {
		out.Inclusion = append(out.Inclusion, inclusion{Index: in.Index, Proof: hashesJSON(in.Proof)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (l logAPI) entries(w http.ResponseWriter, r *http.Request) {
	start, err1 := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
	size, err2 := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err1 != nil || err2 != nil {
		writeError(w, http.StatusBadRequest, "invalid-range", "Give start and size as integers.")
		return
	}
	entries, err := l.src.Entries(start, size)
	if errors.Is(err, ra.ErrTreeSize) {
		writeError(w, http.StatusBadRequest, "tree-size", "The log has no tree of that size, or start is past it.")
		return
	} else if err != nil {
		l.log.Error("log entries", "err", err)
		writeError(w, http.StatusInternalServerError, "log", "The log is unavailable.")
		return
	}
	type entry struct {
		Record string   `json:"record"`
		Proof  []string `json:"proof"`
	}
	out := struct {
		Entries []entry `json:"entries"`
	}{Entries: []entry{}}
	for _, e := range entries {
		out.Entries = append(out.Entries, entry{Record: base64.StdEncoding.EncodeToString(e.Record), Proof: hashesJSON(e.Proof)})
	}
	writeJSON(w, http.StatusOK, out)
}

// e2eeDeviceJSON is a device of a user, for the admin API.
type e2eeDeviceJSON struct {
	PublicKey      string    `json:"publicKey"`
	Fingerprint    string    `json:"fingerprint"`
	FirstCertified time.Time `json:"firstCertified"`
	LastNotAfter   time.Time `json:"lastNotAfter"`
	Credentials    int       `json:"credentials"`
	Revoked        bool      `json:"revoked"`
	RevokedAt      time.Time `json:"revokedAt,omitzero"`
}

func (s *Server) apiListDevices(w http.ResponseWriter, r *http.Request, _ store.User) {
	u, err := s.Store.UserByName(r.Context(), r.PathValue("username"))
	if err != nil {
		writeError(w, http.StatusNotFound, "no-user", "No user has this name.")
		return
	}
	devs, err := s.Authority.Devices(r.Context(), u)
	if err != nil {
		s.log.Error("list devices", "err", err)
		writeError(w, http.StatusInternalServerError, "log", "The log is unavailable.")
		return
	}
	out := []e2eeDeviceJSON{}
	for _, d := range devs {
		out = append(out, e2eeDeviceJSON{PublicKey: base64.StdEncoding.EncodeToString(d.PublicKey), Fingerprint: d.Fingerprint,
			FirstCertified: d.FirstCertified, LastNotAfter: d.LastNotAfter, Credentials: d.Credentials, Revoked: d.Revoked, RevokedAt: d.RevokedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (s *Server) apiRevokeDevice(w http.ResponseWriter, r *http.Request, admin store.User) {
	var req struct {
		Fingerprint string `json:"fingerprint"`
		Reason      string `json:"reason"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	u, err := s.Store.UserByName(r.Context(), r.PathValue("username"))
	if err != nil {
		writeError(w, http.StatusNotFound, "no-user", "No user has this name.")
		return
	}
	devs, err := s.Authority.Devices(r.Context(), u)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "log", "The log is unavailable.")
		return
	}
	for _, d := range devs {
		if !ra.SameFingerprint(d.Fingerprint, req.Fingerprint) {
			continue
		}
		if err := s.Authority.Revoke(r.Context(), u, d.PublicKey, req.Reason); err != nil {
			s.log.Error("revoke device", "err", err)
			writeError(w, http.StatusInternalServerError, "log", "The revocation could not be logged.")
			return
		}
		s.audited(r, admin, "device-revoked", u.Username+" "+d.Fingerprint)
		writeJSON(w, http.StatusOK, map[string]string{"revoked": d.Fingerprint})
		return
	}
	writeError(w, http.StatusNotFound, "no-device", "This user has no device with this fingerprint.")
}

// fileMeeting returns the meeting of the request's upload token, or
// answers 401.
func (s *Server) fileMeeting(w http.ResponseWriter, r *http.Request) (string, bool) {
	meeting, ok := s.Meetings.MeetingOf(r.Header.Get(uploadHeader))
	if !ok {
		writeError(w, http.StatusUnauthorized, "no-meeting", "Files can only be exchanged by participants of a meeting in progress.")
		return "", false
	}
	return meeting, true
}

func (s *Server) apiUpload(w http.ResponseWriter, r *http.Request) {
	meeting, owner, ok := s.Meetings.UploaderOf(r.Header.Get(uploadHeader))
	if !ok {
		writeError(w, http.StatusUnauthorized, "no-meeting", "Files can only be exchanged by participants of a meeting in progress.")
		return
	}
	if r.ContentLength > s.Files.MaxSize() {
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", tooLarge(s.Files.MaxSize()))
		return
	}
	var id string
	var err error
	if want := r.Header.Get(fileIDHeader); want != "" {
		id, err = s.Files.PutID(meeting, owner, want, r.Body, r.ContentLength)
	} else {
		id, err = s.Files.Put(meeting, owner, r.Body, r.ContentLength)
	}
	switch {
	case errors.Is(err, files.ErrExists), errors.Is(err, files.ErrNotFound):
		writeError(w, http.StatusConflict, "bad-id", "The file id is malformed or already taken.")
	case errors.Is(err, files.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", tooLarge(s.Files.MaxSize()))
	case errors.Is(err, files.ErrQuota):
		writeError(w, http.StatusInsufficientStorage, "quota", "You have shared as much in this meeting as one participant may (or the meeting as a whole). Files go when the meeting ends.")
	case errors.Is(err, files.ErrMeetingEnded):
		writeError(w, http.StatusGone, "meeting-ended", "The meeting ended during the upload; the file was not kept.")
	case errors.Is(err, files.ErrStorageFull):
		s.log.Warn("file store full", "used", s.Files.Used())
		writeError(w, http.StatusInsufficientStorage, "storage-full", "The server has no room for this file now. Try a smaller file or later.")
	case err != nil:
		s.log.Warn("file upload failed", "err", err)
		writeError(w, http.StatusBadRequest, "upload-failed", "The upload did not complete; try again.")
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"id": id})
	}
}

func tooLarge(max int64) string {
	return "The file is larger than the limit of " + strconv.FormatInt(max>>20, 10) + " MiB."
}

func (s *Server) apiDownload(w http.ResponseWriter, r *http.Request) {
	meeting, ok := s.fileMeeting(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	var body io.ReadCloser
	f, size, err := s.Files.Get(meeting, id)
	if err == nil {
		body = f
	} else if s.RemoteFiles != nil {
		// Not kept here: perhaps by the node of a member on another node.
		body, size, err = s.RemoteFiles.FetchFile(r.Context(), meeting, id, s.Files.MaxSize())
	}
	switch {
	case err == nil:
	case errors.Is(err, files.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", tooLarge(s.Files.MaxSize()))
		return
	case errors.Is(err, files.ErrBusy):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "file-busy", "The server that keeps this file is busy. Try again in a few seconds.")
		return
	case errors.Is(err, files.ErrUnreachable):
		s.log.Warn("meeting file on another node unreachable", "err", err)
		writeError(w, http.StatusBadGateway, "file-unreachable", "The server that keeps this file cannot be reached now (it may be down). Try again later, or ask the sender to share it again.")
		return
	default:
		writeError(w, http.StatusNotFound, "file-not-found", "This file is not available (any more) in this meeting.")
		return
	}
	defer body.Close()
	// A fixed type and an attachment, whatever the blob holds: the server
	// cannot see what the sender put in it, so it must never be rendered
	// in this origin.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Cache-Control", "no-store")
	if _, err := io.Copy(w, body); err != nil && f == nil {
		// The client sees a body shorter than its length.
		s.log.Warn("meeting file from another node cut off", "err", err)
	}
}
