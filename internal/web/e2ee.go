package web

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"conclave/internal/files"
)

// uploadHeader carries a participant's upload token on file requests.
const uploadHeader = "X-Conclave-Upload"

// fileIDHeader carries the id a client chose for its upload: E2EE binds it
// into every encrypted chunk (docs/e2ee.md, section 10).
const fileIDHeader = "X-Conclave-File-Id"

func (s *Server) apiOrg(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"orgId": s.Authority.OrgID(), "name": s.Authority.Name(),
		"publicKey": base64.StdEncoding.EncodeToString(s.Authority.PublicKey())})
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
	}
	if !readJSON(w, r, &req) {
		return
	}
	pub, err := base64.StdEncoding.DecodeString(req.DevicePublicKey)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-key", "The device public key is not base64.")
		return
	}
	cred, notAfter, err := s.Authority.Issue(u, pub)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-key", sentence(err))
		return
	}
	s.audited(r, u, "credential-issued", u.Username)
	writeJSON(w, http.StatusOK, map[string]string{"credential": base64.StdEncoding.EncodeToString(cred),
		"notAfter": notAfter.Format(time.RFC3339)})
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
	meeting, ok := s.fileMeeting(w, r)
	if !ok {
		return
	}
	if r.ContentLength > s.Files.MaxSize() {
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", tooLarge(s.Files.MaxSize()))
		return
	}
	var id string
	var err error
	if want := r.Header.Get(fileIDHeader); want != "" {
		id, err = s.Files.PutID(meeting, want, r.Body, r.ContentLength)
	} else {
		id, err = s.Files.Put(meeting, r.Body, r.ContentLength)
	}
	switch {
	case errors.Is(err, files.ErrExists), errors.Is(err, files.ErrNotFound):
		writeError(w, http.StatusConflict, "bad-id", "The file id is malformed or already taken.")
	case errors.Is(err, files.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too-large", tooLarge(s.Files.MaxSize()))
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
	f, size, err := s.Files.Get(meeting, r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusNotFound, "file-not-found", "This file is not available (any more) in this meeting.")
		return
	}
	defer f.Close()
	// A fixed type and an attachment, whatever the blob holds: the server
	// cannot see what the sender put in it, so it must never be rendered
	// in this origin.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Cache-Control", "no-store")
	io.Copy(w, f)
}
