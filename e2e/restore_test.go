package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/server"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/testlog"
	"conclave/internal/testutil/testserver"
)

// TestRestoreKeepsKeys: a browser joins a PIN room, pinning the
// organisation's E2EE key; the node is backed up and restored onto a new
// data directory; at the same address the browser joins with its old PIN
// and shows no key-change warning. A node started on a fresh data
// directory instead makes the same browser warn, which shows that the
// check can fail.
func TestRestoreKeepsKeys(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	listen := "127.0.0.1:" + strconv.Itoa(port)
	start := func(dataDir string) *testserver.Server {
		t.Helper()
		return testserver.Start(t, testserver.Options{Logger: testlog.Logger(t, 0), Config: func(c *config.Config) {
			c.DataDir, c.Listen = dataDir, listen
		}})
	}
	const pass = "a passphrase for the restore test"

	first := start(filepath.Join(t.TempDir(), "data"))
	createPINRoom(t, first.Store(), "vault")
	base := first.URL()
	b := browser.Start(t)
	hana := knock(t, b, base, "vault", "Hana", vaultHostPIN)
	hana.inMeeting(20 * time.Second)
	gina := knock(t, b, base, "vault", "Gina", vaultGuestPIN)
	gina.inMeeting(20 * time.Second)
	sameCode(t, hana, gina)
	if w := hana.text("#e2ee-warning"); w != "" {
		t.Fatalf("a warning in the first meeting: %q", w)
	}
	var buf bytes.Buffer
	info, err := first.Backups().Create(context.Background(), pass)
	if err != nil {
		t.Fatal(err)
	}
	path, _ := first.Backups().Path(info.Name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(data)
	first.Close()

	// A wrong passphrase changes nothing.
	restored := filepath.Join(t.TempDir(), "restored")
	if _, err := server.RestoreDataDir(bytes.NewReader(buf.Bytes()), "not the passphrase", config.Config{DataDir: restored}); err == nil {
		t.Fatal("restore with a wrong passphrase succeeded")
	}
	if _, err := os.Stat(restored); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s behind", restored)
	}
	h, err := server.RestoreDataDir(bytes.NewReader(buf.Bytes()), pass, config.Config{DataDir: restored})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored the backup of %s made %s", h.Node, h.Created)

	second := start(restored)
	if second.URL() != base {
		t.Fatalf("the restored node is at %s, not %s", second.URL(), base)
	}
	hana.Navigate(base + "/r/vault")
	hana.submitJoin(vaultHostPIN)
	hana.inMeeting(20 * time.Second)
	gina.Close()
	ivan := knock(t, b, base, "vault", "Ivan", vaultGuestPIN)
	ivan.inMeeting(20 * time.Second)
	sameCode(t, hana, ivan)
	if w := hana.text("#e2ee-warning"); w != "" {
		t.Fatalf("after the restore the browser warns: %q", w)
	}
	ivan.Close()
	second.Close()

	// Control: a node that lost its keys makes the browser warn.
	third := start(filepath.Join(t.TempDir(), "fresh"))
	createPINRoom(t, third.Store(), "vault")
	hana.Navigate(base + "/r/vault")
	hana.submitJoin(vaultHostPIN)
	hana.inMeeting(20 * time.Second)
	hana.WaitJS(t, "Hana: key-change warning on a node with new keys", `/encryption key changed/.test(document.querySelector('#e2ee-warning')?.textContent || '')`, 20*time.Second)
}
