package sipedge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"conclave/internal/devca"
)

// Digest authentication (RFC 3261 22, RFC 7616 and 8760) is an optional
// second factor on top of the device certificate: with
// Config.Digest set, a REGISTER needs the device's digest secret
// (401/WWW-Authenticate) and an INVITE too (407/Proxy-Authenticate). The
// user name must be the certificate's account, so a secret only works
// with its own certificate. One algorithm is offered: SHA-256 (RFC 8760),
// or MD5 for phones that know nothing else — offering both is not an
// option, because phones built on libre (baresip 1.0) refuse a challenge
// set that holds an algorithm they lack instead of picking the one they
// know. MD5 is tolerable here only because the exchange runs inside the
// mutually authenticated TLS connection: reading a response to guess the
// secret offline needs that connection broken first.
// Nonces carry their time and an HMAC, so the edge keeps no state; they
// live five minutes.

const nonceLifetime = 5 * time.Minute

// ActionDigestFailed is audited for a wrong digest response.
const ActionDigestFailed = "sip-digest-failed"

type nonceKey [32]byte

func newNonceKey() nonceKey {
	var k nonceKey
	rand.Read(k[:])
	return k
}

// nonce makes a nonce for the device with serial.
func (e *Edge) nonce(serial string) string {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(e.clock.Now().Unix()))
	m := hmac.New(sha256.New, e.nonceKey[:])
	m.Write(ts[:])
	m.Write([]byte(serial))
	return hex.EncodeToString(ts[:]) + hex.EncodeToString(m.Sum(nil)[:16])
}

// nonceState says whether a nonce is ours for serial and still fresh.
func (e *Edge) nonceState(n, serial string) (valid, fresh bool) {
	raw, err := hex.DecodeString(n)
	if err != nil || len(raw) != 24 {
		return false, false
	}
	m := hmac.New(sha256.New, e.nonceKey[:])
	m.Write(raw[:8])
	m.Write([]byte(serial))
	if !hmac.Equal(m.Sum(nil)[:16], raw[8:]) {
		return false, false
	}
	at := time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	age := e.clock.Now().Sub(at)
	return true, age >= -time.Minute && age <= nonceLifetime
}

// challenge answers req with 401 or 407 and fresh challenges.
func (e *Edge) challenge(tx sip.ServerTransaction, req *sip.Request, id devca.Identity, proxy, stale bool) {
	code, reason, hdr := sip.StatusUnauthorized, "Unauthorized", "WWW-Authenticate"
	if proxy {
		code, reason, hdr = sip.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	n := e.nonce(id.Serial)
	c := digest.Challenge{Realm: e.cfg.Domain, Nonce: n, Algorithm: e.cfg.Digest, QOP: []string{"auth"}, Stale: stale}
	res.AppendHeader(sip.NewHeader(hdr, c.String()))
	if err := tx.Respond(res); err != nil {
		e.log.Debug("SIP challenge", "err", err)
	}
}

// digestOK checks the digest credentials of req for the device id. It
// answers the request itself (challenge, or 403) and returns false when
// they are missing or wrong.
func (e *Edge) digestOK(tx sip.ServerTransaction, req *sip.Request, id devca.Identity, proxy bool) bool {
	if e.cfg.Digest == "" {
		return true
	}
	hdr := "Authorization"
	if proxy {
		hdr = "Proxy-Authorization"
	}
	var creds *digest.Credentials
	for _, h := range req.GetHeaders(hdr) {
		c, err := digest.ParseCredentials(h.Value())
		if err == nil && strings.EqualFold(c.Realm, e.cfg.Domain) {
			creds = c
			break
		}
	}
	if creds == nil {
		e.challenge(tx, req, id, proxy, false)
		return false
	}
	src := addrOf(req.Source())
	refuse := func(why string) bool {
		e.fail(src, ActionDigestFailed, id.Username, id.AOR, why)
		e.respond(tx, req, sip.StatusForbidden, "Forbidden", e.warning("digest authentication failed"))
		return false
	}
	valid, fresh := e.nonceState(creds.Nonce, id.Serial)
	if !valid {
		return refuse("a nonce this edge did not make for this device")
	}
	if !fresh {
		e.challenge(tx, req, id, proxy, true)
		return false
	}
	if !strings.EqualFold(creds.Username, id.Username) {
		return refuse("digest user " + creds.Username + " is not the certificate's account")
	}
	stored, err := e.deps.CA.DeviceDigest(e.ctx, id.Serial)
	if err != nil {
		return refuse("no digest secret for the device")
	}
	alg := creds.Algorithm
	if alg == "" {
		alg = "MD5"
	}
	if !strings.EqualFold(alg, e.cfg.Digest) {
		return refuse("digest algorithm " + alg + " was not offered")
	}
	ha1 := devca.HA1(stored, alg)
	if ha1 == "" {
		return refuse("no " + alg + " digest secret for the device")
	}
	chal := &digest.Challenge{Realm: creds.Realm, Nonce: creds.Nonce, Algorithm: creds.Algorithm}
	if creds.QOP != "" {
		chal.QOP = []string{creds.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{Method: req.Method.String(), URI: creds.URI, Username: creds.Username,
		A1: ha1, Cnonce: creds.Cnonce, Count: creds.Nc})
	if err != nil || subtle.ConstantTimeCompare([]byte(strings.ToLower(want.Response)), []byte(strings.ToLower(creds.Response))) != 1 {
		return refuse("wrong digest response")
	}
	return true
}
