package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

func TestPasswordPolicyCheck(t *testing.T) {
	def := DefaultPasswordPolicy()
	lax := PasswordPolicy{MinLength: 8}
	digitsOnly := PasswordPolicy{MinLength: 4, RequireDigit: true}
	zero := PasswordPolicy{}
	tests := []struct {
		name    string
		p       PasswordPolicy
		pw      string
		mention string // "" when accepted
	}{
		{"default ok", def, goodPassword, ""},
		{"default short", def, "Aa1!", "at least 12"},
		{"default classes", def, "abcdefghijklm", "an upper-case letter, a digit and a special character"},
		{"lax ok", lax, "abcdefgh", ""},
		{"lax short", lax, "abcdefg", "at least 8"},
		{"digit required", digitsOnly, "abcd", "a digit"},
		{"digit given", digitsOnly, "abc1", ""},
		{"zero policy still needs one character", zero, "", "at least 1"},
		{"zero policy", zero, "x", ""},
		{"upper bound always", lax, strings.Repeat("a", MaxPasswordLen+1), "at most 256"},
		{"UTF-8 always", lax, "abcdefgh\xff", "UTF-8"},
	}
	for _, tt := range tests {
		err := tt.p.Check(tt.pw)
		if tt.mention == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var pe *PolicyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: error = %v, want a *PolicyError mentioning %q", tt.name, err, tt.mention)
		}
	}
	if def.MinLength != 12 || !def.RequireLower || !def.RequireUpper || !def.RequireDigit || !def.RequireSpecial ||
		def.History != 5 || def.MaxAge != 60*24*time.Hour || def.MinAge != 10*24*time.Hour {
		t.Errorf("DefaultPasswordPolicy = %+v", def)
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{10 * day, "10 days"},
		{day, "1 day"},
		{36 * time.Hour, "36 hours"},
		{15 * time.Minute, "15 minutes"},
		{time.Second, "1 second"},
		{1500 * time.Millisecond, "2 seconds"},
		{time.Millisecond, "1 second"},
		{90 * time.Second, "90 seconds"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestThrottleErrorMessages(t *testing.T) {
	until := time.Date(2030, 1, 1, 12, 30, 0, 0, time.UTC)
	locked := (&ThrottleError{Locked: true, Until: until, Wait: 15 * time.Minute}).Error()
	if !strings.Contains(locked, "locked until 12:30 UTC (in 15 minutes)") || !strings.Contains(locked, "administrator") {
		t.Errorf("lock message %q", locked)
	}
	delay := (&ThrottleError{Until: until, Wait: 4 * time.Second}).Error()
	if !strings.Contains(delay, "wait 4 seconds") {
		t.Errorf("delay message %q", delay)
	}
}

func FuzzThrottleKey(f *testing.F) {
	f.Add("alice")
	f.Add("ALICE@Example.org")
	f.Add(strings.Repeat("é", 100))
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, name string) {
		k := throttleKey(name)
		if !strings.HasPrefix(k, "user:") || len(k) > len("user:")+65 {
			t.Fatalf("throttleKey(%q) = %q", name, k)
		}
		if throttleKey(strings.ToUpper(name)) != throttleKey(strings.ToLower(name)) && isASCII(name) {
			t.Fatalf("throttleKey is case-sensitive for %q", name)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestEnrolUsesPolicy(t *testing.T) {
	ctx := context.Background()
	lax := PasswordPolicy{MinLength: 8}
	e := NewEnroller(openStore(t), fakeclock.New(epoch), EnrolConfig{Argon2: cheapArgon2, Policy: &lax})
	tok, err := e.Create(ctx, store.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Redeem(ctx, tok, "bob", "", "short"); err == nil {
		t.Error("Redeem with a password below the configured minimum succeeded")
	}
	if _, err := e.Redeem(ctx, tok, "bob", "", "abcdefgh"); err != nil {
		t.Errorf("Redeem under a lax policy: %v", err)
	}
}
