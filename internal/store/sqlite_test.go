package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

func mustUser(t *testing.T, s Store, name string, role Role) User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), User{
		Username: name, DisplayName: "Display " + name, PasswordHash: "hash-" + name,
		Role: role, Enabled: true, CreatedAt: t0,
	})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func TestOpenSQLiteRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "/tmp/a?b", "/tmp/a#b"} {
		if s, err := OpenSQLite(p); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) succeeded, want error", p)
		}
	}
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	forEachEngine(t, testMigrationsIdempotentOnReopen)
}

func testMigrationsIdempotentOnReopen(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
	mustUser(t, s, "alice", RoleAdmin)
	s.Close()

	for i := 0; i < 2; i++ {
		s2, err := eng.open()
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		var rows int
		if err := s2.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != len(migrations) {
			t.Errorf("reopen %d: %d schema_migrations rows, want %d", i, rows, len(migrations))
		}
		if _, err := s2.UserByName(ctx, "alice"); err != nil {
			t.Errorf("reopen %d: data lost: %v", i, err)
		}
		if eng.name == "sqlite" {
			var mode string
			if err := s2.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode = %q, %v; want wal", mode, err)
			}
			var fk int
			if err := s2.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
				t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
			}
		}
		s2.Close()
	}
}

func TestRefusesNewerSchema(t *testing.T) { forEachEngine(t, testRefusesNewerSchema) }

func testRefusesNewerSchema(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := eng.open(); err == nil {
		s2.Close()
		t.Fatal("OpenSQLite on a newer schema succeeded, want error")
	}
}

func TestUsers(t *testing.T) { forEachEngine(t, testUsers) }

func testUsers(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	alice := mustUser(t, s, "Alice", RoleAdmin)
	if alice.ID == 0 {
		t.Fatal("CreateUser returned ID 0")
	}
	mustUser(t, s, "bob", RoleUser)
	mustUser(t, s, "carol", RoleUser)

	tests := []struct {
		name    string
		user    User
		wantErr error // nil means any error
	}{
		{"duplicate", User{Username: "bob", Role: RoleUser}, ErrExists},
		{"duplicate other case", User{Username: "ALICE", Role: RoleUser}, ErrExists},
		{"bad role", User{Username: "dave", Role: "root"}, nil},
		{"bad name", User{Username: "-dave", Role: RoleUser}, nil},
		{"empty name", User{Username: "", Role: RoleUser}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateUser(ctx, tt.user)
			if err == nil {
				t.Fatal("CreateUser succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("CreateUser error = %v, want %v", err, tt.wantErr)
			}
		})
	}

	for _, name := range []string{"alice", "ALICE", "Alice", "aLiCe"} {
		u, err := s.UserByName(ctx, name)
		if err != nil {
			t.Fatalf("UserByName(%q): %v", name, err)
		}
		if u.ID != alice.ID || u.Username != "Alice" {
			t.Errorf("UserByName(%q) = %+v, want Alice", name, u)
		}
	}
	got, err := s.UserByID(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.DisplayName != "Display Alice" || got.PasswordHash != "hash-Alice" || got.Role != RoleAdmin ||
		!got.Enabled || !got.CreatedAt.Equal(t0) || got.CreatedAt.Location() != time.UTC || !got.PasswordChangedAt.IsZero() {
		t.Errorf("UserByID = %+v", got)
	}
	if _, err := s.UserByName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByName(nobody) error = %v, want ErrNotFound", err)
	}
	if _, err := s.UserByID(ctx, 9999); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByID(9999) error = %v, want ErrNotFound", err)
	}

	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	if strings.Join(names, ",") != "Alice,bob,carol" {
		t.Errorf("ListUsers = %v", names)
	}

	for _, c := range []struct {
		role Role
		want int
	}{{"", 3}, {RoleAdmin, 1}, {RoleUser, 2}} {
		n, err := s.CountUsers(ctx, c.role)
		if err != nil || n != c.want {
			t.Errorf("CountUsers(%q) = %d, %v; want %d", c.role, n, err, c.want)
		}
	}

	changed := t0.Add(time.Hour)
	if err := s.SetPassword(ctx, alice.ID, "newhash", changed); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserEnabled(ctx, alice.ID, false); err != nil {
		t.Fatal(err)
	}
	got, _ = s.UserByID(ctx, alice.ID)
	if got.PasswordHash != "newhash" || !got.PasswordChangedAt.Equal(changed) || got.Enabled {
		t.Errorf("after SetPassword/SetUserEnabled: %+v", got)
	}
	if err := s.SetPassword(ctx, 9999, "x", changed); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword(9999) error = %v, want ErrNotFound", err)
	}
	if err := s.SetUserEnabled(ctx, 9999, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetUserEnabled(9999) error = %v, want ErrNotFound", err)
	}
}

func TestRooms(t *testing.T) { forEachEngine(t, testRooms) }

func testRooms(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	owner := mustUser(t, s, "owner", RoleUser)
	r, err := s.CreateRoom(ctx, Room{Alias: "Board-Room", DisplayName: "Board", OwnerID: owner.ID, CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if r.Alias != "board-room" || r.ID == 0 {
		t.Errorf("CreateRoom = %+v, want lower-case alias and an ID", r)
	}
	if _, err := s.CreateRoom(ctx, Room{Alias: "lobby", DisplayName: "Lobby"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		alias   string
		wantErr error
	}{
		{"board-room", ErrExists},
		{"BOARD-ROOM", ErrExists},
		{"-board", nil},
		{"", nil},
		{strings.Repeat("a", 65), nil},
		{"with space", nil},
	}
	for _, tt := range tests {
		_, err := s.CreateRoom(ctx, Room{Alias: tt.alias})
		if err == nil {
			t.Errorf("CreateRoom(%q) succeeded, want error", tt.alias)
			continue
		}
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("CreateRoom(%q) error = %v, want %v", tt.alias, err, tt.wantErr)
		}
	}

	got, err := s.RoomByAlias(ctx, "Board-ROOM")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || got.OwnerID != owner.ID || got.DisplayName != "Board" || !got.CreatedAt.Equal(t0) {
		t.Errorf("RoomByAlias = %+v, want %+v", got, r)
	}
	rooms, err := s.ListRooms(ctx)
	if err != nil || len(rooms) != 2 || rooms[0].Alias != "board-room" || rooms[1].Alias != "lobby" || rooms[1].OwnerID != 0 {
		t.Errorf("ListRooms = %+v, %v", rooms, err)
	}
	if err := s.DeleteRoom(ctx, "BOARD-room"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RoomByAlias(ctx, "board-room"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RoomByAlias after delete error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRoom(ctx, "board-room"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteRoom error = %v, want ErrNotFound", err)
	}
	if _, err := s.CreateRoom(ctx, Room{Alias: "ghost", OwnerID: 4242}); err == nil {
		t.Error("CreateRoom with an unknown owner succeeded, want a foreign key error")
	}
}

func TestValidAlias(t *testing.T) {
	tests := []struct {
		alias string
		ok    bool
	}{
		{"a", true},
		{"0", true},
		{"team-a_b.c", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"Team", false},
		{"-team", false},
		{"_team", false},
		{".team", false},
		{"team room", false},
		{"team/room", false},
		{"équipe", false},
		{"team@x", false},
	}
	for _, tt := range tests {
		err := ValidAlias(tt.alias)
		if (err == nil) != tt.ok {
			t.Errorf("ValidAlias(%q) = %v, want ok=%v", tt.alias, err, tt.ok)
		}
	}
}

func TestValidUsername(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"Alice.Smith", true},
		{"alice@example.org", true},
		{"a_b-c", true},
		{"", false},
		{"@alice", false},
		{"alice smith", false},
		{"alicé", false},
		{strings.Repeat("x", 65), false},
	}
	for _, tt := range tests {
		err := ValidUsername(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidUsername(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestConsumeEnrolment(t *testing.T) { forEachEngine(t, testConsumeEnrolment) }

func testConsumeEnrolment(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	mk := func(b byte, expires time.Time) []byte {
		h := bytes.Repeat([]byte{b}, 32)
		if err := s.CreateEnrolment(ctx, Enrolment{TokenHash: h, Role: RoleAdmin, CreatedAt: t0, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	valid := mk(1, t0.Add(time.Hour))
	expired := mk(2, t0.Add(time.Minute))

	if err := s.CreateEnrolment(ctx, Enrolment{TokenHash: valid, Role: RoleUser, CreatedAt: t0, ExpiresAt: t0}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate CreateEnrolment error = %v, want ErrExists", err)
	}
	if err := s.CreateEnrolment(ctx, Enrolment{TokenHash: []byte{9}, Role: "root"}); err == nil {
		t.Error("CreateEnrolment with a bad role succeeded")
	}

	peek, err := s.EnrolmentByHash(ctx, valid)
	if err != nil || !peek.UsedAt.IsZero() || peek.Role != RoleAdmin || !peek.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("EnrolmentByHash before use = %+v, %v", peek, err)
	}
	if _, err := s.EnrolmentByHash(ctx, []byte{42}); !errors.Is(err, ErrNotFound) {
		t.Errorf("EnrolmentByHash(unknown) error = %v, want ErrNotFound", err)
	}

	now := t0.Add(30 * time.Minute)
	e, err := s.ConsumeEnrolment(ctx, valid, now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.TokenHash, valid) || e.Role != RoleAdmin || !e.UsedAt.Equal(now) || !e.CreatedAt.Equal(t0) || !e.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("ConsumeEnrolment = %+v", e)
	}
	if peek, err := s.EnrolmentByHash(ctx, valid); err != nil || !peek.UsedAt.Equal(now) {
		t.Errorf("EnrolmentByHash after use = %+v, %v; want UsedAt %v", peek, err, now)
	}
	for _, c := range []struct {
		name string
		hash []byte
	}{{"used", valid}, {"expired", expired}, {"unknown", bytes.Repeat([]byte{3}, 32)}} {
		if _, err := s.ConsumeEnrolment(ctx, c.hash, now); !errors.Is(err, ErrNotFound) {
			t.Errorf("ConsumeEnrolment(%s) error = %v, want ErrNotFound", c.name, err)
		}
	}
}

func TestConsumeEnrolmentConcurrent(t *testing.T) { forEachEngine(t, testConsumeEnrolmentConcurrent) }

func testConsumeEnrolmentConcurrent(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	s2, err := eng.open()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	h := bytes.Repeat([]byte{7}, 32)
	if err := s.CreateEnrolment(ctx, Enrolment{TokenHash: h, Role: RoleUser, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		success int
	)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(st Store) {
			defer wg.Done()
			_, err := st.ConsumeEnrolment(ctx, h, t0)
			if err == nil {
				mu.Lock()
				success++
				mu.Unlock()
			} else if !errors.Is(err, ErrNotFound) {
				t.Errorf("ConsumeEnrolment: %v", err)
			}
		}([]Store{s, s2}[i%2])
	}
	wg.Wait()
	if success != 1 {
		t.Errorf("%d concurrent consumptions succeeded, want exactly 1", success)
	}
}

func TestSessions(t *testing.T) { forEachEngine(t, testSessions) }

func testSessions(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	s := eng.DB
	u := mustUser(t, s, "alice", RoleUser)
	other := mustUser(t, s, "bob", RoleUser)
	sess := Session{
		IDHash: bytes.Repeat([]byte{1}, 32), UserID: u.ID, CreatedAt: t0, LastSeen: t0,
		ExpiresAt: t0.Add(12 * time.Hour), CSRFToken: "csrf", Remote: "192.0.2.1:1234",
	}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, sess); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate CreateSession error = %v, want ErrExists", err)
	}
	if err := s.CreateSession(ctx, Session{IDHash: []byte{5}, UserID: 4242, CreatedAt: t0, LastSeen: t0, ExpiresAt: t0}); err == nil {
		t.Error("CreateSession for an unknown user succeeded, want a foreign key error")
	}
	got, err := s.SessionByID(ctx, sess.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.IDHash, sess.IDHash) || got.UserID != u.ID || got.CSRFToken != "csrf" || got.Remote != sess.Remote ||
		!got.CreatedAt.Equal(t0) || !got.LastSeen.Equal(t0) || !got.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Errorf("SessionByID = %+v, want %+v", got, sess)
	}
	seen := t0.Add(time.Minute)
	if err := s.TouchSession(ctx, sess.IDHash, seen); err != nil {
		t.Fatal(err)
	}
	got, _ = s.SessionByID(ctx, sess.IDHash)
	if !got.LastSeen.Equal(seen) {
		t.Errorf("LastSeen = %v, want %v", got.LastSeen, seen)
	}
	if err := s.TouchSession(ctx, []byte{9}, seen); !errors.Is(err, ErrNotFound) {
		t.Errorf("TouchSession(unknown) error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, sess.IDHash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByID(ctx, sess.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("SessionByID after delete error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, sess.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteSession error = %v, want ErrNotFound", err)
	}

	for i := byte(0); i < 3; i++ {
		for _, uid := range []int64{u.ID, other.ID} {
			ss := Session{IDHash: []byte{byte(uid), i}, UserID: uid, CreatedAt: t0, LastSeen: t0, ExpiresAt: t0.Add(time.Duration(i) * time.Hour)}
			if err := s.CreateSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.DeleteUserSessions(ctx, u.ID)
	if err != nil || n != 3 {
		t.Errorf("DeleteUserSessions = %d, %v; want 3", n, err)
	}
	n, err = s.DeleteExpiredSessions(ctx, t0.Add(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("DeleteExpiredSessions = %d, %v; want 2", n, err)
	}
	if _, err := s.SessionByID(ctx, []byte{byte(other.ID), 2}); err != nil {
		t.Errorf("unexpired session gone: %v", err)
	}
}

// TestConcurrentHandles opens two handles on one file, as the CLI does next
// to a running server, and writes from both at once.
func TestConcurrentHandles(t *testing.T) { forEachEngine(t, testConcurrentHandles) }

func testConcurrentHandles(t *testing.T, eng *engineDB) {
	ctx := context.Background()
	a := eng.DB
	b, err := eng.open()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const perHandle = 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*perHandle)
	for h, st := range []Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perHandle; i++ {
				u, err := st.CreateUser(ctx, User{Username: fmt.Sprintf("u%d-%d", h, i), Role: RoleUser, Enabled: true, CreatedAt: t0})
				if err != nil {
					errs <- err
					continue
				}
				if _, err := st.CreateRoom(ctx, Room{Alias: fmt.Sprintf("r%d-%d", h, i), OwnerID: u.ID}); err != nil {
					errs <- err
				}
				if _, err := st.ListUsers(ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	for _, st := range []Store{a, b} {
		n, err := st.CountUsers(ctx, "")
		if err != nil || n != 2*perHandle {
			t.Errorf("CountUsers = %d, %v; want %d", n, err, 2*perHandle)
		}
	}
	// A user created through one handle is visible through the other.
	if _, err := b.UserByName(ctx, "u0-0"); err != nil {
		t.Errorf("user written by handle a not visible from b: %v", err)
	}
}

// TestConcurrentFirstOpen opens a new database from several handles at
// once: one of them applies each migration, and none fails.
func TestConcurrentFirstOpen(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			dsn := newDatabase(t, engine)
			var wg sync.WaitGroup
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := Open(dsn)
					if err != nil {
						t.Errorf("concurrent Open: %v", err)
						return
					}
					if v, err := s.SchemaVersion(context.Background()); err != nil || v != len(migrations) {
						t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
					}
					s.Close()
				}()
			}
			wg.Wait()
		})
	}
}
