package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"conclave/internal/config"
	"conclave/internal/devca"
	"conclave/internal/perm"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testca"
	"conclave/internal/testutil/testserver"
)

// TestAccountLifecycle: through the management API an administrator
// creates, disables, enables, resets, unlocks, re-roles and deletes
// accounts and lists and ends their sessions; disabling ends the
// account's sessions at once; an administrator cannot disable itself nor
// remove the last administrator. Every answer is checked against
// docs/openapi.yaml.
func TestAccountLifecycle(t *testing.T) {
	srv := openServerWith(t, nil)
	checker := newSchemaChecker(t, srv.URL())
	addAccount(t, srv, "root", perm.Administrator)
	root := checker.client(t, srv.URL())
	root.login("root", testPassword)

	st, body, _ := root.do("POST", "/api/users", map[string]any{"username": "mia", "displayName": "Mia", "password": "Initial-Pw-123"}, true)
	if st != http.StatusCreated || body["mustChangePassword"] != true || body["kind"] != "user" {
		t.Fatalf("create: %d %v", st, body)
	}
	if st, body, _ := root.do("POST", "/api/users", map[string]any{"username": "mia", "password": "Initial-Pw-123"}, true); st != http.StatusConflict {
		t.Fatalf("a second mia: %d %v", st, body)
	}
	if st, body, _ := root.do("POST", "/api/users", map[string]any{"username": "weak", "password": "short"}, true); st != http.StatusBadRequest || errCode(body) != "password-policy" {
		t.Fatalf("a weak first password: %d %v", st, body)
	}
	if st, body, _ := root.do("POST", "/api/users", map[string]any{"username": "x", "password": "Initial-Pw-123", "roles": []string{"no-such"}}, true); st != http.StatusBadRequest {
		t.Fatalf("an unknown role: %d %v", st, body)
	}
	// Mia signs in twice and must change the first password.
	mia1 := checker.client(t, srv.URL())
	if body := mia1.login("mia", "Initial-Pw-123"); body["mustChangePassword"] != true {
		t.Fatalf("first sign-in: %v", body)
	}
	if st, body, _ := mia1.do("POST", "/api/password", map[string]string{"oldPassword": "Initial-Pw-123", "newPassword": "Mias-Own-Pw-456"}, true); st != http.StatusNoContent {
		t.Fatalf("change: %d %v", st, body)
	}
	mia2 := checker.client(t, srv.URL())
	mia2.login("mia", "Mias-Own-Pw-456")

	st, body, _ = root.do("GET", "/api/users/mia/sessions", nil, false)
	sessions, _ := body["sessions"].([]any)
	if st != http.StatusOK || len(sessions) != 2 {
		t.Fatalf("mia's sessions: %d %v", st, body)
	}
	id := sessions[0].(map[string]any)["id"].(string)
	if st, _, _ := root.do("DELETE", "/api/sessions/"+url.PathEscape(id), nil, true); st != http.StatusNoContent {
		t.Fatalf("end one session: %d", st)
	}
	if st, body, _ := root.do("GET", "/api/users/mia", nil, false); st != http.StatusOK || body["sessions"] != float64(1) {
		t.Fatalf("after ending one: %d %v", st, body)
	}

	// Disabling ends the remaining session at once and refuses sign-in.
	if st, body, _ := root.do("POST", "/api/users/mia/disable", nil, true); st != http.StatusOK || body["enabled"] != false || body["sessions"] != float64(0) {
		t.Fatalf("disable: %d %v", st, body)
	}
	for _, c := range []*apiClient{mia1, mia2} {
		if st, _, _ := c.do("GET", "/api/me", nil, false); st != http.StatusUnauthorized {
			t.Fatalf("a disabled account's session answers %d", st)
		}
	}
	if st, _, _ := loginStatus(t, srv, "mia", "Mias-Own-Pw-456"); st != http.StatusUnauthorized {
		t.Fatalf("a disabled account signs in: %d", st)
	}
	if !auditHas(t, srv, "account-disabled", "sessions-ended") {
		t.Error("the disabling is not in the audit log")
	}
	if st, _, _ := root.do("POST", "/api/users/mia/enable", nil, true); st != http.StatusOK {
		t.Fatalf("enable: %d", st)
	}
	// Reset (forces a change), lock and unlock.
	if st, body, _ := root.do("POST", "/api/users/mia/password", map[string]string{"password": "Reset-By-Admin-789"}, true); st != http.StatusOK || body["mustChangePassword"] != true {
		t.Fatalf("reset: %d %v", st, body)
	}
	for range 5 {
		loginStatus(t, srv, "mia", "wrong-Password-0")
	}
	if st, body, _ := loginStatus(t, srv, "mia", "Reset-By-Admin-789"); st != http.StatusTooManyRequests {
		t.Fatalf("mia should be held back after 5 failures: %d %v", st, body)
	}
	if st, body, _ := root.do("POST", "/api/users/mia/unlock", nil, true); st != http.StatusOK || body["lockedUntil"] != nil {
		t.Fatalf("unlock: %d %v", st, body)
	}
	if st, body, _ := loginStatus(t, srv, "mia", "Reset-By-Admin-789"); st != http.StatusOK || body["mustChangePassword"] != true {
		t.Fatalf("after reset and unlock: %d %v", st, body)
	}

	// Roles: mia becomes an auditor, then a meeting user again.
	if st, body, _ := root.do("PUT", "/api/users/mia/roles", map[string]any{"roles": []string{perm.Auditor}}, true); st != http.StatusOK || body["kind"] != "admin" {
		t.Fatalf("roles: %d %v", st, body)
	}
	if st, body, _ := root.do("PUT", "/api/users/mia/roles", map[string]any{"roles": []string{}}, true); st != http.StatusOK || body["kind"] != "user" {
		t.Fatalf("no roles: %d %v", st, body)
	}

	// Guards.
	if st, body, _ := root.do("POST", "/api/users/root/disable", nil, true); st != http.StatusConflict || errCode(body) != "own-account" {
		t.Fatalf("disable oneself: %d %v", st, body)
	}
	addAccount(t, srv, "sec", perm.SecurityAdmin)
	sec := checker.client(t, srv.URL())
	sec.login("sec", testPassword)
	if st, body, _ := sec.do("DELETE", "/api/users/root", nil, true); st != http.StatusConflict || errCode(body) != "last-administrator" {
		t.Fatalf("delete the last administrator: %d %v", st, body)
	}
	if st, body, _ := sec.do("POST", "/api/enrolments", map[string]any{"admin": true}, true); st != http.StatusCreated || !strings.Contains(body["link"].(string), "/enrol#") {
		t.Fatalf("an administrator's enrolment link: %d %v", st, body)
	}

	// Delete.
	if st, _, _ := root.do("DELETE", "/api/users/mia", nil, true); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	if st, body, _ := root.do("GET", "/api/users/mia", nil, false); st != http.StatusNotFound || errCode(body) != "user-not-found" {
		t.Fatalf("deleted: %d %v", st, body)
	}
	st, body, _ = root.do("GET", "/api/users", nil, false)
	var names []string
	for _, u := range body["users"].([]any) {
		names = append(names, u.(map[string]any)["username"].(string))
	}
	if !slices.Equal(names, []string{"root", "sec"}) {
		t.Fatalf("accounts left: %v", names)
	}
	checker.check()
}

// TestAdminListener: with --admin-listen, /admin and the management API
// answer on the meeting listener exactly as unknown paths do, and work on
// the management listener, whose sessions are its own.
func TestAdminListener(t *testing.T) {
	srv := openServerWith(t, func(c *config.Config) { c.Auth.AdminListen = "127.0.0.1:0" })
	addAccount(t, srv, "root", perm.Administrator)
	if srv.AdminAddr() == nil || srv.AdminURL() == srv.URL() {
		t.Fatalf("no management listener: %v %s", srv.AdminAddr(), srv.AdminURL())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fetch := func(method, u string) (int, string) {
		req, _ := http.NewRequest(method, u, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type") + "\n" + string(b)
	}
	meet := srv.URL()
	same := func(method, path, unknown string) {
		st1, b1 := fetch(method, meet+path)
		st2, b2 := fetch(method, meet+unknown)
		if st1 != http.StatusNotFound || st1 != st2 || b1 != b2 {
			t.Errorf("%s %s on the meeting listener: %d %q; an unknown path: %d %q", method, path, st1, b1, st2, b2)
		}
	}
	same("GET", "/admin", "/no-such-page")
	same("GET", "/api/users", "/api/no-such-endpoint")
	same("POST", "/api/users", "/api/no-such-endpoint")
	same("GET", "/api/rooms", "/api/no-such-endpoint")
	same("GET", "/api/openapi.json", "/api/no-such-endpoint")
	same("PUT", "/api/settings/ldap", "/api/no-such-endpoint")
	if st, _ := fetch("GET", meet+"/"); st != http.StatusOK {
		t.Errorf("the meeting listener's home page: %d", st)
	}

	admin := srv.AdminURL()
	if st, _ := fetch("GET", admin+"/admin"); st != http.StatusOK {
		t.Errorf("/admin on the management listener: %d", st)
	}
	if st, _ := fetch("GET", admin+"/r/board"); st != http.StatusNotFound {
		t.Errorf("a meeting page on the management listener: %d", st)
	}
	jar, _ := cookiejar.New(nil)
	c := &apiClient{t: t, base: admin, hc: &http.Client{Jar: jar, Transport: hc.Transport}}
	c.login("root", testPassword)
	if st, _, _ := c.do("GET", "/api/users", nil, false); st != http.StatusOK {
		t.Fatalf("the management API on its listener: %d", st)
	}
	// A session opened on the meeting listener, its token presented to
	// the management listener under the management cookie's name, is not
	// accepted there.
	st, _, hdr := newAPIClient(t, srv).do("POST", "/api/login", map[string]string{"username": "root", "password": testPassword}, false)
	if st != http.StatusOK {
		t.Fatalf("sign-in on the meeting listener: %d", st)
	}
	var token string
	for _, ck := range (&http.Response{Header: hdr}).Cookies() {
		token = ck.Value
	}
	req, _ := http.NewRequest("GET", admin+"/api/me", nil)
	req.AddCookie(&http.Cookie{Name: "__Host-conclave_admin_session", Value: token})
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a meeting-listener session on the management listener: %d", resp.StatusCode)
	}
}

// TestDisableRevokesDevices: disabling an account through the API
// revokes its telephony device certificates, which then appear in the
// device CA's revocation list.
func TestDisableRevokesDevices(t *testing.T) {
	srv := openServerWith(t, func(c *config.Config) { c.SIPListen = "127.0.0.1:0" })
	addAccount(t, srv, "root", perm.Administrator)
	addAccount(t, srv, "mia")
	ctx := context.Background()
	mia, err := srv.Store().UserByName(ctx, "mia")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := srv.DeviceCA().CreateToken(ctx, mia, "root", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := devca.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := devca.MakeCSR(key, "phone")
	if err != nil {
		t.Fatal(err)
	}
	issued, err := srv.DeviceCA().Enrol(ctx, tok, csr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, _, root := loginStatus(t, srv, "root", testPassword)
	if st, body, _ := root.do("POST", "/api/users/mia/disable", nil, true); st != http.StatusOK {
		t.Fatalf("disable: %d %v", st, body)
	}
	certs, err := srv.Store().(store.DeviceStore).ListDeviceCerts(ctx, mia.ID)
	if err != nil || len(certs) != 1 {
		t.Fatalf("mia's devices: %v %v", certs, err)
	}
	if certs[0].RevokedAt.IsZero() || certs[0].Reason != 9 {
		t.Fatalf("mia's phone after the account was disabled: %+v (issued %v)", certs[0], issued)
	}
}

// enrolPhone enrols a telephony device for the account username and
// returns its certificate.
func enrolPhone(t *testing.T, srv *testserver.Server, username string) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	u, err := srv.Store().UserByName(ctx, username)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := srv.DeviceCA().CreateToken(ctx, u, "root", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := devca.GenerateKey("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := devca.MakeCSR(key, "phone")
	if err != nil {
		t.Fatal(err)
	}
	issued, err := srv.DeviceCA().Enrol(ctx, tok, csr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return issued.Cert
}

// deviceRevocation reads, over HTTPS as an outside relying party would,
// the device CA's CRL entry and OCSP answer for cert.
func deviceRevocation(t *testing.T, srv *testserver.Server, cert *x509.Certificate) (crlReason int, listed bool, ocspStatus int) {
	t.Helper()
	hc := newAPIClient(t, srv).hc
	resp, err := hc.Get(srv.URL() + devca.CRLPath)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("device CRL: %v", err)
	}
	if err := crl.CheckSignatureFrom(srv.DeviceCA().Certificate()); err != nil {
		t.Fatalf("device CRL signature: %v", err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			crlReason, listed = e.ReasonCode, true
		}
	}
	req, err := ocsp.CreateRequest(cert, srv.DeviceCA().Certificate(), &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Post(srv.URL()+devca.OCSPPath, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := ocsp.ParseResponseForCert(body, cert, srv.DeviceCA().Certificate())
	if err != nil {
		t.Fatalf("OCSP answer: %v", err)
	}
	return crlReason, listed, r.Status
}

// TestDeleteKeepsDeviceRevocations: deleting an account revokes its
// telephony devices, and the revocations outlive the account: the
// device CA's CRL still lists them and its OCSP responder still says
// "revoked" (not "unknown"), for relying parties outside Conclave.
func TestDeleteKeepsDeviceRevocations(t *testing.T) {
	srv := openServerWith(t, func(c *config.Config) { c.SIPListen = "127.0.0.1:0" })
	addAccount(t, srv, "root", perm.Administrator)
	addAccount(t, srv, "mia")
	phone := enrolPhone(t, srv, "mia")
	if _, listed, status := deviceRevocation(t, srv, phone); listed || status != ocsp.Good {
		t.Fatalf("before: listed %v, OCSP %d", listed, status)
	}
	_, _, root := loginStatus(t, srv, "root", testPassword)
	if st, body, _ := root.do("DELETE", "/api/users/mia", nil, true); st != http.StatusNoContent {
		t.Fatalf("delete: %d %v", st, body)
	}
	reason, listed, status := deviceRevocation(t, srv, phone)
	if !listed || reason != 9 || status != ocsp.Revoked {
		t.Fatalf("after the account was deleted: CRL lists the phone %v (reason %d), OCSP status %d; want listed with reason 9 (privilege withdrawn) and revoked (%d)",
			listed, reason, status, ocsp.Revoked)
	}
}

// TestDeviceDigestSealed: the HA1 values of a phone's SIP digest secret
// (enough to answer digest challenges: a password equivalent) are sealed
// in the database like the other secrets it keeps, and still read back
// for the SIP edge.
func TestDeviceDigestSealed(t *testing.T) {
	srv := openServerWith(t, func(c *config.Config) { c.SIPListen, c.SIPRelayIP = "127.0.0.1:0", "127.0.0.1" })
	addAccount(t, srv, "mia")
	phone := enrolPhone(t, srv, "mia")
	serial := devca.SerialString(phone.SerialNumber)
	row, err := srv.Store().(store.DeviceStore).DeviceCertBySerial(context.Background(), serial)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(row.DigestHA1, "MD5:") || strings.Contains(row.DigestHA1, "SHA-256:") {
		t.Fatalf("the database holds the device's digest HA1 in the clear: %q", row.DigestHA1)
	}
	ha1, err := srv.DeviceCA().DeviceDigest(context.Background(), serial)
	if err != nil || devca.HA1(ha1, "SHA-256") == "" || devca.HA1(ha1, "MD5") == "" {
		t.Fatalf("the SIP edge reads %q, %v", ha1, err)
	}
}

// TestAdminListenerMutualTLS: with --admin-client-ca, the management
// listener completes no TLS handshake without a client certificate of
// that CA, and serves those that present one; the meeting listener asks
// for none.
func TestAdminListenerMutualTLS(t *testing.T) {
	ca := testca.New(t, "Admin network CA")
	caFile := testca.WriteFile(t, t.TempDir(), "ca.pem", ca.PEM())
	srv := openServerWith(t, func(c *config.Config) {
		c.Auth.AdminListen = "127.0.0.1:0"
		c.Auth.AdminClientCA = caFile
	})
	get := func(base string, leaf *testca.Leaf) error {
		tc := &tls.Config{InsecureSkipVerify: true}
		if leaf != nil {
			tc.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := hc.Get(base + "/api/login/methods")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(srv.AdminURL(), nil); err == nil {
		t.Fatal("the management listener served a client without a certificate")
	}
	other := testca.New(t, "Other CA").Issue(t, testca.Options{CN: "x"})
	if err := get(srv.AdminURL(), &other); err == nil {
		t.Fatal("the management listener served a certificate of another CA")
	}
	good := ca.Issue(t, testca.Options{CN: "admin-workstation"})
	if err := get(srv.AdminURL(), &good); err != nil {
		t.Fatalf("a certificate of the CA: %v", err)
	}
	if err := get(srv.URL(), nil); err != nil {
		t.Fatalf("the meeting listener: %v", err)
	}
}

// TestDisableEndsMeetingAtOnce: an account disabled through the API is put
// out of its meeting at once with `bye account-disabled`, and cannot
// enter the accounts-only room again. The node runs on a fake clock that
// does not move, so the periodic sweep (for changes made from the shell)
// cannot be what ends the meeting.
func TestDisableEndsMeetingAtOnce(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk}})
	ctx := context.Background()
	if _, err := srv.Store().CreateRoom(ctx, store.Room{Alias: "staff", DisplayName: "Staff", Access: store.AccessAccounts}); err != nil {
		t.Fatal(err)
	}
	addAccount(t, srv, "root", perm.Administrator)
	addAccount(t, srv, "mia")
	_, _, mia := loginStatus(t, srv, "mia", testPassword)
	ws := dialWithCookies(t, srv, mia)
	ws.sendRaw(`{"v":1,"type":"join","id":"j","room":"staff","name":"mia"}`)
	if raw := ws.readRaw(); !isWelcome(raw) {
		t.Fatalf("mia enters the accounts room: %s", raw)
	}
	_, _, root := loginStatus(t, srv, "root", testPassword)
	if st, body, _ := root.do("POST", "/api/users/mia/disable", nil, true); st != http.StatusOK {
		t.Fatalf("disable: %d %v", st, body)
	}
	bye := ws.next()
	if bye.Type != "bye" || bye.Reason != "account-disabled" {
		t.Fatalf("mia's connection got %+v, want bye account-disabled", bye)
	}
	again := dialWithCookies(t, srv, mia)
	again.sendRaw(`{"v":1,"type":"join","id":"j","room":"staff","name":"mia"}`)
	if raw := again.readRaw(); isWelcome(raw) {
		t.Fatal("a disabled account entered the accounts room again")
	}
}
