package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`SELECT '?', "a?b" FROM t WHERE x = ?`, `SELECT '?', "a?b" FROM t WHERE x = $1`},
		{`SELECT 'it''s ?' WHERE x LIKE ? ESCAPE '\'`, `SELECT 'it''s ?' WHERE x LIKE $1 ESCAPE '\'`},
		{"SELECT ? -- what?\nFROM t WHERE y = ?", "SELECT $1 -- what?\nFROM t WHERE y = $2"},
		{`'unterminated ?`, `'unterminated ?`},
	} {
		if got := rebind(c.in); got != c.want {
			t.Errorf("rebind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestRolesSettingsAndIdentities covers the account and settings methods
// the other tests leave out, on both engines.
func TestRolesSettingsAndIdentities(t *testing.T) { forEachEngine(t, testRolesSettingsAndIdentities) }

func testRolesSettingsAndIdentities(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	u := mustUser(t, s, "carol", RoleUser)
	if err := s.SetUserRoles(ctx, u.ID, []string{"auditor", " operator", "auditor", ""}); err != nil {
		t.Fatal(err)
	}
	got, err := s.UserByID(ctx, u.ID)
	if err != nil || got.Role != RoleAdmin || !reflect.DeepEqual(got.Roles, []string{"auditor", "operator"}) {
		t.Fatalf("after SetUserRoles: %+v, %v", got, err)
	}
	if n, err := s.CountRoleHolders(ctx, "auditor"); err != nil || n != 1 {
		t.Errorf("CountRoleHolders = %d, %v", n, err)
	}
	if err := s.SetUserRoles(ctx, 9999, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetUserRoles(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.UpdateUserIdentity(ctx, u.ID, "Carol C.", SourceOIDC, "https://idp carol"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UserByExternalID(ctx, SourceOIDC, "https://idp carol"); err != nil || got.ID != u.ID || got.DisplayName != "Carol C." {
		t.Errorf("UserByExternalID = %+v, %v", got, err)
	}
	if _, err := s.UserByExternalID(ctx, SourceLDAP, "https://idp carol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByExternalID(other source) = %v, want ErrNotFound", err)
	}

	role := CustomRole{Name: "helpdesk", Description: "first line", Permissions: []string{"rooms.view", "users.view"}, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateCustomRole(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCustomRole(ctx, role); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate CreateCustomRole = %v, want ErrExists", err)
	}
	role.Permissions = []string{"rooms.view"}
	role.UpdatedAt = t0.Add(time.Hour)
	if err := s.UpdateCustomRole(ctx, role); err != nil {
		t.Fatal(err)
	}
	roles, err := s.CustomRoles(ctx)
	if err != nil || len(roles) != 1 || !reflect.DeepEqual(roles[0], role) {
		t.Errorf("CustomRoles = %+v, %v; want %+v", roles, err, role)
	}
	if err := s.DeleteCustomRole(ctx, "helpdesk"); err != nil {
		t.Fatal(err)
	}
	if roles, _ := s.CustomRoles(ctx); len(roles) != 0 {
		t.Errorf("after delete: %+v", roles)
	}

	if _, err := s.Setting(ctx, "banner"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Setting(unset) = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"first", "second"} {
		if err := s.SetSetting(ctx, "banner", v, t0); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Setting(ctx, "banner"); err != nil || got != v {
			t.Errorf("Setting = %q, %v; want %q", got, err, v)
		}
	}

	now := t0
	for i, plane := range []string{"meeting", "admin"} {
		if err := s.CreateSession(ctx, Session{IDHash: []byte{byte(i + 1)}, UserID: u.ID, CreatedAt: now.Add(time.Duration(i) * time.Minute),
			LastSeen: now, ExpiresAt: now.Add(time.Hour), Plane: plane, Method: "password"}); err != nil {
			t.Fatal(err)
		}
	}
	ss, err := s.ListSessions(ctx, SessionFilter{UserID: u.ID, Now: now})
	if err != nil || len(ss) != 2 || ss[0].Plane != "admin" || ss[1].Method != "password" {
		t.Errorf("ListSessions = %+v, %v; want newest first", ss, err)
	}
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if ss, _ := s.ListSessions(ctx, SessionFilter{Now: now}); len(ss) != 0 {
		t.Errorf("sessions of a deleted user remain: %+v", ss)
	}
	if n, _ := s.CountRoleHolders(ctx, "auditor"); n != 0 {
		t.Errorf("roles of a deleted user remain: %d", n)
	}
}

// TestDeviceStore covers the telephony records on both engines.
func TestDeviceStore(t *testing.T) { forEachEngine(t, testDeviceStore) }

func testDeviceStore(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	u := mustUser(t, s, "dave", RoleUser)
	tok := DeviceToken{TokenHash: bytes.Repeat([]byte{3}, 32), UserID: u.ID, CreatedBy: "admin", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateDeviceToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDeviceToken(ctx, tok); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate token = %v, want ErrExists", err)
	}
	if _, err := s.ConsumeDeviceToken(ctx, tok.TokenHash, t0.Add(2*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token = %v, want ErrNotFound", err)
	}
	got, err := s.ConsumeDeviceToken(ctx, tok.TokenHash, t0.Add(time.Minute))
	if err != nil || got.UserID != u.ID || !got.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("ConsumeDeviceToken = %+v, %v", got, err)
	}
	if _, err := s.ConsumeDeviceToken(ctx, tok.TokenHash, t0.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Errorf("second use = %v, want ErrNotFound", err)
	}

	c := DeviceCert{Serial: "0a1b", UserID: u.ID, AOR: "sip:dave@example.org", Fingerprint: "ab:cd", KeyType: "ECDSA P-256",
		IssuedAt: t0, NotAfter: t0.Add(24 * time.Hour), DER: []byte{0x30, 0x82}}
	if err := s.CreateDeviceCert(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.DeviceCertBySerial(ctx, "0a1b"); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("DeviceCertBySerial = %+v, %v; want %+v", got, err, c)
	}
	if list, err := s.ListDeviceCerts(ctx, u.ID); err != nil || len(list) != 1 {
		t.Errorf("ListDeviceCerts = %+v, %v", list, err)
	}
	if err := s.SetDeviceDigest(ctx, "0a1b", "sealed"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DeviceCertBySerial(ctx, "0a1b"); got.DigestHA1 != "sealed" {
		t.Errorf("SetDeviceDigest left %q", got.DigestHA1)
	}
	if err := s.SetDeviceDigest(ctx, "ffff", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDeviceDigest of an unknown serial = %v, want ErrNotFound", err)
	}
	r, err := s.RevokeDeviceCert(ctx, "0a1b", t0.Add(time.Hour), 4)
	if err != nil || !r.RevokedAt.Equal(t0.Add(time.Hour)) || r.Reason != 4 {
		t.Errorf("RevokeDeviceCert = %+v, %v", r, err)
	}
	if r, _ := s.RevokeDeviceCert(ctx, "0a1b", t0.Add(2*time.Hour), 1); !r.RevokedAt.Equal(t0.Add(time.Hour)) || r.Reason != 4 {
		t.Errorf("a second revocation changed the first: %+v", r)
	}
	if list, err := s.RevokedDeviceCerts(ctx, t0.Add(2*time.Hour)); err != nil || len(list) != 1 {
		t.Errorf("RevokedDeviceCerts = %+v, %v", list, err)
	}
	if list, _ := s.RevokedDeviceCerts(ctx, t0.Add(48*time.Hour)); len(list) != 0 {
		t.Errorf("an expired revoked certificate is still listed: %+v", list)
	}

	// Deleting the account keeps its certificates, revoked, for the
	// revocation list; their owner becomes 0.
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.DeviceCertBySerial(ctx, "0a1b"); err != nil || got.UserID != 0 || got.Reason != 4 {
		t.Errorf("the certificate of a deleted account = %+v, %v; want it kept with UserID 0", got, err)
	}
	if list, err := s.RevokedDeviceCerts(ctx, t0.Add(2*time.Hour)); err != nil || len(list) != 1 {
		t.Errorf("RevokedDeviceCerts after the account was deleted = %+v, %v", list, err)
	}

	for i, id := range []string{"call-1", "call-2"} {
		if err := s.AddCDR(ctx, CDR{ID: id, StartedAt: t0.Add(time.Duration(i) * time.Minute), Sealed: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddCDR(ctx, CDR{ID: "call-1", StartedAt: t0, Sealed: []byte("ended")}); err != nil {
		t.Fatal(err)
	}
	cdrs, err := s.ListCDRs(ctx, t0, time.Time{}, 0)
	if err != nil || len(cdrs) != 2 || cdrs[0].ID != "call-2" || string(cdrs[1].Sealed) != "ended" {
		t.Errorf("ListCDRs = %+v, %v", cdrs, err)
	}
}

// A PostgreSQL store's snapshot (pg_dump) loads into an empty database
// with everything in it, the audit chain included; a database that is
// not empty is refused and left as it was.
func TestPostgresSnapshotRestore(t *testing.T) {
	eng := openEngine(t, "postgres")
	ctx := context.Background()
	u := mustUser(t, eng.DB, "dave", RoleUser)
	if _, err := eng.CreateRoom(ctx, Room{Alias: "board", DisplayName: "Board", OwnerID: u.ID}); err != nil {
		t.Fatal(err)
	}
	var last AuditRecord
	for i := 0; i < 3; i++ {
		r, err := eng.AppendAudit(ctx, AuditRecord{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "dave", Action: "login", Outcome: "success"})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	dump := filepath.Join(t.TempDir(), "conclave.pgdump")
	if err := eng.Snapshot(ctx, dump); err != nil {
		t.Fatal(err)
	}
	target := newDatabase(t, "postgres")
	if err := RestorePostgres(ctx, target, dump); err != nil {
		t.Fatal(err)
	}
	s, err := Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.RoomByAlias(ctx, "board"); err != nil || r.OwnerID != u.ID {
		t.Fatalf("restored room = %+v, %v", r, err)
	}
	recs, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(recs) != 3 || !bytes.Equal(recs[2].Hash, last.Hash) || !bytes.Equal(recs[2].Hash, recs[2].ComputeHash()) {
		t.Fatalf("restored audit log = %+v, %v", recs, err)
	}
	// The identity columns go on after the restored rows.
	if v, err := s.CreateUser(ctx, User{Username: "erin", DisplayName: "Erin", Role: RoleUser, Enabled: true}); err != nil || v.ID <= u.ID {
		t.Fatalf("a user after the restore = %+v, %v", v, err)
	}
	if err := RestorePostgres(ctx, target, dump); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a database that is not empty: %v", err)
	}
	if _, err := s.UserByName(ctx, "erin"); err != nil {
		t.Fatalf("the refused restore changed the database: %v", err)
	}
}
