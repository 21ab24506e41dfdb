package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"conclave/internal/audit"
	"conclave/internal/store"
)

func TestSessionLimitPerUser(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{})
	create := func(u store.User) error {
		_, _, err := f.m.Create(ctx, u, "192.0.2.1")
		return err
	}
	for i := 0; i < 5; i++ {
		if err := create(f.user); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(20 * time.Minute)
	for i := 0; i < 5; i++ {
		if err := create(f.user); err != nil {
			t.Fatal(err)
		}
	}
	err := create(f.user)
	var le *SessionLimitError
	if !errors.Is(err, ErrTooManySessions) || !errors.As(err, &le) || le.Admin || le.Max != 10 {
		t.Fatalf("11th session: %v, want the per-user limit", err)
	}
	if !strings.Contains(err.Error(), "you already have 10 open sessions") || !strings.Contains(err.Error(), "30 minutes") {
		t.Errorf("message %q", err)
	}
	// Other accounts are not affected.
	if err := create(f.admin); err != nil {
		t.Errorf("another account's session: %v", err)
	}
	// Once the first five have been idle for 30 minutes they no longer count.
	f.clock.Advance(10*time.Minute - time.Nanosecond)
	if err := create(f.user); !errors.Is(err, ErrTooManySessions) {
		t.Errorf("just before the idle timeout: %v, want refused", err)
	}
	f.clock.Advance(time.Nanosecond)
	for i := 0; i < 5; i++ {
		if err := create(f.user); err != nil {
			t.Fatalf("after idle sessions ended, session %d: %v", i, err)
		}
	}
	if err := create(f.user); !errors.Is(err, ErrTooManySessions) {
		t.Errorf("over the limit again: %v", err)
	}
}

func TestSessionLimitLifetime(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{IdleTimeout: 24 * time.Hour, MaxLifetime: time.Hour, MaxSessionsPerUser: 3})
	for i := 0; i < 3; i++ {
		if _, _, err := f.m.Create(ctx, f.user, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.m.Create(ctx, f.user, ""); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("4th session: %v", err)
	}
	f.clock.Advance(time.Hour) // all three reach their lifetime
	if _, _, err := f.m.Create(ctx, f.user, ""); err != nil {
		t.Errorf("after expiry: %v", err)
	}
}

func TestSessionLimitAdmins(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{MaxSessionsPerUser: -1})
	log := audit.NewLog(f.st, f.clock)
	f.m = NewSessions(f.st, f.clock, SessionConfig{MaxSessionsPerUser: -1, Audit: log})
	admin2, err := f.st.CreateUser(ctx, store.User{Username: "admin2", Role: store.RoleAdmin, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		u := f.admin
		if i%2 == 1 {
			u = admin2
		}
		if _, _, err := f.m.Create(ctx, u, ""); err != nil {
			t.Fatalf("admin session %d: %v", i+1, err)
		}
	}
	for _, u := range []store.User{f.admin, admin2} {
		_, _, err := f.m.Create(ctx, u, "198.51.100.1")
		var le *SessionLimitError
		if !errors.As(err, &le) || !le.Admin || le.Max != 100 || !strings.Contains(err.Error(), "100 administrator sessions") {
			t.Errorf("101st admin session for %s: %v, want the administrators' limit", u.Username, err)
		}
	}
	if _, _, err := f.m.Create(ctx, f.user, ""); err != nil {
		t.Errorf("a user's session while admins are full: %v", err)
	}
	// Admin sessions idle for 5 minutes no longer count.
	f.clock.Advance(DefaultAdminIdleTimeout)
	if _, _, err := f.m.Create(ctx, f.admin, ""); err != nil {
		t.Errorf("after the admin sessions went idle: %v", err)
	}
	recs, err := f.st.ListAudit(ctx, store.AuditFilter{Action: audit.ActionSessionRefused})
	if err != nil || len(recs) != 2 || recs[0].Details["scope"] != "administrators" || recs[0].Source != "198.51.100.1" {
		t.Errorf("session-refused records = %+v, %v", recs, err)
	}
}

func TestSessionDeleteUserAudited(t *testing.T) {
	ctx := context.Background()
	f := newSessionFixture(t, SessionConfig{})
	f.m = NewSessions(f.st, f.clock, SessionConfig{Audit: audit.NewLog(f.st, f.clock)})
	for i := 0; i < 3; i++ {
		if _, _, err := f.m.Create(ctx, f.user, ""); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.m.DeleteUser(audit.WithActor(ctx, "admin"), f.user.ID)
	if err != nil || n != 3 {
		t.Fatalf("DeleteUser = %d, %v", n, err)
	}
	recs, err := f.st.ListAudit(ctx, store.AuditFilter{Action: audit.ActionSessionsEnded})
	if err != nil || len(recs) != 1 || recs[0].Actor != "admin" || recs[0].Target != "user" || recs[0].Details["count"] != "3" {
		t.Errorf("sessions-ended records = %+v, %v", recs, err)
	}
}
