package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/audit"
	"conclave/internal/store"
)

func runAdmin(t *testing.T, data, stdin string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(append([]string{"admin"}, append(args, "-data", data)...), strings.NewReader(stdin), &out, &out)
	return code, out.String()
}

// TestAdminAccountCommands: the account lifecycle and custom roles from
// the shell, with the same rules as the API.
func TestAdminAccountCommands(t *testing.T) {
	data := t.TempDir()
	steps := []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"Root-Password-12\n", []string{"add-user", "-username", "root", "-roles", "administrator", "-password-stdin"}, 0, "Account root created"},
		{"Mia-Password-123\n", []string{"add-user", "-username", "mia", "-password-stdin"}, 0, "a meeting user"},
		{"weak\n", []string{"add-user", "-username", "weak", "-password-stdin"}, 1, "at least 12"},
		{"", []string{"create-role", "-name", "room-viewer", "-permissions", "rooms.view", "-description", "sees rooms"}, 0, "1 permission"},
		{"", []string{"create-role", "-name", "bad", "-permissions", "rooms.fly"}, 1, "unknown permission rooms.fly"},
		{"", []string{"create-role", "-name", "auditor", "-permissions", "rooms.view"}, 1, "built-in"},
		{"", []string{"set-roles", "-username", "mia", "-roles", "room-viewer"}, 0, "room-viewer"},
		{"", []string{"delete-role", "-name", "room-viewer"}, 1, "accounts hold this role"},
		{"", []string{"list-roles"}, 0, "custom    rooms.view"},
		{"", []string{"disable-user", "-username", "mia"}, 0, "Account mia disabled"},
		{"", []string{"disable-user", "-username", "root"}, 1, "last enabled account with the administrator role"},
		{"", []string{"enable-user", "-username", "mia"}, 0, "Account mia enabled"},
		{"New-Password-456\n", []string{"reset-password", "-username", "mia", "-password-stdin"}, 0, "must be changed"},
		{"", []string{"unlock-user", "-username", "mia"}, 0, "unlocked"},
		{"", []string{"end-sessions", "-username", "mia"}, 0, "0 session(s)"},
		{"", []string{"list-users"}, 0, "mia       mia           room-viewer    local   true"},
		{"", []string{"delete-user", "-username", "mia"}, 0, "Account mia deleted"},
		{"", []string{"delete-user", "-username", "mia"}, 1, `no account is named "mia"`},
		{"", []string{"delete-role", "-name", "room-viewer"}, 0, "deleted"},
	}
	// A sealed record first, as a node that has run has.
	if code, out := runAdmin(t, data, "", "create-room", "-alias", "board"); code != 0 {
		t.Fatal(out)
	}
	for _, s := range steps {
		code, out := runAdmin(t, data, s.stdin, s.args...)
		if code != s.code || !strings.Contains(out, s.want) {
			t.Errorf("conclave admin %s: exit %d, %q; want exit %d and %q", strings.Join(s.args, " "), code, out, s.code, s.want)
		}
	}
	st, err := store.OpenSQLite(filepath.Join(data, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ListAudit(context.Background(), store.AuditFilter{Action: "account-disabled"})
	if err != nil || len(recs) != 1 || !strings.HasPrefix(recs[0].Actor, "cli") {
		t.Fatalf("the disabling in the audit log: %v %v", recs, err)
	}
	// Every change made is in the audit log, by the person at the shell,
	// sealed with the audit key as the server's records are.
	all, err := st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range all {
		if r.Outcome != "success" {
			continue
		}
		count[r.Action]++
		if !strings.HasPrefix(r.Actor, "cli:") || r.Source != "local" || len(r.MAC) == 0 {
			t.Errorf("record %d (%s): actor %q, source %q, sealed %v; want cli:<user>, local, sealed", r.Seq, r.Action, r.Actor, r.Source, len(r.MAC) > 0)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"audit", "verify", "-data", data}, nil, &out, &errb); code != 0 {
		t.Errorf("conclave audit verify after the account commands: %d %s%s", code, out.String(), errb.String())
	}
	for action, n := range map[string]int{"account-created": 2, "role-created": 1, audit.ActionRoleChanged: 1, "account-disabled": 1,
		"account-enabled": 1, audit.ActionPasswordReset: 1, audit.ActionAccountUnlocked: 1, audit.ActionSessionsEnded: 1,
		"account-deleted": 1, "role-deleted": 1} {
		if count[action] != n {
			t.Errorf("%d %s records, want %d (all: %v)", count[action], action, n, count)
		}
	}
}
