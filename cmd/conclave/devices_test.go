package main

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/devca"
	"conclave/internal/e2ee"
	"conclave/internal/ra"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/testserver"
)

// TestAdminDeviceCommands: the devices the E2EE log certified for a user
// are listed from the shell, one is revoked by its fingerprint (typed in
// lower case without spaces), and disabling the account revokes the rest;
// each revocation is in the log.
func TestAdminDeviceCommands(t *testing.T) {
	data := t.TempDir()
	if code, out := runAdmin(t, data, "Mia-Password-123\n", "add-user", "-username", "mia", "-password-stdin"); code != 0 {
		t.Fatal(out)
	}
	ctx := context.Background()
	st, err := store.Open(filepath.Join(data, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ra.Open(data, "Example Org", "Example Org", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	mia, _ := st.UserByName(ctx, "mia")
	var fps []string
	for range 2 {
		d, _ := e2ee.GenerateDeviceKey()
		pub, _ := e2ee.MarshalPublicKey(&d.PublicKey)
		if _, _, err := a.Certify(ctx, mia, pub); err != nil {
			t.Fatal(err)
		}
		fp, _ := e2ee.Fingerprint(&d.PublicKey)
		fps = append(fps, fp)
	}
	st.Close()

	code, out := runAdmin(t, data, "", "list-devices", "-username", "mia")
	if code != 0 || !strings.Contains(out, fps[0]) || !strings.Contains(out, fps[1]) || strings.Contains(out, "revoked") {
		t.Fatalf("list-devices: %d %s", code, out)
	}
	typed := strings.ToLower(strings.ReplaceAll(fps[0], " ", ""))
	if code, out := runAdmin(t, data, "", "revoke-device", "-username", "mia", "-device", typed, "-reason", "lost"); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke-device: %d %s", code, out)
	}
	if code, out := runAdmin(t, data, "", "revoke-device", "-username", "mia", "-device", "0000"); code != 1 || !strings.Contains(out, "no device") {
		t.Fatalf("revoke of an unknown device: %d %s", code, out)
	}
	if code, out := runAdmin(t, data, "", "disable-user", "-username", "mia"); code != 0 || !strings.Contains(out, "1 end-to-end encryption device(s) of mia revoked") {
		t.Fatalf("disable-user: %d %s", code, out)
	}
	code, out = runAdmin(t, data, "", "list-devices", "-username", "mia")
	if code != 0 || strings.Count(out, "revoked") != 2 {
		t.Fatalf("list-devices after: %d %s", code, out)
	}
}

// TestShellDisableRevokesPhones: `conclave admin disable-user`, run on the
// shell of a node that serves telephony, revokes the account's phone
// certificates as the admin page does (reason: privilege withdrawn, in
// the audit log), and the running server's device CA publishes the
// revocation within one account sweep.
func TestShellDisableRevokesPhones(t *testing.T) {
	clk := fakeclock.New(time.Now())
	srv := testserver.Start(t, testserver.Options{Server: server.Options{Clock: clk}, Config: func(c *config.Config) {
		c.SIPListen = "127.0.0.1:0"
		c.SIPDomain = "conclave.test"
		c.SIPRelayIP = "127.0.0.1"
	}})
	if code, out := runAdmin(t, srv.DataDir(), "Mia-Password-123\n", "add-user", "-username", "mia", "-password-stdin"); code != 0 {
		t.Fatal(out)
	}
	ctx := context.Background()
	mia, err := srv.Store().UserByName(ctx, "mia")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := srv.DeviceCA().CreateToken(ctx, mia, "root", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := devca.GenerateKey("ecdsa-p256")
	csr, _ := devca.MakeCSR(key, "phone")
	phone, err := srv.DeviceCA().Enrol(ctx, tok, csr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	listed := func() (int, bool) {
		der, err := srv.DeviceCA().CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(phone.Cert.SerialNumber) == 0 {
				return e.ReasonCode, true
			}
		}
		return 0, false
	}
	if _, ok := listed(); ok {
		t.Fatal("the phone is revoked before anything happened")
	}
	if code, out := runAdmin(t, srv.DataDir(), "", "disable-user", "-username", "mia"); code != 0 || !strings.Contains(out, "1 telephony device(s) of mia revoked") {
		t.Fatalf("disable-user: %d %s", code, out)
	}
	c, err := srv.Store().(store.DeviceStore).DeviceCertBySerial(ctx, devca.SerialString(phone.Cert.SerialNumber))
	if err != nil || c.RevokedAt.IsZero() || c.Reason != devca.ReasonPrivilegeWithdrawn {
		t.Fatalf("the phone after disable-user: %+v %v", c, err)
	}
	recs, err := srv.Store().ListAudit(ctx, store.AuditFilter{Action: devca.ActionRevoked})
	if err != nil || len(recs) != 1 || !strings.HasPrefix(recs[0].Actor, "cli:") || recs[0].Details["reason"] != "9" {
		t.Fatalf("the revocation in the audit log: %+v %v", recs, err)
	}
	clk.Advance(server.AccountSweep)
	if reason, ok := listed(); !ok || reason != devca.ReasonPrivilegeWithdrawn {
		t.Fatalf("the server's CRL one sweep after disable-user: listed %v, reason %d", ok, reason)
	}
}
