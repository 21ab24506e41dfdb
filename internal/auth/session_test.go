package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

type sessionFixture struct {
	st    *store.SQLite
	clock *fakeclock.Clock
	m     *Sessions
	user  store.User
	admin store.User
}

func newSessionFixture(t *testing.T, cfg SessionConfig) *sessionFixture {
	t.Helper()
	ctx := context.Background()
	f := &sessionFixture{st: openStore(t), clock: fakeclock.New(epoch)}
	f.m = NewSessions(f.st, f.clock, cfg)
	var err error
	if f.user, err = f.st.CreateUser(ctx, store.User{Username: "user", Role: store.RoleUser, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if f.admin, err = f.st.CreateUser(ctx, store.User{Username: "admin", Role: store.RoleAdmin, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSessionCreateLookup(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{})
	tok, s, err := f.m.Create(ctx, f.user, "192.0.2.7:5000")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 || len(s.CSRFToken) != 43 || s.CSRFToken == tok {
		t.Errorf("token %q / CSRF %q: want two distinct 32-byte base64url values", tok, s.CSRFToken)
	}
	if !s.ExpiresAt.Equal(epoch.Add(DefaultMaxLifetime)) || s.Remote != "192.0.2.7:5000" {
		t.Errorf("session = %+v", s)
	}
	f.clock.Advance(time.Minute)
	got, u, err := f.m.Lookup(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != f.user.ID || got.UserID != f.user.ID || got.CSRFToken != s.CSRFToken || !got.LastSeen.Equal(f.clock.Now()) {
		t.Errorf("Lookup = %+v, %+v", got, u)
	}
	if stored, _ := f.st.SessionByID(ctx, s.IDHash); !stored.LastSeen.Equal(f.clock.Now()) {
		t.Errorf("stored LastSeen = %v, want %v", stored.LastSeen, f.clock.Now())
	}
	if !ValidCSRF(got, s.CSRFToken) || ValidCSRF(got, tok) || ValidCSRF(got, "") || ValidCSRF(store.Session{}, "") {
		t.Error("ValidCSRF gives wrong answers")
	}

	if err := f.m.Delete(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("Lookup after Delete error = %v, want ErrNoSession", err)
	}
	if err := f.m.Delete(ctx, tok); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	for _, bad := range []string{"", "nope", tok + "x"} {
		if _, _, err := f.m.Lookup(ctx, bad); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(%q) error = %v, want ErrNoSession", bad, err)
		}
		if err := f.m.Delete(ctx, bad); err != nil {
			t.Errorf("Delete(%q): %v", bad, err)
		}
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		cfg   SessionConfig
		admin bool
		idle  time.Duration
	}{
		{"user default", SessionConfig{}, false, DefaultIdleTimeout},
		{"admin default", SessionConfig{}, true, DefaultAdminIdleTimeout},
		{"user configured", SessionConfig{IdleTimeout: time.Hour}, false, time.Hour},
		{"admin configured", SessionConfig{AdminIdleTimeout: 2 * time.Minute}, true, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSessionFixture(t, tt.cfg)
			u := f.user
			if tt.admin {
				u = f.admin
			}
			tok, s, err := f.m.Create(ctx, u, "")
			if err != nil {
				t.Fatal(err)
			}
			// Activity just inside the timeout keeps the session alive,
			// well past a single timeout in total.
			for i := 0; i < 3; i++ {
				f.clock.Advance(tt.idle - time.Second)
				if _, _, err := f.m.Lookup(ctx, tok); err != nil {
					t.Fatalf("Lookup %d after %v idle: %v", i, tt.idle-time.Second, err)
				}
			}
			f.clock.Advance(tt.idle)
			if _, _, err := f.m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
				t.Fatalf("Lookup after %v idle error = %v, want ErrNoSession", tt.idle, err)
			}
			if _, err := f.st.SessionByID(ctx, s.IDHash); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("idle session not deleted: %v", err)
			}
		})
	}
}

func TestSessionMaxLifetime(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{})
	tok, s, err := f.m.Create(ctx, f.user, "")
	if err != nil {
		t.Fatal(err)
	}
	step := 20 * time.Minute
	for elapsed := step; elapsed < DefaultMaxLifetime; elapsed += step {
		f.clock.Advance(step)
		if _, _, err := f.m.Lookup(ctx, tok); err != nil {
			t.Fatalf("Lookup at %v: %v", elapsed, err)
		}
	}
	f.clock.Set(s.ExpiresAt)
	if _, _, err := f.m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Lookup at the absolute expiry error = %v, want ErrNoSession", err)
	}
	if _, err := f.st.SessionByID(ctx, s.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired session not deleted: %v", err)
	}
}

func TestSessionAccountChanges(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{})
	tok, _, err := f.m.Create(ctx, f.user, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetUserEnabled(ctx, f.user.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("Lookup for a disabled account error = %v, want ErrNoSession", err)
	}
	disabled, _ := f.st.UserByID(ctx, f.user.ID)
	if _, _, err := f.m.Create(ctx, disabled, ""); err == nil {
		t.Error("Create for a disabled account succeeded")
	}

	var toks []string
	for i := 0; i < 3; i++ {
		tok, _, err := f.m.Create(ctx, f.admin, "")
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	if n, err := f.m.DeleteUser(ctx, f.admin.ID); err != nil || n != 3 {
		t.Errorf("DeleteUser = %d, %v; want 3", n, err)
	}
	for _, tok := range toks {
		if _, _, err := f.m.Lookup(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup after DeleteUser error = %v, want ErrNoSession", err)
		}
	}
}
