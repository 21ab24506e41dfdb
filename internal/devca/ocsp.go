package devca

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspValidity is how long an OCSP answer may be cached. It is short so
// that a revocation reaches caching relying parties within a minute; the
// SIP edge of this server asks the store directly and sees it at once.
const ocspValidity = time.Minute

// CRLHandler serves the CRL at its distribution point (CRLPath).
func (a *Authority) CRLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		der, err := a.CRL(r.Context())
		if err != nil {
			a.log.Error("CRL", "err", err)
			http.Error(w, "the revocation list is unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(der)
	})
}

// OCSPHandler is the OCSP responder (RFC 6960) at OCSPPath: POST with an
// application/ocsp-request body, or GET with the base64 request in the
// path. Answers are signed by the device CA itself.
func (a *Authority) OCSPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var der []byte
		switch r.Method {
		case http.MethodPost:
			b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
			if err != nil {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			der = b
		case http.MethodGet:
			enc := strings.TrimPrefix(r.URL.Path, OCSPPath)
			enc = strings.TrimPrefix(enc, "/")
			b, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				w.Header().Set("Content-Type", "application/ocsp-response")
				w.Write(ocsp.MalformedRequestErrorResponse)
				return
			}
			der = b
		default:
			http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(a.OCSPResponse(r, der))
	})
}

// OCSPResponse answers one DER OCSP request.
func (a *Authority) OCSPResponse(r *http.Request, der []byte) []byte {
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse
	}
	if !a.ourIssuer(req) {
		return ocsp.UnauthorizedErrorResponse
	}
	st, err := a.Status(r.Context(), req.SerialNumber)
	if err != nil {
		a.log.Error("OCSP status", "err", err)
		return ocsp.InternalErrorErrorResponse
	}
	now := a.clock.Now().UTC().Truncate(time.Second)
	tmpl := ocsp.Response{
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now,
		NextUpdate:   now.Add(ocspValidity),
		IssuerHash:   req.HashAlgorithm,
		Certificate:  nil,
	}
	switch {
	case !st.Known:
		tmpl.Status = ocsp.Unknown
	case !st.RevokedAt.IsZero():
		tmpl.Status = ocsp.Revoked
		tmpl.RevokedAt = st.RevokedAt.Truncate(time.Second)
		tmpl.RevocationReason = st.Reason
	default:
		tmpl.Status = ocsp.Good
	}
	resp, err := ocsp.CreateResponse(a.ca, a.ca, tmpl, a.key)
	if err != nil {
		a.log.Error("OCSP sign", "err", err)
		return ocsp.InternalErrorErrorResponse
	}
	return resp
}

// ourIssuer reports whether the request names the device CA as issuer.
func (a *Authority) ourIssuer(req *ocsp.Request) bool {
	if !req.HashAlgorithm.Available() {
		return false
	}
	h := req.HashAlgorithm.New()
	h.Write(a.ca.RawSubject)
	if string(h.Sum(nil)) != string(req.IssuerNameHash) {
		return false
	}
	return string(keyHash(req.HashAlgorithm, a.ca.RawSubjectPublicKeyInfo)) == string(req.IssuerKeyHash)
}

// keyHash hashes the subjectPublicKey bit string of an encoded
// SubjectPublicKeyInfo, as OCSP's issuerKeyHash does.
func keyHash(h crypto.Hash, spkiDER []byte) []byte {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spkiDER, &spki); err != nil {
		return nil
	}
	d := h.New()
	d.Write(spki.PublicKey.RightAlign())
	return d.Sum(nil)
}
