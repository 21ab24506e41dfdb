package backup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/secrets"
	"conclave/internal/settings"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/sshd"
)

const pass = "correct horse battery staple"

// node makes a data directory with a database, sealed and clear keys, a
// file blob and a stray backup.
func node(t *testing.T, box *secrets.Box) (string, *store.SQLite) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateRoom(context.Background(), store.Room{Alias: "board"}); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"tls/ca.key":               "CA KEY",
		"e2ee/org-ca.key":          "ORG KEY",
		"e2ee/new-package/log.key": "A KEY NOBODY LISTED",
		"settings.json":            "{}",
		"files/blob1":              "meeting file",
		"backups/old.cbk":          "old",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		data := []byte(data)
		if strings.HasSuffix(name, ".key") {
			data = box.Seal(p, data)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, st
}

func snapshotOf(st *store.SQLite) func(context.Context, string) error { return st.Snapshot }

func TestRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	box, _ := secrets.New(key)
	dir, st := node(t, box)
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, pass, Source{DataDir: dir, Box: box, Snapshot: snapshotOf(st), Version: "v1", Node: "n1", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("ORG KEY")) || bytes.Contains(buf.Bytes(), []byte("board")) {
		t.Fatal("the backup holds clear text")
	}
	h, names, err := Inspect(bytes.NewReader(buf.Bytes()), pass)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	want := []string{"conclave.db", "e2ee/", "e2ee/new-package/", "e2ee/new-package/log.key", "e2ee/org-ca.key", "settings.json", "tls/", "tls/ca.key"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("backup holds %v, want %v", names, want)
	}
	if h.Node != "n1" || h.KDF != "argon2id" {
		t.Fatalf("header %+v", h)
	}

	// Restore onto a node with another master key: the keys are sealed
	// again under it.
	box2, _ := secrets.New(bytes.Repeat([]byte{9}, 32))
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(bytes.NewReader(buf.Bytes()), pass, target, box2); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(target, "e2ee/org-ca.key"))
	if !secrets.Sealed(raw) {
		t.Fatal("the restored key is not sealed")
	}
	if got, err := box2.ReadFile(filepath.Join(target, "e2ee/org-ca.key")); err != nil || string(got) != "ORG KEY" {
		t.Fatalf("restored key = %q, %v", got, err)
	}
	st2, err := store.OpenSQLite(filepath.Join(target, DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := st2.RoomByAlias(context.Background(), "board"); err != nil {
		t.Fatalf("the restored database lacks the room: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "files")); err == nil {
		t.Fatal("file blobs were restored")
	}
}

// A wrong passphrase, a truncated file and a changed byte are refused
// with a clear error, and nothing is written.
func TestRestoreRefusesAndChangesNothing(t *testing.T) {
	dir, st := node(t, nil)
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, pass, Source{DataDir: dir, Snapshot: snapshotOf(st), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-100] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
		pass string
	}{
		{"wrong passphrase", good, "wrong passphrase!!"},
		{"truncated", good[:len(good)-40], pass},
		{"altered", flipped, pass},
		{"not a backup", []byte("hello"), pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			target := filepath.Join(parent, "data")
			_, err := Restore(bytes.NewReader(tc.data), tc.pass, target, nil)
			if err == nil {
				t.Fatal("restore succeeded")
			}
			if tc.name != "not a backup" && !errors.Is(err, ErrPassphrase) {
				t.Fatalf("error %v, want ErrPassphrase", err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Fatalf("restore left %v behind", ents)
			}
		})
	}
	// A non-empty target is refused before anything is read.
	if _, err := Restore(bytes.NewReader(good), pass, dir, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over a live directory: %v", err)
	}
}

// The daily schedule, driven by a fake clock, makes a backup at the set
// hour, keeps N, and uploads it to Debian's OpenSSH server, whose host
// key is pinned; a server with another key is refused and raises the
// backup alarm.
func TestScheduledBackupToSFTP(t *testing.T) {
	srv := sshd.Start(t)
	dir, st := node(t, nil)
	clk := fakeclock.New(time.Date(2030, 3, 1, 1, 30, 0, 0, time.UTC))
	alarms := alarm.New(clk)
	set := settings.Defaults().Backup
	set.Daily, set.Hour, set.Keep, set.Passphrase = true, 2, 2, pass
	set.SFTP = settings.SFTP{Address: srv.Addr, User: srv.User, HostKey: srv.HostKey, PrivateKey: string(srv.ClientKey), Dir: filepath.Join(srv.Dir, "conclave")}
	rec := &recorder{}
	m, err := NewManager(ManagerConfig{Source: Source{DataDir: dir, Snapshot: snapshotOf(st)}, Settings: func() settings.Backup { return set },
		Clock: clk, Alarms: alarms, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Schedule(ctx)
	defer m.Stop()
	if _, next := m.Last(); !next.Equal(time.Date(2030, 3, 1, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("next backup at %v, want 02:00", next)
	}
	clk.Advance(29 * time.Minute)
	if l, _ := m.List(); len(l) != 0 {
		t.Fatalf("a backup before the hour: %v", l)
	}
	for day := 0; day < 3; day++ {
		clk.Advance(24 * time.Hour)
	}
	// Days 1, 2, 3 at 02:00 each made one; 2 are kept, here and there.
	local, _ := m.List()
	remote, err := SFTPTarget{Address: srv.Addr, User: srv.User, HostKey: srv.HostKey, PrivateKey: srv.ClientKey, Dir: set.SFTP.Dir}.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(local) != 2 || len(remote) != 2 || local[0].Name != remote[1] || local[0].Name != FileName(time.Date(2030, 3, 3, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("local %v, remote %v: want the two newest (3 March last) in both", local, remote)
	}
	up, err := os.ReadFile(filepath.Join(set.SFTP.Dir, remote[1]))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Inspect(bytes.NewReader(up), pass); err != nil {
		t.Fatalf("the uploaded backup does not open: %v", err)
	}
	if n := rec.count(audit.ActionBackupUploaded); n != 3 {
		t.Fatalf("%d backup-uploaded audit entries, want 3", n)
	}

	// Another host key: refused, alarm raised, audited.
	_, otherPub := sshd.NewKeyPair(t)
	set.SFTP.HostKey = otherPub
	res := m.RunScheduled(ctx)
	if !strings.Contains(res.Error, "host key") {
		t.Fatalf("upload to a server with another host key: %+v", res)
	}
	if !alarms.IsActive(alarm.KindBackup, "scheduled") || rec.count(audit.ActionBackupFailed) != 1 {
		t.Fatalf("no alarm or audit entry for the refused host key: %v", alarms.Active())
	}
	if err := (SFTPTarget{Address: srv.Addr, User: srv.User, PrivateKey: srv.ClientKey}).Upload("x", nil, 0); err == nil {
		t.Fatal("an upload without a pinned host key was attempted")
	}
}

// A scheduled backup reaches Debian's OpenSSH server by password login
// (the key left out); a wrong password is refused, with the alarm and the
// audit record of a failed upload.
func TestScheduledBackupToSFTPWithPassword(t *testing.T) {
	const password = "Sftp-Test-Password-7"
	srv := sshd.StartPassword(t, password)
	dir, st := node(t, nil)
	clk := fakeclock.New(time.Date(2030, 3, 1, 1, 30, 0, 0, time.UTC))
	alarms := alarm.New(clk)
	set := settings.Defaults().Backup
	set.Daily, set.Hour, set.Keep, set.Passphrase = true, 2, 2, pass
	set.SFTP = settings.SFTP{Address: srv.Addr, User: srv.User, HostKey: srv.HostKey, Password: password, Dir: filepath.Join(srv.Dir, "by-password")}
	rec := &recorder{}
	m, err := NewManager(ManagerConfig{Source: Source{DataDir: dir, Snapshot: snapshotOf(st)}, Settings: func() settings.Backup { return set },
		Clock: clk, Alarms: alarms, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res := m.RunScheduled(ctx); res.Error != "" {
		t.Fatalf("scheduled backup with password login: %+v", res)
	}
	remote, err := SFTPTarget{Address: srv.Addr, User: srv.User, HostKey: srv.HostKey, Password: password, Dir: set.SFTP.Dir}.List()
	if err != nil || len(remote) != 1 {
		t.Fatalf("the SFTP directory after the upload: %v %v", remote, err)
	}
	up, err := os.ReadFile(filepath.Join(set.SFTP.Dir, remote[0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Inspect(bytes.NewReader(up), pass); err != nil {
		t.Fatalf("the uploaded backup does not open: %v", err)
	}
	if rec.count(audit.ActionBackupUploaded) != 1 || alarms.IsActive(alarm.KindBackup, "scheduled") {
		t.Fatalf("audit %+v, alarms %v", rec.events, alarms.Active())
	}

	set.SFTP.Password = "Not-The-Password-8"
	clk.Advance(time.Hour)
	res := m.RunScheduled(ctx)
	if !strings.Contains(res.Error, "unable to authenticate") {
		t.Fatalf("upload with a wrong password: %+v", res)
	}
	if !alarms.IsActive(alarm.KindBackup, "scheduled") || rec.count(audit.ActionBackupFailed) != 1 {
		t.Fatalf("no alarm or audit record for the refused password: %v", alarms.Active())
	}
	if remote, _ := (SFTPTarget{Address: srv.Addr, User: srv.User, HostKey: srv.HostKey, PrivateKey: srv.ClientKey, Dir: set.SFTP.Dir}).List(); len(remote) != 1 {
		t.Fatalf("the refused upload left files: %v", remote)
	}
}

// TestSFTPKeyboardInteractive: a server that asks for the password only
// through keyboard-interactive authentication (PAM, as many do) takes the
// configured password; a wrong one is refused and uploads nothing.
func TestSFTPKeyboardInteractive(t *testing.T) {
	const password = "Sftp-Kbd-Password-5"
	srv := sshd.StartKeyboardInteractive(t, password)
	target := SFTPTarget{Address: srv.Addr, User: srv.User, HostKey: srv.HostKey, Password: password, Dir: filepath.Join(srv.Dir, "pam")}
	first, second := FileName(time.Date(2030, 3, 1, 2, 0, 0, 0, time.UTC)), FileName(time.Date(2030, 3, 2, 2, 0, 0, 0, time.UTC))
	if err := target.Upload(first, strings.NewReader("backup"), 2); err != nil {
		t.Fatalf("upload through keyboard-interactive login: %v", err)
	}
	if remote, err := target.List(); err != nil || len(remote) != 1 || remote[0] != first {
		t.Fatalf("the SFTP directory after the upload: %v %v", remote, err)
	}
	wrong := target
	wrong.Password = "Not-The-Password-6"
	if err := wrong.Upload(second, strings.NewReader("backup"), 2); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("upload with a wrong password: %v", err)
	}
	if ents, err := os.ReadDir(target.Dir); err != nil || len(ents) != 1 {
		t.Fatalf("the refused upload left files: %v %v", ents, err)
	}
}

type recorder struct{ events []audit.Event }

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) count(action string) int {
	n := 0
	for _, e := range r.events {
		if e.Action == action {
			n++
		}
	}
	return n
}

// FuzzInspect feeds arbitrary files to the backup reader (an uploaded
// backup is untrusted): it must fail cleanly, never panic.
func FuzzInspect(f *testing.F) {
	var buf bytes.Buffer
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o600)
	if _, err := Create(context.Background(), &buf, pass, Source{DataDir: dir, Now: time.Unix(0, 0)}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(magic + `{"kdf":"argon2id","argon2Time":1,"argon2MemoryKiB":8192,"argon2Threads":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA==","noncePrefix":"AAAAAA=="}` + "\n\x00\x00\x00\x20"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Inspect(bytes.NewReader(data), pass)
	})
}
