package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/e2ee"
	"conclave/internal/ra"
	"conclave/internal/store"
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
