package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/audit"
	"conclave/internal/store"
	"conclave/internal/testutil/pgtest"

	_ "modernc.org/sqlite"
)

// conclave runs the command line in-process.
func conclave(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func auditActions(t *testing.T, data string) []string {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(data, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return auditActionsOf(t, st)
}

func auditActionsOf(t *testing.T, st store.Store) []string {
	t.Helper()
	recs, err := st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Action+"/"+r.Outcome+"/"+r.Actor)
	}
	return out
}

// Every changing command of the command line is audited, with the Unix
// user as actor; `conclave audit verify` passes on the intact log and
// names the record that was edited directly in SQLite.
func TestCLIAuditedAndVerified(t *testing.T) {
	data := t.TempDir()
	t.Setenv("CONCLAVE_DATA", data)
	for _, args := range [][]string{
		{"admin", "create-user", "-username", "alice", "-role", "admin", "-password-stdin"},
		{"admin", "enrol", "-role", "user"},
		{"admin", "create-room", "-alias", "board", "-access", "pin", "-host-pin", "246810"},
		{"admin", "delete-room", "-alias", "board"},
		{"admin", "delete-room", "-alias", "board"}, // fails: recorded as a failure
	} {
		conclave(t, "Correct-Horse-42\n", args...)
	}
	got := strings.Join(auditActions(t, data), " ")
	for _, want := range []string{"user-created/success/cli:", "enrolment-created/success/cli:", "room-created/success/cli:",
		"room-deleted/success/cli:", "room-deleted/failure/cli:"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit log %q lacks %q", got, want)
		}
	}
	code, out, errs := conclave(t, "", "audit", "verify")
	if code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify of the intact log: %d %q %q", code, out, errs)
	}

	// Someone with write access to the database changes a record.
	db, err := sql.Open("sqlite", filepath.Join(data, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_log SET target = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, errs = conclave(t, "", "audit", "verify")
	if code != 1 || !strings.Contains(errs, "altered at record 2") {
		t.Fatalf("verify after an edit: %d %q %q", code, out, errs)
	}

	// Export: CSV with a header and one row per record.
	code, out, _ = conclave(t, "", "audit", "export", "-format", "csv", "-action", "room-deleted")
	if code != 0 || !strings.HasPrefix(out, "seq,time,actor") || strings.Count(out, "\n") != 3 {
		t.Fatalf("export: %d %q", code, out)
	}
}

// A backup made by the command line restores onto a new data directory;
// a wrong passphrase says so and creates nothing.
func TestCLIBackupRestore(t *testing.T) {
	data := t.TempDir()
	t.Setenv("CONCLAVE_DATA", data)
	t.Setenv("CONCLAVE_BACKUP_PASSPHRASE", "correct horse battery staple")
	conclave(t, "", "admin", "create-room", "-alias", "board")
	out := filepath.Join(t.TempDir(), "b.cbk")
	if code, o, e := conclave(t, "", "backup", "create", "-o", out); code != 0 {
		t.Fatalf("create: %d %q %q", code, o, e)
	}
	if code, o, e := conclave(t, "", "backup", "check", "-in", out); code != 0 || !strings.Contains(o, "conclave.db") || !strings.Contains(o, "audit/audit.key") {
		t.Fatalf("check: %d %q %q", code, o, e)
	}
	fresh := filepath.Join(t.TempDir(), "new")
	t.Setenv("CONCLAVE_BACKUP_PASSPHRASE", "wrong passphrase here")
	code, _, e := conclave(t, "", "backup", "restore", "-in", out, "-data", fresh)
	if code != 1 || !strings.Contains(e, "passphrase is wrong") {
		t.Fatalf("restore with a wrong passphrase: %d %q", code, e)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s: %v", fresh, err)
	}
	t.Setenv("CONCLAVE_BACKUP_PASSPHRASE", "correct horse battery staple")
	if code, o, e := conclave(t, "", "backup", "restore", "-in", out, "-data", fresh); code != 0 {
		t.Fatalf("restore: %d %q %q", code, o, e)
	}
	got := strings.Join(auditActions(t, fresh), " ")
	if !strings.Contains(got, "room-created") || !strings.Contains(got, audit.ActionBackupRestored) {
		t.Fatalf("restored audit log: %s", got)
	}
	t.Setenv("CONCLAVE_DATA", fresh)
	if code, o, e := conclave(t, "", "audit", "verify"); code != 0 {
		t.Fatalf("the restored chain does not verify: %q %q", o, e)
	}
}

// TestMain stops the PostgreSQL server the PostgreSQL tests start.
func TestMain(m *testing.M) { pgtest.Main(m) }

// On a node whose store is PostgreSQL, the operator's commands work on
// that database (-database): a backup holds it (pg_dump), and restores
// it into a new, empty database with a new data directory, where the
// audit chain verifies; a PostgreSQL backup does not restore onto SQLite.
func TestCLIBackupRestorePostgres(t *testing.T) {
	data := t.TempDir()
	t.Setenv("CONCLAVE_DATA", data)
	t.Setenv("CONCLAVE_DATABASE", pgtest.NewDatabase(t))
	t.Setenv("CONCLAVE_BACKUP_PASSPHRASE", "correct horse battery staple")
	if code, o, e := conclave(t, "", "admin", "create-room", "-alias", "board"); code != 0 {
		t.Fatalf("create-room: %d %q %q", code, o, e)
	}
	if code, o, e := conclave(t, "", "audit", "verify"); code != 0 || !strings.Contains(o, "intact") {
		t.Fatalf("audit verify on PostgreSQL: %d %q %q", code, o, e)
	}
	out := filepath.Join(t.TempDir(), "b.cbk")
	if code, o, e := conclave(t, "", "backup", "create", "-o", out); code != 0 {
		t.Fatalf("create: %d %q %q", code, o, e)
	}
	if code, o, e := conclave(t, "", "backup", "check", "-in", out); code != 0 || !strings.Contains(o, "conclave.pgdump") || strings.Contains(o, "conclave.db") {
		t.Fatalf("check: %d %q %q", code, o, e)
	}

	onSQLite := filepath.Join(t.TempDir(), "sqlite")
	t.Setenv("CONCLAVE_DATABASE", "")
	if code, _, e := conclave(t, "", "backup", "restore", "-in", out, "-data", onSQLite); code != 1 || !strings.Contains(e, "store is PostgreSQL") {
		t.Fatalf("restore of a PostgreSQL backup without -database: %d %q", code, e)
	}
	if ents, _ := os.ReadDir(onSQLite); len(ents) != 0 {
		t.Fatalf("the refused restore left %d entries in %s", len(ents), onSQLite)
	}

	fresh, db := filepath.Join(t.TempDir(), "new"), pgtest.NewDatabase(t)
	t.Setenv("CONCLAVE_DATABASE", db)
	if code, o, e := conclave(t, "", "backup", "restore", "-in", out, "-data", fresh); code != 0 || !strings.Contains(o, "loaded into the PostgreSQL database") {
		t.Fatalf("restore: %d %q %q", code, o, e)
	}
	if _, err := os.Stat(filepath.Join(fresh, "conclave.pgdump")); !os.IsNotExist(err) {
		t.Fatalf("the database dump was left in the data directory: %v", err)
	}
	t.Setenv("CONCLAVE_DATA", fresh)
	if code, o, e := conclave(t, "", "audit", "verify"); code != 0 {
		t.Fatalf("the restored chain does not verify: %q %q", o, e)
	}
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.RoomByAlias(context.Background(), "board"); err != nil {
		t.Fatalf("the restored database lacks the room: %v", err)
	}
	got := strings.Join(auditActionsOf(t, st), " ")
	if !strings.Contains(got, "room-created") || !strings.Contains(got, audit.ActionBackupRestored) {
		t.Fatalf("restored audit log: %s", got)
	}
}
