package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/store"
	"conclave/internal/testutil/testserver"
)

// TestDeviceEnrolWritesAnEncryptedKey runs `conclave device enrol` against
// a server with a token made for alice, then checks with OpenSSL that the
// key file is an encrypted PKCS#8 key that opens with the passphrase and
// only with it, and that `device export` gives the PEM a SIP client loads.
func TestDeviceEnrolWritesAnEncryptedKey(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (scripts/test installs it)")
	}
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) {
		c.SIPListen = "127.0.0.1:0"
		c.SIPDomain = "conclave.test"
		c.SIPRelayIP = "127.0.0.1"
	}})
	ctx := context.Background()
	u, err := srv.Store().CreateUser(ctx, store.User{Username: "alice", DisplayName: "Alice", Role: store.RoleUser, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := srv.DeviceCA().CreateToken(ctx, u, "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.TLS().CACert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("a long device passphrase\n"), 0o600)
	dev := filepath.Join(dir, "phone")
	var out, errb bytes.Buffer
	code := run([]string{"device", "enrol", "--server", srv.URL(), "--token", token, "--ca", ca, "--key", "ecdsa-p384",
		"--dir", dev, "--passphrase-file", pass}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("device enrol: %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "sip:alice@conclave.test") {
		t.Errorf("the output does not name the address of record:\n%s", out.String())
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dev, "device.key"))
	if !bytes.Contains(keyPEM, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("device.key is not an encrypted PKCS#8 key:\n%s", keyPEM)
	}
	if st, _ := os.Stat(filepath.Join(dev, "device.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("device.key has mode %v", st.Mode().Perm())
	}
	key := filepath.Join(dev, "device.key")
	if o, err := exec.Command("openssl", "pkey", "-in", key, "-passin", "file:"+pass, "-noout", "-text").CombinedOutput(); err != nil ||
		!strings.Contains(string(o), "P-384") {
		t.Fatalf("OpenSSL cannot open the key with the passphrase: %v\n%s", err, o)
	}
	if o, err := exec.Command("openssl", "pkey", "-in", key, "-passin", "pass:wrong passphrase", "-noout").CombinedOutput(); err == nil {
		t.Fatalf("OpenSSL opened the key with a wrong passphrase:\n%s", o)
	}
	// The same token a second time is refused.
	errb.Reset()
	if code := run([]string{"device", "enrol", "--server", srv.URL(), "--token", token, "--ca", ca,
		"--dir", filepath.Join(dir, "again"), "--passphrase-file", pass}, nil, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "token is unknown, already used or expired") {
		t.Fatalf("a used token: %d %s", code, errb.String())
	}
	exported := filepath.Join(dir, "baresip.pem")
	if code := run([]string{"device", "export", "--dir", dev, "--out", exported, "--passphrase-file", pass}, nil, &out, &errb); code != 0 {
		t.Fatalf("device export: %s", errb.String())
	}
	pemData, _ := os.ReadFile(exported)
	if !bytes.Contains(pemData, []byte("BEGIN CERTIFICATE")) || !bytes.Contains(pemData, []byte("BEGIN PRIVATE KEY")) {
		t.Fatalf("the exported file lacks the certificate or the key")
	}
}
