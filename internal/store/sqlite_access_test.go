package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestMigrationFromV1 builds a database at schema version 1, as released,
// and opens it with the current code: existing rooms become open rooms with
// guests fully able to take part, and existing users need no password
// change.
func TestMigrationFromV1(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) { testMigrationFromV1(t, engine) })
	}
}

// A database of schema version 8 keeps its device certificates through
// migration 9, which makes them outlive their account, and its audit
// records become searchable by text through migration 10.
func TestMigrationFromV8(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dsn := newDatabase(t, engine)
			driver, raw, list, yes := "sqlite", dsn+"?_pragma=foreign_keys(1)", migrations, "1"
			if engine == "postgres" {
				driver, raw, list, yes = "pgx", dsn, pgMigrations, "TRUE"
			}
			db, err := sql.Open(driver, raw)
			if err != nil {
				t.Fatal(err)
			}
			qs := []string{`CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`}
			for v := 1; v <= 8; v++ {
				qs = append(qs, list[v-1], fmt.Sprintf(`INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 1)`, v))
			}
			qs = append(qs,
				`INSERT INTO users (username, display_name, password_hash, role, enabled, created_at) VALUES ('dave', 'Dave', 'h', 'user', `+yes+`, 1)`,
				`INSERT INTO device_certs (serial, user_id, aor, fingerprint, key_type, issued_at, not_after, revoked_at, reason, der, digest_ha1)
					VALUES ('0a1b', 1, 'sip:dave@example.org', 'ab', 'ECDSA P-256', 1, 2, 3, 1, '\x30', 'MD5:00')`,
				`INSERT INTO audit_log (seq, time, actor, source, action, target, outcome, details, prev_hash, hash)
					VALUES (1, 1, 'Root', 'local', 'login', 'root', 'success', '{"note":"a\u003cb"}', '\x00', '\x00')`)
			for _, q := range qs {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("set up v8: %v\n%s", err, q)
				}
			}
			db.Close()
			s, err := Open(dsn)
			if err != nil {
				t.Fatalf("Open on v8: %v", err)
			}
			defer s.Close()
			c, err := s.DeviceCertBySerial(ctx, "0a1b")
			if err != nil || c.UserID != 1 || c.Reason != 1 || c.DigestHA1 != "MD5:00" || !c.RevokedAt.Equal(fromNanos(3)) {
				t.Fatalf("migrated certificate = %+v, %v", c, err)
			}
			// Records written before migration 10 are found by text.
			if recs, err := s.ListAudit(ctx, AuditFilter{Text: "A<B"}); err != nil || len(recs) != 1 || recs[0].Actor != "Root" {
				t.Fatalf("search of a record from before migration 10: %+v %v", recs, err)
			}
			if err := s.DeleteUser(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if c, err := s.DeviceCertBySerial(ctx, "0a1b"); err != nil || c.UserID != 0 {
				t.Fatalf("after the account was deleted: %+v, %v", c, err)
			}
		})
	}
}

func testMigrationFromV1(t *testing.T, engine string) {
	ctx := context.Background()
	dsn := newDatabase(t, engine)
	driver, raw, v1, yes := "sqlite", dsn+"?_pragma=foreign_keys(1)", migrations[0], "1"
	if engine == "postgres" {
		driver, raw, v1, yes = "pgx", dsn, pgMigrations[0], "TRUE"
	}
	db, err := sql.Open(driver, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`,
		v1,
		`INSERT INTO schema_migrations (version, applied_at) VALUES (1, 1)`,
		`INSERT INTO users (username, display_name, password_hash, role, enabled, created_at) VALUES ('old', 'Old', 'h', 'user', ` + yes + `, 1)`,
		`INSERT INTO rooms (alias, display_name, owner_id, created_at) VALUES ('legacy', 'Legacy', 1, 1)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("set up v1: %v", err)
		}
	}
	db.Close()

	s, err := Open(dsn)
	if err != nil {
		t.Fatalf("Open on v1: %v", err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
	r, err := s.RoomByAlias(ctx, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultRoomAccess(Room{ID: r.ID, Alias: "legacy", DisplayName: "Legacy", OwnerID: 1, CreatedAt: fromNanos(1)})
	if !reflect.DeepEqual(r, want) {
		t.Errorf("migrated room = %+v\nwant %+v", r, want)
	}
	if r.Access != AccessOpen || !r.AllowGuests || !r.GuestsMayUnmute || !r.GuestsMayPresent || r.MembersOnly {
		t.Errorf("migrated room access = %+v, want open with guests", r)
	}
	u, err := s.UserByName(ctx, "old")
	if err != nil || u.MustChangePassword {
		t.Errorf("migrated user = %+v, %v; want no forced change", u, err)
	}
}

func TestRoomAccess(t *testing.T) { forEachEngine(t, testRoomAccess) }

func testRoomAccess(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	owner := mustUser(t, s, "owner", RoleUser)

	// Zero access: the defaults, as for callers that predate access control.
	plain, err := s.CreateRoom(ctx, Room{Alias: "plain", DisplayName: "Plain"})
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultRoomAccess(plain); !reflect.DeepEqual(plain, want) {
		t.Errorf("CreateRoom with zero access = %+v, want %+v", plain, want)
	}

	full := Room{
		Alias: "secure", DisplayName: "Secure", OwnerID: owner.ID, CreatedAt: t0,
		Access: AccessPIN, HostPINHash: "$argon2id$host", GuestPINHash: "$argon2id$guest",
		AllowGuests: true, GuestsMayUnmute: false, GuestsMayPresent: true, MembersOnly: true,
	}
	created, err := s.CreateRoom(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	full.ID = created.ID
	for name, get := range map[string]func() (Room, error){
		"RoomByAlias": func() (Room, error) { return s.RoomByAlias(ctx, "SECURE") },
		"RoomByID":    func() (Room, error) { return s.RoomByID(ctx, created.ID) },
	} {
		got, err := get()
		if err != nil || !reflect.DeepEqual(got, full) {
			t.Errorf("%s = %+v, %v\nwant %+v", name, got, err, full)
		}
	}

	upd := full
	upd.Alias, upd.CreatedAt = "ignored", t0.Add(time.Hour) // kept as they are
	upd.DisplayName = "Renamed"
	upd.Access, upd.HostPINHash, upd.GuestPINHash = AccessAccounts, "", ""
	upd.AllowGuests, upd.GuestsMayUnmute, upd.GuestsMayPresent, upd.MembersOnly = false, true, false, false
	if err := s.UpdateRoom(ctx, upd); err != nil {
		t.Fatal(err)
	}
	got, err := s.RoomByID(ctx, full.ID)
	want := upd
	want.Alias, want.CreatedAt = full.Alias, full.CreatedAt
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after UpdateRoom = %+v, %v\nwant %+v", got, err, want)
	}
	if rooms, err := s.ListRooms(ctx); err != nil || len(rooms) != 2 || !reflect.DeepEqual(rooms[1], want) {
		t.Errorf("ListRooms = %+v, %v", rooms, err)
	}

	bad := []struct {
		name string
		r    Room
	}{
		{"unknown access", Room{Alias: "x1", Access: "secret"}},
		{"pin without host PIN", Room{Alias: "x2", Access: AccessPIN, GuestPINHash: "g"}},
		{"PINs without access", Room{Alias: "x3", HostPINHash: "h"}},
	}
	for _, tt := range bad {
		if _, err := s.CreateRoom(ctx, tt.r); err == nil {
			t.Errorf("CreateRoom(%s) succeeded, want error", tt.name)
		}
		tt.r.ID = full.ID
		if tt.r.Access != "" {
			if err := s.UpdateRoom(ctx, tt.r); err == nil {
				t.Errorf("UpdateRoom(%s) succeeded, want error", tt.name)
			}
		}
	}
	if err := s.UpdateRoom(ctx, Room{ID: 4242, Access: AccessOpen}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateRoom(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.RoomByID(ctx, 4242); !errors.Is(err, ErrNotFound) {
		t.Errorf("RoomByID(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestRoomMembers(t *testing.T) { forEachEngine(t, testRoomMembers) }

func testRoomMembers(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	alice := mustUser(t, s, "alice", RoleUser)
	bob := mustUser(t, s, "bob", RoleUser)
	room, err := s.CreateRoom(ctx, Room{Alias: "team", Access: AccessAccounts, MembersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoomMember(ctx, room.ID, bob.ID, MemberMember); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoomMember(ctx, room.ID, alice.ID, MemberMember); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoomMember(ctx, room.ID, alice.ID, MemberHost); err != nil { // changes the role
		t.Fatal(err)
	}
	ms, err := s.RoomMembers(ctx, room.ID)
	want := []RoomMember{
		{RoomID: room.ID, UserID: alice.ID, Username: "alice", Role: MemberHost},
		{RoomID: room.ID, UserID: bob.ID, Username: "bob", Role: MemberMember},
	}
	if err != nil || !reflect.DeepEqual(ms, want) {
		t.Errorf("RoomMembers = %+v, %v\nwant %+v", ms, err, want)
	}
	if role, err := s.RoomMemberRole(ctx, room.ID, alice.ID); err != nil || role != MemberHost {
		t.Errorf("RoomMemberRole(alice) = %q, %v; want host", role, err)
	}

	errs := []struct {
		name string
		err  error
		want error
	}{
		{"unknown role", s.AddRoomMember(ctx, room.ID, bob.ID, "owner"), nil},
		{"unknown room", s.AddRoomMember(ctx, 4242, bob.ID, MemberHost), ErrNotFound},
		{"unknown user", s.AddRoomMember(ctx, room.ID, 4242, MemberHost), ErrNotFound},
		{"remove non-member", s.RemoveRoomMember(ctx, room.ID, 4242), ErrNotFound},
	}
	for _, tt := range errs {
		if tt.err == nil || tt.want != nil && !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: error = %v, want %v", tt.name, tt.err, tt.want)
		}
	}

	if err := s.RemoveRoomMember(ctx, room.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RoomMemberRole(ctx, room.ID, bob.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("RoomMemberRole(removed) error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRoom(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_members`).Scan(&n); err != nil || n != 0 {
		t.Errorf("members left after DeleteRoom: %d, %v", n, err)
	}
}

func TestSessionLimitsStore(t *testing.T) { forEachEngine(t, testSessionLimitsStore) }

func testSessionLimitsStore(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	admin := mustUser(t, s, "admin", RoleAdmin)
	user := mustUser(t, s, "user", RoleUser)
	add := func(uid int64, id byte, lastSeen, expires time.Time) {
		t.Helper()
		if err := s.CreateSession(ctx, Session{IDHash: []byte{id}, UserID: uid, CreatedAt: t0, LastSeen: lastSeen, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(time.Hour)
	add(admin.ID, 1, now, now.Add(time.Hour))                      // live
	add(admin.ID, 2, now.Add(-10*time.Minute), now.Add(time.Hour)) // idle 10 min
	add(admin.ID, 3, now, now)                                     // expired
	add(user.ID, 4, now, now.Add(time.Hour))                       // live

	tests := []struct {
		name string
		f    SessionFilter
		want int
	}{
		{"all live", SessionFilter{Now: now}, 3},
		{"not idle 5 min", SessionFilter{Now: now, IdleAfter: now.Add(-5 * time.Minute)}, 2},
		{"admins", SessionFilter{Now: now, Role: RoleAdmin}, 2},
		{"admins not idle", SessionFilter{Now: now, Role: RoleAdmin, IdleAfter: now.Add(-5 * time.Minute)}, 1},
		{"one user", SessionFilter{Now: now, UserID: user.ID}, 1},
		{"later", SessionFilter{Now: now.Add(2 * time.Hour)}, 0},
	}
	for _, tt := range tests {
		if n, err := s.CountSessions(ctx, tt.f); err != nil || n != tt.want {
			t.Errorf("CountSessions(%s) = %d, %v; want %d", tt.name, n, err, tt.want)
		}
	}

	adminLimit := SessionLimit{Max: 2, Filter: SessionFilter{Now: now, Role: RoleAdmin}}
	err := s.CreateSessionLimited(ctx, Session{IDHash: []byte{5}, UserID: admin.ID, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)},
		[]SessionLimit{{Max: 10, Filter: SessionFilter{Now: now, UserID: admin.ID}}, adminLimit})
	var le *SessionLimitError
	if !errors.Is(err, ErrLimit) || !errors.As(err, &le) || le.Count != 2 || le.Limit != adminLimit {
		t.Fatalf("CreateSessionLimited over the limit error = %v, want the admin limit", err)
	}
	if _, err := s.SessionByID(ctx, []byte{5}); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused session was stored: %v", err)
	}
	adminLimit.Max = 3
	if err := s.CreateSessionLimited(ctx, Session{IDHash: []byte{5}, UserID: admin.ID, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)},
		[]SessionLimit{adminLimit}); err != nil {
		t.Errorf("CreateSessionLimited under the limit: %v", err)
	}
}

func TestPasswordHistoryStore(t *testing.T) { forEachEngine(t, testPasswordHistoryStore) }

func testPasswordHistoryStore(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	u := mustUser(t, s, "alice", RoleUser) // password hash "hash-alice"
	if err := s.ReplacePassword(ctx, 4242, PasswordChange{Hash: "x", KeepHistory: 2}); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReplacePassword(unknown) error = %v, want ErrNotFound", err)
	}
	for i := 1; i <= 4; i++ {
		c := PasswordChange{Hash: fmt.Sprintf("h%d", i), ChangedAt: t0.Add(time.Duration(i) * time.Hour), MustChange: i%2 == 1, KeepHistory: 2}
		if err := s.ReplacePassword(ctx, u.ID, c); err != nil {
			t.Fatal(err)
		}
		got, err := s.UserByID(ctx, u.ID)
		if err != nil || got.PasswordHash != c.Hash || !got.PasswordChangedAt.Equal(c.ChangedAt) || got.MustChangePassword != c.MustChange {
			t.Errorf("after change %d: %+v, %v", i, got, err)
		}
	}
	if h, err := s.PasswordHistory(ctx, u.ID, 10); err != nil || !reflect.DeepEqual(h, []string{"h3", "h2"}) {
		t.Errorf("PasswordHistory = %q, %v; want [h3 h2]", h, err)
	}
	if h, err := s.PasswordHistory(ctx, u.ID, 1); err != nil || !reflect.DeepEqual(h, []string{"h3"}) {
		t.Errorf("PasswordHistory(1) = %q, %v; want [h3]", h, err)
	}
	if err := s.SetMustChangePassword(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UserByID(ctx, u.ID); !got.MustChangePassword {
		t.Error("SetMustChangePassword(true) not stored")
	}
	if err := s.ReplacePassword(ctx, u.ID, PasswordChange{Hash: "h5", ChangedAt: t0, KeepHistory: 0}); err != nil {
		t.Fatal(err)
	}
	if h, err := s.PasswordHistory(ctx, u.ID, 10); err != nil || len(h) != 0 {
		t.Errorf("PasswordHistory with KeepHistory 0 = %q, %v; want none", h, err)
	}
	created, err := s.CreateUser(ctx, User{Username: "forced", Role: RoleUser, MustChangePassword: true})
	if got, _ := s.UserByID(ctx, created.ID); err != nil || !got.MustChangePassword {
		t.Errorf("CreateUser with MustChangePassword = %+v, %v", got, err)
	}
}

func TestLoginThrottleStore(t *testing.T) { forEachEngine(t, testLoginThrottleStore) }

func testLoginThrottleStore(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	if _, err := s.LoginThrottle(ctx, "user:a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoginThrottle(none) error = %v, want ErrNotFound", err)
	}
	var seen LoginThrottle
	got, err := s.UpdateLoginThrottle(ctx, "user:a", func(t LoginThrottle) LoginThrottle {
		seen = t
		return LoginThrottle{Failures: 3, LastFailure: t0, NotBefore: t0.Add(time.Second)}
	})
	if err != nil || seen != (LoginThrottle{Key: "user:a"}) {
		t.Fatalf("first UpdateLoginThrottle saw %+v, %v", seen, err)
	}
	want := LoginThrottle{Key: "user:a", Failures: 3, LastFailure: t0, NotBefore: t0.Add(time.Second)}
	if got != want {
		t.Errorf("UpdateLoginThrottle = %+v, want %+v", got, want)
	}
	if got, err := s.LoginThrottle(ctx, "user:a"); err != nil || got != want {
		t.Errorf("LoginThrottle = %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.UpdateLoginThrottle(ctx, "user:b", func(t LoginThrottle) LoginThrottle {
		t.Failures, t.LastFailure, t.LockedUntil = 10, t0.Add(time.Hour), t0.Add(2*time.Hour)
		return t
	}); err != nil {
		t.Fatal(err)
	}
	// Pruning at t0+1h forgets a (all its times are earlier) but keeps b.
	if n, err := s.PruneLoginThrottles(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("PruneLoginThrottles = %d, %v; want 1", n, err)
	}
	if _, err := s.LoginThrottle(ctx, "user:b"); err != nil {
		t.Errorf("locked record pruned: %v", err)
	}
	// A zero result deletes.
	if _, err := s.UpdateLoginThrottle(ctx, "user:b", func(LoginThrottle) LoginThrottle { return LoginThrottle{} }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoginThrottle(ctx, "user:b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("zeroed record kept: %v", err)
	}
	if err := s.DeleteLoginThrottle(ctx, "user:b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteLoginThrottle(none) error = %v, want ErrNotFound", err)
	}
}

func TestAuditStore(t *testing.T) { forEachEngine(t, testAuditStore) }

func testAuditStore(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0}); err == nil {
		t.Error("AppendAudit without action succeeded")
	}
	actions := []string{"login", "login-failed", "login", "password-changed"}
	for i, a := range actions {
		r, err := s.AppendAudit(ctx, AuditRecord{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "alice", Action: a,
			Outcome: "success", Details: map[string]string{"i": fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != int64(i+1) || len(r.Hash) != 32 || !bytes.Equal(r.Hash, r.ComputeHash()) {
			t.Errorf("AppendAudit %d = seq %d hash %x", i, r.Seq, r.Hash)
		}
	}
	all, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(all) != 4 {
		t.Fatalf("ListAudit = %d records, %v", len(all), err)
	}
	prev := AuditGenesis
	for _, r := range all {
		if !bytes.Equal(r.PrevHash, prev) || !bytes.Equal(r.Hash, r.ComputeHash()) {
			t.Errorf("record %d does not chain", r.Seq)
		}
		prev = r.Hash
	}
	if all[1].Details["i"] != "1" || !all[1].Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("record 2 = %+v", all[1])
	}

	tests := []struct {
		name string
		f    AuditFilter
		want []int64
	}{
		{"action", AuditFilter{Action: "login"}, []int64{1, 3}},
		{"since", AuditFilter{Since: t0.Add(2 * time.Minute)}, []int64{3, 4}},
		{"until", AuditFilter{Until: t0.Add(2 * time.Minute)}, []int64{1, 2}},
		{"after seq", AuditFilter{AfterSeq: 3}, []int64{4}},
		{"limit", AuditFilter{Limit: 2}, []int64{1, 2}},
		{"newest", AuditFilter{Newest: true, Limit: 3}, []int64{4, 3, 2}},
		{"combined", AuditFilter{Action: "login", Since: t0.Add(time.Minute)}, []int64{3}},
	}
	for _, tt := range tests {
		recs, err := s.ListAudit(ctx, tt.f)
		var got []int64
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ListAudit(%s) = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}

// TestAuditCanonical pins the encoding the hashes cover, so that a change to
// it (which would break every existing log) is noticed.
func TestAuditCanonical(t *testing.T) {
	r := AuditRecord{Seq: 1, Time: time.Unix(0, 5), Actor: "a", Source: "", Action: "login", Target: "t", Outcome: "success",
		Details: map[string]string{"b": "2", "a": "1"}, PrevHash: AuditGenesis}
	want := "conclave-audit-v1\n" +
		"\x00\x00\x00\x00\x00\x00\x00\x01" + "\x00\x00\x00\x00\x00\x00\x00\x05" +
		"\x00\x00\x00\x01a" + "\x00\x00\x00\x00" + "\x00\x00\x00\x05login" + "\x00\x00\x00\x01t" +
		"\x00\x00\x00\x07success" + "\x00\x00\x00\x11" + `{"a":"1","b":"2"}`
	if got := string(r.Canonical()); got != want {
		t.Errorf("Canonical = %q\nwant %q", got, want)
	}
	r2 := r
	r2.Details = nil
	if !bytes.Contains(r2.Canonical(), []byte("\x00\x00\x00\x02{}")) {
		t.Errorf("empty details not encoded as {}: %q", r2.Canonical())
	}
}

// The audit log's text search ("q" on the audit page, -q of conclave
// audit export) finds the same records on both engines: letters of any
// case in ASCII, every other character as typed, in the actor, source,
// action, target and the details' values as they read (not as JSON
// escapes them), with % and _ taken literally.
func TestAuditTextSearch(t *testing.T) { forEachEngine(t, testAuditTextSearch) }

func testAuditTextSearch(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	for i, r := range []AuditRecord{
		{Actor: "Mia", Source: "2001:db8::1", Action: "login", Target: "mia", Outcome: "success"},
		{Actor: "cli:root", Source: "local", Action: "room-created", Target: "Zoë's room", Outcome: "success",
			Details: map[string]string{"access": "pin", "note": `a<b & "c" \ d`}},
		{Actor: "system", Action: "alarm-raised", Target: "disk:audit", Outcome: "failure",
			Details: map[string]string{"message": "Only 5% free_space left"}},
	} {
		r.Time = t0.Add(time.Duration(i) * time.Minute)
		if _, err := s.AppendAudit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string][]int64{
		"mia":               {1},
		"MIA":               {1},
		"db8::1":            {1},
		"ROOM-CREATED":      {2},
		"zoë":               {2},
		"ZOË":               nil, // only ASCII letters fold, on both engines
		"a<b":               {2},
		`& "c"`:             {2},
		`\ d`:               {2},
		"5%":                {3},
		"5%f":               nil, // % is a character, not a wildcard
		"free_space":        {3},
		"free space":        nil, // _ is a character too
		"access":            nil, // keys of the details are not searched
		"u003c":             nil, // nor their JSON escapes
		"ALARM-RAISED disk": nil,
	} {
		recs, err := s.ListAudit(ctx, AuditFilter{Text: q})
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		var got []int64
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		if !slices.Equal(got, want) {
			t.Errorf("search %q found %v, want %v", q, got, want)
		}
	}
}
