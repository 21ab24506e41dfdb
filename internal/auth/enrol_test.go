package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

func newTestEnroller(t *testing.T) (*Enroller, *store.SQLite, *fakeclock.Clock) {
	t.Helper()
	st := openStore(t)
	clock := fakeclock.New(epoch)
	return NewEnroller(st, clock, EnrolConfig{Argon2: cheapArgon2}), st, clock
}

func TestEnrolCreateRedeem(t *testing.T) {
	ctx := context.Background()
	e, st, clock := newTestEnroller(t)
	tok, err := e.Create(ctx, store.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 || strings.ContainsAny(tok, "+/=") {
		t.Errorf("token %q is not 32 bytes of unpadded base64url", tok)
	}
	// The store must not hold the token itself.
	h, _ := hashToken(tok)
	if enr, err := st.EnrolmentByHash(ctx, h); err != nil || !enr.ExpiresAt.Equal(epoch.Add(DefaultEnrolmentTTL)) {
		t.Errorf("stored enrolment = %+v, %v; want expiry after the default TTL", enr, err)
	}
	if _, err := st.EnrolmentByHash(ctx, []byte(tok)); !errors.Is(err, store.ErrNotFound) {
		t.Error("the store holds the raw token")
	}

	clock.Advance(time.Hour)
	u, err := e.Redeem(ctx, tok, "Alice", "", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == 0 || u.Username != "Alice" || u.DisplayName != "Alice" || u.Role != store.RoleAdmin || !u.Enabled ||
		!u.PasswordChangedAt.Equal(clock.Now()) {
		t.Errorf("Redeem = %+v", u)
	}
	if _, err := Login(ctx, st, "alice", goodPassword); err != nil {
		t.Errorf("Login after enrolment: %v", err)
	}

	// Single use.
	if _, err := e.Redeem(ctx, tok, "bob", "Bob", goodPassword); !errors.Is(err, ErrEnrolmentInvalid) {
		t.Errorf("second Redeem error = %v, want ErrEnrolmentInvalid", err)
	}
	if _, err := e.Create(ctx, "root"); err == nil {
		t.Error("Create with an unknown role succeeded")
	}
}

func TestEnrolExpiry(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clock := fakeclock.New(epoch)
	e := NewEnroller(st, clock, EnrolConfig{TTL: time.Hour, Argon2: cheapArgon2})
	tests := []struct {
		name    string
		after   time.Duration
		wantErr error
	}{
		{"just before expiry", time.Hour - time.Nanosecond, nil},
		{"at expiry", time.Hour, ErrEnrolmentInvalid},
		{"long after", 48 * time.Hour, ErrEnrolmentInvalid},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(epoch)
			tok, err := e.Create(ctx, store.RoleUser)
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.after)
			_, err = e.Redeem(ctx, tok, fmt.Sprintf("user%d", i), "", goodPassword)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Redeem error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestEnrolRefusalsKeepToken checks that input refused before consumption
// leaves the link usable.
func TestEnrolRefusalsKeepToken(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newTestEnroller(t)
	first, err := e.Create(ctx, store.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Redeem(ctx, first, "taken", "", goodPassword); err != nil {
		t.Fatal(err)
	}
	tok, err := e.Create(ctx, store.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	var pe *PolicyError
	tests := []struct {
		name                    string
		username, display, pass string
		check                   func(error) bool
	}{
		{"weak password", "carol", "", "password", func(err error) bool { return errors.As(err, &pe) }},
		{"bad username", "-carol", "", goodPassword, func(err error) bool { return err != nil && strings.Contains(err.Error(), "username") }},
		{"control in display name", "carol", "Carol\x1b[2J", goodPassword, func(err error) bool { return err != nil && strings.Contains(err.Error(), "display name") }},
		{"bidi override in display name", "carol", "Carol\u202e", goodPassword, func(err error) bool { return err != nil }},
		{"long display name", "carol", strings.Repeat("é", MaxDisplayNameLen+1), goodPassword, func(err error) bool { return err != nil }},
		{"username taken", "TAKEN", "", goodPassword, func(err error) bool { return errors.Is(err, ErrUsernameTaken) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Redeem(ctx, tok, tt.username, tt.display, tt.pass)
			if !tt.check(err) {
				t.Errorf("Redeem error = %v", err)
			}
		})
	}
	u, err := e.Redeem(ctx, tok, "carol", "  Carol C.  ", goodPassword)
	if err != nil {
		t.Fatalf("Redeem after refusals: %v", err)
	}
	if u.DisplayName != "Carol C." || u.Role != store.RoleUser {
		t.Errorf("Redeem = %+v", u)
	}
}

func TestEnrolBadTokens(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newTestEnroller(t)
	real, err := e.Create(ctx, store.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{
		"",
		"short",
		real + "A",
		real[:42] + "!",
		strings.Repeat("A", 43), // well formed but unknown
	} {
		if _, err := e.Redeem(ctx, tok, "dave", "", goodPassword); !errors.Is(err, ErrEnrolmentInvalid) {
			t.Errorf("Redeem(%q) error = %v, want ErrEnrolmentInvalid", tok, err)
		}
	}
	// An unknown token must not reveal whether a username exists.
	if _, err := e.Redeem(ctx, real, "dave", "", goodPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Redeem(ctx, strings.Repeat("A", 43), "dave", "", goodPassword); !errors.Is(err, ErrEnrolmentInvalid) {
		t.Errorf("Redeem(unknown token, taken name) error = %v, want ErrEnrolmentInvalid", err)
	}
}

func TestEnrolConcurrentRedeem(t *testing.T) {
	ctx := context.Background()
	e, st, _ := newTestEnroller(t)
	tok, err := e.Create(ctx, store.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Redeem(ctx, tok, fmt.Sprintf("racer%d", i), "", goodPassword)
			switch {
			case err == nil:
				mu.Lock()
				ok++
				mu.Unlock()
			case !errors.Is(err, ErrEnrolmentInvalid):
				t.Errorf("Redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if n, _ := st.CountUsers(ctx, ""); ok != 1 || n != 1 {
		t.Errorf("%d redemptions succeeded and %d users exist, want 1 and 1", ok, n)
	}
}
