package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/audit"
	"conclave/internal/config"
	"conclave/internal/devca"
	"conclave/internal/e2ee"
	"conclave/internal/meeting"
	"conclave/internal/perm"
	"conclave/internal/pki"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
	"conclave/internal/web"
)

// auditProbe finds the records written since the last mark.
type auditProbe struct {
	t   *testing.T
	srv *testserver.Server
	seq int64
}

func (p *auditProbe) mark() {
	recs, err := p.srv.Store().ListAudit(context.Background(), store.AuditFilter{Newest: true, Limit: 1})
	if err != nil {
		p.t.Fatal(err)
	}
	p.seq = 0
	if len(recs) > 0 {
		p.seq = recs[0].Seq
	}
}

// since returns the records after the mark.
func (p *auditProbe) since() []store.AuditRecord {
	recs, err := p.srv.Store().ListAudit(context.Background(), store.AuditFilter{AfterSeq: p.seq})
	if err != nil {
		p.t.Fatal(err)
	}
	return recs
}

// expect checks that what f did left a record of action (any action by
// actor when action is empty).
func (p *auditProbe) expect(what, action, actor string, f func()) {
	p.t.Helper()
	p.mark()
	f()
	var got []string
	for _, r := range p.since() {
		got = append(got, r.Action+" by "+r.Actor)
		if (action == "" || r.Action == action) && (actor == "" || r.Actor == actor) && r.Time.IsZero() == false {
			return
		}
	}
	p.t.Errorf("%s: no audit record %q by %q; new records: %v", what, action, actor, got)
}

// signCSR signs a PEM request with ca, as the organisation's CA would.
func signCSR(t *testing.T, csrPEM string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, notAfter time.Time) []byte {
	t.Helper()
	req, err := pki.ParseCSR([]byte(csrPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := req.CheckSignature(); err != nil {
		t.Fatalf("the request's signature does not verify: %v", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: req.Subject, DNSNames: req.DNSNames,
		IPAddresses: req.IPAddresses, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, req.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// newTestCA makes an organisation CA.
func newTestCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestAuditCompleteness performs every changing action of the management
// API (every non-GET management route of the route table, and the
// audited reads: export, download), of one's own account, and every host
// control, and finds an audit record for each. A route added to the table
// without a case here fails the test.
func TestAuditCompleteness(t *testing.T) {
	clk := fakeclock.New(time.Now().UTC().Truncate(time.Second))
	srv := openAccessServerConfig(t, clk, server.Options{}, func(c *config.Config) { c.SIPListen, c.SIPRelayIP = "127.0.0.1:0", "127.0.0.1" })
	probe := &auditProbe{t: t, srv: srv}
	addAccount(t, srv, "root", perm.Administrator)
	addAccount(t, srv, "bob", perm.Operator)
	admin := newAPIClient(t, srv)
	probe.expect("login", audit.ActionLogin, "root", func() { admin.login("root", testPassword) })
	probe.expect("failed login", audit.ActionLoginFailed, "", func() {
		c := newAPIClient(t, srv)
		c.do("POST", "/api/login", map[string]string{"username": "root", "password": "Wrong-Password-1"}, false)
	})

	covered := map[string]bool{}
	// call does one API request, expecting status, and records the route.
	call := func(method, pattern string, params map[string]string, body any, status int, action string) map[string]any {
		t.Helper()
		path := pattern
		for k, v := range params {
			path = strings.ReplaceAll(path, "{"+k+"}", v)
		}
		covered[method+" "+pattern] = true
		var out map[string]any
		probe.expect(method+" "+pattern, action, "root", func() {
			st, body, _ := admin.do(method, path, body, true)
			if st != status {
				t.Errorf("%s %s: %d %v, want %d", method, path, st, body, status)
			}
			out = body
		})
		return out
	}
	none := map[string]string(nil)

	// Rooms.
	call("POST", "/api/rooms", none, map[string]any{"alias": "board", "name": "Board", "access": "pin", "hostPin": "112358"}, http.StatusCreated, "room-created")
	call("PATCH", "/api/rooms/{alias}", map[string]string{"alias": "board"}, map[string]any{"name": "The board"}, http.StatusOK, "room-updated")
	call("PUT", "/api/rooms/{alias}/members/{username}", map[string]string{"alias": "board", "username": "bob"}, map[string]any{"role": "host"}, http.StatusNoContent, "room-member-set")
	call("DELETE", "/api/rooms/{alias}/members/{username}", map[string]string{"alias": "board", "username": "bob"}, nil, http.StatusNoContent, "room-member-removed")
	call("DELETE", "/api/rooms/{alias}", map[string]string{"alias": "board"}, nil, http.StatusNoContent, "room-deleted")

	// Accounts, sessions, enrolments, roles.
	call("POST", "/api/users", none, map[string]any{"username": "carol", "password": "Another-Horse-43", "roles": []string{"auditor"}}, http.StatusCreated, "account-created")
	call("POST", "/api/users/{username}/disable", map[string]string{"username": "carol"}, nil, http.StatusOK, "account-disabled")
	call("POST", "/api/users/{username}/enable", map[string]string{"username": "carol"}, nil, http.StatusOK, "account-enabled")
	carol, _ := srv.Store().UserByName(context.Background(), "carol")
	carolDevice, _ := e2ee.GenerateDeviceKey()
	carolPub, _ := e2ee.MarshalPublicKey(&carolDevice.PublicKey)
	if _, _, err := srv.Authority().Certify(context.Background(), carol, carolPub); err != nil {
		t.Fatal(err)
	}
	carolFP, _ := e2ee.Fingerprint(&carolDevice.PublicKey)
	call("POST", "/api/users/{username}/devices/revoke", map[string]string{"username": "carol"}, map[string]any{"fingerprint": carolFP, "reason": "lost"}, http.StatusOK, "device-revoked")
	call("POST", "/api/users/{username}/unlock", map[string]string{"username": "carol"}, nil, http.StatusOK, audit.ActionAccountUnlocked)
	call("POST", "/api/users/{username}/password", map[string]string{"username": "carol"}, map[string]any{"password": "Reset-Horse-44x"}, http.StatusOK, audit.ActionPasswordReset)
	call("PUT", "/api/users/{username}/roles", map[string]string{"username": "carol"}, map[string]any{"roles": []string{"auditor", "operator"}}, http.StatusOK, audit.ActionRoleChanged)
	bobC := newAPIClient(t, srv)
	bobC.login("bob", testPassword)
	call("DELETE", "/api/users/{username}/sessions", map[string]string{"username": "bob"}, nil, http.StatusOK, audit.ActionSessionsEnded)
	bobC.login("bob", testPassword)
	_, sess, _ := admin.do("GET", "/api/sessions", nil, false)
	var bobSession string
	for _, s := range sess["sessions"].([]any) {
		m := s.(map[string]any)
		if m["username"] == "bob" {
			bobSession, _ = m["id"].(string)
		}
	}
	call("DELETE", "/api/sessions/{id}", map[string]string{"id": bobSession}, nil, http.StatusNoContent, "session-ended")
	call("POST", "/api/enrolments", none, map[string]any{"admin": false}, http.StatusCreated, "enrolment-created")
	call("POST", "/api/roles", none, map[string]any{"name": "watcher", "description": "watches", "permissions": []string{"system.view"}}, http.StatusCreated, "role-created")
	call("PUT", "/api/roles/{name}", map[string]string{"name": "watcher"}, map[string]any{"description": "watches more", "permissions": []string{"system.view", "audit.view"}}, http.StatusOK, "role-changed")
	call("DELETE", "/api/roles/{name}", map[string]string{"name": "watcher"}, nil, http.StatusNoContent, "role-deleted")
	call("DELETE", "/api/users/{username}", map[string]string{"username": "carol"}, nil, http.StatusNoContent, "account-deleted")

	// Telephony devices.
	call("POST", "/api/sip/tokens", none, map[string]any{"username": "bob"}, http.StatusOK, devca.ActionTokenCreated)
	phone := enrolPhone(t, srv, "bob")
	call("POST", "/api/sip/devices/{serial}/revoke", map[string]string{"serial": devca.SerialString(phone.SerialNumber)},
		map[string]any{"reason": devca.ReasonKeyCompromise}, http.StatusOK, devca.ActionRevoked)

	// Sign-in settings.
	call("PUT", "/api/settings/ldap", none, map[string]any{"enabled": false}, http.StatusOK, audit.ActionConfigChanged)
	call("POST", "/api/settings/ldap/test", none, map[string]any{}, http.StatusOK, "ldap-tested")
	call("PUT", "/api/settings/oidc", none, map[string]any{"enabled": false}, http.StatusOK, audit.ActionConfigChanged)
	call("PUT", "/api/settings/certificate-login", none, map[string]any{"enabled": false}, http.StatusOK, audit.ActionConfigChanged)

	// Operations.
	call("PATCH", "/api/system/settings", none, map[string]any{"audit": map[string]any{"maxTotalMB": 4096}}, http.StatusOK, audit.ActionConfigChanged)
	b := call("POST", "/api/backups", none, map[string]any{"passphrase": "a backup passphrase"}, http.StatusCreated, audit.ActionBackupCreated)
	name, _ := b["name"].(string)
	covered["GET /api/backups/{name}"] = true
	var backupFile []byte
	probe.expect("download a backup", "backup-downloaded", "root", func() {
		resp, err := admin.hc.Get(srv.URL() + "/api/backups/" + name)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("download: %v %v", resp, err)
		}
		backupFile, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	})
	covered["POST "+"/api/backups/restore"] = true
	probe.expect("stage a restore", audit.ActionBackupRestored, "root", func() {
		req, _ := http.NewRequest("POST", srv.URL()+"/api/backups/restore", bytes.NewReader(backupFile))
		req.Header.Set("X-CSRF-Token", admin.csrf)
		req.Header.Set("X-Backup-Passphrase", "a backup passphrase")
		resp, err := admin.hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("restore: %v %v", resp, err)
		}
		resp.Body.Close()
	})
	ca, caKey, caPEM := newTestCA(t, "Example Org CA")
	call("POST", "/api/certificates/trusted", none, map[string]any{"name": "org", "pem": caPEM}, http.StatusOK, audit.ActionCAImported)
	csr := call("POST", "/api/certificates/csr", none, map[string]any{"keyType": "ecdsa-p384", "names": []string{"127.0.0.1", "localhost"}}, http.StatusOK, audit.ActionCSRCreated)
	chain := signCSR(t, csr["csr"].(string), ca, caKey, time.Now().Add(90*24*time.Hour))
	call("POST", "/api/certificates/import", none, map[string]any{"chain": string(chain)}, http.StatusOK, audit.ActionCertImported)
	probe.expect("audit export", audit.ActionAuditExported, "root", func() {
		resp, err := admin.hc.Get(srv.URL() + "/api/audit?format=csv")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("export: %v %v", resp, err)
		}
		resp.Body.Close()
	})
	probe.expect("audit verify", audit.ActionAuditVerified, "root", func() {
		if st, body, _ := admin.do("GET", "/api/audit/verify", nil, false); st != http.StatusOK || body["ok"] != true {
			t.Fatalf("verify: %d %v", st, body)
		}
	})

	// One's own account.
	probe.expect("password change", audit.ActionPasswordChanged, "bob", func() {
		clk.Jump(11 * 24 * time.Hour) // past the minimum age (Jump: periodic timers tick once)
		bobC.login("bob", testPassword)
		if st, body, _ := bobC.do("POST", "/api/password", map[string]string{"oldPassword": testPassword, "newPassword": "Bob-New-Horse-45"}, true); st != http.StatusNoContent {
			t.Fatalf("password: %d %v", st, body)
		}
	})
	probe.expect("logout", audit.ActionLogout, "bob", func() {
		bobC.login("bob", "Bob-New-Horse-45")
		if st, body, _ := bobC.do("POST", "/api/logout", nil, true); st != http.StatusNoContent {
			t.Fatalf("logout: %d %v", st, body)
		}
	})
	probe.expect("logout everywhere", audit.ActionSessionsEnded, "bob", func() {
		bobC.login("bob", "Bob-New-Horse-45")
		if st, body, _ := bobC.do("POST", "/api/logout-everywhere", nil, true); st != http.StatusNoContent {
			t.Fatalf("logout everywhere: %d %v", st, body)
		}
	})
	probe.expect("enrolment redeemed", audit.ActionAccountEnrolled, "dave", func() {
		admin.login("root", testPassword) // the idle timeout ended the session meanwhile
		_, body, _ := admin.do("POST", "/api/enrolments", map[string]any{"admin": false}, true)
		link, _ := body["link"].(string)
		token := link[strings.Index(link, "#")+1:]
		c := newAPIClient(t, srv)
		if st, body, _ := c.do("POST", "/api/enrol", map[string]string{"token": token, "username": "dave", "password": "Dave-Horse-46x"}, false); st != http.StatusCreated {
			t.Fatalf("enrol: %d %v", st, body)
		}
	})

	// Every changing management route has a case above. The cluster's
	// routes (/api/nodes) need a cluster: TestNodesAPI checks their
	// audit records.
	for _, rt := range (&web.Server{}).Routes() {
		if rt.Manage == nil || rt.Method == "GET" || strings.HasPrefix(rt.Path, "/api/nodes") {
			continue
		}
		if !covered[rt.Method+" "+rt.Path] {
			t.Errorf("%s %s changes something but TestAuditCompleteness does not check its audit record", rt.Method, rt.Path)
		}
	}

	// Host controls, each with its record.
	hostControls(t, srv, probe)
}

// hostControls performs every host control in a PIN meeting.
func hostControls(t *testing.T, srv *testserver.Server, probe *auditProbe) {
	host, m := joinAs(t, srv, "127.0.0.40", "Hana", hostPIN)
	if m.Type != signal.TypeWelcome {
		t.Fatalf("host: %+v", m)
	}
	guest, gm := joinAs(t, srv, "127.0.0.41", "Gina", guestPIN)
	if gm.Type != signal.TypeWelcome {
		t.Fatalf("guest: %+v", gm)
	}
	guestID := gm.Self.ID
	skip := []string{signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeParticipantLeft, signal.TypeRoomState,
		signal.TypeNotice, signal.TypeKnock, signal.TypeKnockEnded, signal.TypeAnnounce}
	do := func(what, action, msg string) {
		t.Helper()
		probe.expect(what, action, "Hana", func() {
			host.sendRaw(msg)
			host.expectQuiet(skip...)
		})
	}
	do("mute", audit.ActionParticipantMuted, `{"v":1,"type":"mute","target":"`+guestID+`"}`)
	do("mute guests", audit.ActionGuestsMuted, `{"v":1,"type":"mute-guests"}`)
	do("guest rules", audit.ActionMeetingSettings, `{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":false,"guestsMayPresent":false,"locked":false,"hostPresent":true}}`)
	do("promote", audit.ActionRoleChanged, `{"v":1,"type":"set-role","target":"`+guestID+`","role":"host"}`)
	do("demote", audit.ActionRoleChanged, `{"v":1,"type":"set-role","target":"`+guestID+`","role":"guest"}`)
	do("lock", audit.ActionRoomLocked, `{"v":1,"type":"lock","locked":true}`)
	knock := func(source, name string) string {
		t.Helper()
		if _, km := joinAs(t, srv, source, name, guestPIN); km.Type != signal.TypeWaiting {
			t.Fatalf("knocker: %+v", km)
		}
		m := host.next(signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeRoomState)
		if m.Type != signal.TypeKnock || m.Participant == nil {
			t.Fatalf("host after a knock: %+v", m)
		}
		return m.Participant.ID
	}
	do("admit", audit.ActionLobbyAdmitted, `{"v":1,"type":"admit","target":"`+knock("127.0.0.42", "Kim")+`"}`)
	do("deny", audit.ActionLobbyDenied, `{"v":1,"type":"deny","target":"`+knock("127.0.0.43", "Lee")+`"}`)
	do("unlock", audit.ActionRoomUnlocked, `{"v":1,"type":"lock","locked":false}`)
	do("remove", audit.ActionParticipantRemoved, `{"v":1,"type":"remove","target":"`+guestID+`"}`)
	probe.expect("end", audit.ActionMeetingEnded, "Hana", func() {
		host.sendRaw(`{"v":1,"type":"end"}`)
		if m := host.next(skip...); m.Type != signal.TypeBye {
			t.Fatalf("after end: %+v", m)
		}
	})
	_ = guest
}

// The meetings name host actions as the audit log does.
func TestHostActionNames(t *testing.T) {
	for _, p := range [][2]string{
		{meeting.ActionParticipantMuted, audit.ActionParticipantMuted}, {meeting.ActionGuestsMuted, audit.ActionGuestsMuted},
		{meeting.ActionMeetingSettings, audit.ActionMeetingSettings}, {meeting.ActionRoleChanged, audit.ActionRoleChanged},
		{meeting.ActionRoomLocked, audit.ActionRoomLocked}, {meeting.ActionRoomUnlocked, audit.ActionRoomUnlocked},
		{meeting.ActionLobbyAdmitted, audit.ActionLobbyAdmitted}, {meeting.ActionLobbyDenied, audit.ActionLobbyDenied},
		{meeting.ActionParticipantRemoved, audit.ActionParticipantRemoved}, {meeting.ActionMeetingEnded, audit.ActionMeetingEnded},
	} {
		if p[0] != p[1] {
			t.Errorf("meeting says %q, the audit log %q", p[0], p[1])
		}
	}
}
