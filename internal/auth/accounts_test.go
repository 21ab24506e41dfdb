package auth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/audit"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

const day = 24 * time.Hour

type accountsFixture struct {
	path  string
	st    *store.SQLite
	clock *fakeclock.Clock
	acc   *Accounts
	cfg   AccountsConfig
}

// newAccounts returns Accounts with the default policies (unless cfg says
// otherwise), cheap hashing and an audit log, on a new store.
func newAccounts(t *testing.T, cfg AccountsConfig) *accountsFixture {
	t.Helper()
	f := &accountsFixture{path: filepath.Join(t.TempDir(), store.DBFileName), clock: fakeclock.New(epoch)}
	st, err := store.OpenSQLite(f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	cfg.Argon2 = cheapArgon2
	cfg.Audit = audit.NewLog(st, f.clock)
	f.cfg = cfg
	f.acc = NewAccounts(st, f.clock, cfg)
	return f
}

// user creates an enabled account whose password was set now.
func (f *accountsFixture) user(t *testing.T, name string, role store.Role, pw string) store.User {
	t.Helper()
	h, err := cheapArgon2.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	u, err := f.st.CreateUser(context.Background(), store.User{Username: name, DisplayName: name, PasswordHash: h,
		Role: role, Enabled: true, CreatedAt: now, PasswordChangedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// actions returns the audit log's actions in order.
func (f *accountsFixture) actions(t *testing.T) []string {
	t.Helper()
	recs, err := f.st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var as []string
	for _, r := range recs {
		as = append(as, r.Action)
	}
	return as
}

func countOf(items []string, s string) int {
	n := 0
	for _, it := range items {
		if it == s {
			n++
		}
	}
	return n
}

func pw(i int) string { return fmt.Sprintf("Password-%d-Abc", i) }

func TestLoginState(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, pw(0))

	tests := []struct {
		name       string
		at         time.Duration // after the password was set
		wantChange bool
	}{
		{"fresh", 0, false},
		{"59 days", 59 * day, false},
		{"just before 60 days", 60*day - time.Second, false},
		{"60 days", 60 * day, true},
		{"a year", 365 * day, true},
	}
	for _, tt := range tests {
		f.clock.Set(epoch.Add(tt.at))
		u, st, err := f.acc.Login(ctx, "Alice", pw(0))
		if err != nil || u.Username != "alice" {
			t.Fatalf("%s: Login = %+v, %v", tt.name, u, err)
		}
		if st.MustChangePassword != tt.wantChange || !st.PasswordExpiresAt.Equal(epoch.Add(60*day)) {
			t.Errorf("%s: state = %+v, want change %v", tt.name, st, tt.wantChange)
		}
		if tt.wantChange && !strings.Contains(st.Reason, "more than 60 days old") {
			t.Errorf("%s: reason %q", tt.name, st.Reason)
		}
	}
	// A required change is allowed at once, and the new password is fresh.
	if err := f.acc.ChangePassword(ctx, 1, pw(0), pw(1)); err != nil {
		t.Fatalf("ChangePassword of an expired password: %v", err)
	}
	if _, st, err := f.acc.Login(ctx, "alice", pw(1)); err != nil || st.MustChangePassword {
		t.Errorf("after the change: %+v, %v", st, err)
	}

	// MaxAge 0: never expires.
	noAge := DefaultPasswordPolicy()
	noAge.MaxAge = 0
	g := newAccounts(t, AccountsConfig{Policy: &noAge})
	g.user(t, "bob", store.RoleUser, pw(0))
	g.clock.Advance(1000 * day)
	if _, st, err := g.acc.Login(ctx, "bob", pw(0)); err != nil || st.MustChangePassword || !st.PasswordExpiresAt.IsZero() {
		t.Errorf("MaxAge 0: %+v, %v", st, err)
	}
}

func TestChangePasswordHistory(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t, AccountsConfig{})
	u := f.user(t, "alice", store.RoleUser, pw(0))
	for i := 1; i <= 5; i++ {
		f.clock.Advance(10 * day)
		if err := f.acc.ChangePassword(ctx, u.ID, pw(i-1), pw(i)); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	f.clock.Advance(10 * day)
	// The current password (5) and the four before it are the last 5.
	for i := 1; i <= 5; i++ {
		err := f.acc.ChangePassword(ctx, u.ID, pw(5), pw(i))
		var perr *PolicyError
		if !errors.As(err, &perr) || !strings.Contains(err.Error(), "not among your last 5 passwords") {
			t.Errorf("reusing password %d: error = %v, want the history refusal", i, err)
		}
	}
	// The sixth most recent is allowed again.
	if err := f.acc.ChangePassword(ctx, u.ID, pw(5), pw(0)); err != nil {
		t.Errorf("reusing the 6th last password: %v", err)
	}
	if h, _ := f.st.PasswordHistory(ctx, u.ID, 100); len(h) != 4 {
		t.Errorf("%d hashes kept in history, want 4", len(h))
	}
	acts := f.actions(t)
	if countOf(acts, audit.ActionPasswordChanged) != 6 || countOf(acts, audit.ActionPasswordRefused) != 5 {
		t.Errorf("audit actions = %v", acts)
	}
}

func TestChangePasswordRefusals(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t, AccountsConfig{})
	u := f.user(t, "alice", store.RoleUser, pw(0))
	f.clock.Advance(10 * day)
	if err := f.acc.ChangePassword(ctx, u.ID, pw(0), pw(1)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		advance  time.Duration
		old, new string
		want     string // part of the error; "" for success
	}{
		{"min age", 9*day + 23*time.Hour, pw(1), pw(2), "you changed your password less than 10 days ago"},
		{"wrong current", time.Hour, pw(0), pw(2), ErrWrongPassword.Error()},
		{"too short", 0, pw(1), "Ab1!", "at least 12"},
		{"no special", 0, pw(1), "Abcdefghijk1", "a special character"},
		{"same as current", 0, pw(1), pw(1), "last 5"},
		{"ok", 0, pw(1), pw(2), ""},
		{"min age again", time.Minute, pw(2), pw(3), "less than 10 days ago"},
	}
	for _, tt := range tests {
		f.clock.Advance(tt.advance)
		err := f.acc.ChangePassword(ctx, u.ID, tt.old, tt.new)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want %q", tt.name, err, tt.want)
		}
	}
	if err := f.acc.ChangePassword(ctx, 4242, pw(1), pw(2)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}

func TestResetPassword(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t, AccountsConfig{})
	admin := f.user(t, "root", store.RoleAdmin, pw(100))
	alice := f.user(t, "alice", store.RoleUser, pw(0))
	sessions := NewSessions(f.st, f.clock, SessionConfig{})
	if _, _, err := sessions.Create(ctx, alice, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	// Lock alice out first; the reset clears it.
	for i := 0; i < 10; i++ {
		f.acc.Login(ctx, "alice", "wrong")
		f.clock.Advance(time.Minute)
	}
	if until, _ := f.acc.LockedUntil(ctx, "alice"); until.IsZero() {
		t.Fatal("alice is not locked")
	}

	off := admin
	off.Enabled = false
	refusals := []struct {
		name  string
		actor store.User
		pw    string
		want  error
	}{
		{"not an admin", alice, pw(1), ErrNotAdmin},
		{"disabled admin", off, pw(1), ErrNotAdmin},
		{"own password", admin, pw(1), ErrOwnPassword},
	}
	for _, tt := range refusals {
		target := alice.ID
		if tt.name == "own password" {
			target = admin.ID
		}
		if err := f.acc.ResetPassword(ctx, tt.actor, target, tt.pw); !errors.Is(err, tt.want) {
			t.Errorf("%s: error = %v, want %v", tt.name, err, tt.want)
		}
	}
	var perr *PolicyError
	if err := f.acc.ResetPassword(ctx, admin, alice.ID, pw(0)); !errors.As(err, &perr) {
		t.Errorf("reset to the current password: %v, want a history refusal", err)
	}
	if err := f.acc.ResetPassword(ctx, admin, alice.ID, "short"); !errors.As(err, &perr) {
		t.Errorf("reset to a short password: %v, want a policy refusal", err)
	}

	// Within the minimum age: an administrator's reset is not bound by it.
	if err := f.acc.ResetPassword(ctx, admin, alice.ID, pw(1)); err != nil {
		t.Fatalf("ResetPassword: %v", err)
	}
	if n, _ := f.st.CountSessions(ctx, store.SessionFilter{UserID: alice.ID, Now: f.clock.Now()}); n != 0 {
		t.Errorf("%d sessions left after reset, want 0", n)
	}
	u, st, err := f.acc.Login(ctx, "alice", pw(1))
	if err != nil || !u.MustChangePassword || !st.MustChangePassword || !strings.Contains(st.Reason, "administrator has reset") {
		t.Fatalf("login after reset = %+v, %+v, %v", u, st, err)
	}
	// The required change is allowed at once, then the minimum age holds.
	if err := f.acc.ChangePassword(ctx, alice.ID, pw(1), pw(2)); err != nil {
		t.Fatalf("required change: %v", err)
	}
	if _, st, err := f.acc.Login(ctx, "alice", pw(2)); err != nil || st.MustChangePassword {
		t.Errorf("after the required change: %+v, %v", st, err)
	}
	if err := f.acc.ChangePassword(ctx, alice.ID, pw(2), pw(3)); !errors.As(err, &perr) {
		t.Errorf("second change at once: %v, want the minimum age refusal", err)
	}
	if acts := f.actions(t); countOf(acts, audit.ActionPasswordReset) != 1 {
		t.Errorf("audit actions = %v", acts)
	}
}

type attempt struct {
	advance time.Duration
	right   bool // the right password, rather than a wrong one
	want    string
	wait    time.Duration // for "delay" and "locked"
}

// outcome classifies a Login result.
func outcome(err error) (string, time.Duration) {
	var te *ThrottleError
	switch {
	case err == nil:
		return "ok", 0
	case errors.Is(err, ErrBadCredentials):
		return "bad", 0
	case errors.As(err, &te) && te.Locked:
		return "locked", te.Wait
	case errors.As(err, &te):
		return "delay", te.Wait
	}
	return "error: " + err.Error(), 0
}

func run(t *testing.T, f *accountsFixture, username string, script []attempt) {
	t.Helper()
	for i, a := range script {
		f.clock.Advance(a.advance)
		p := "Wrong-Password-1"
		if a.right {
			p = goodPassword
		}
		_, _, err := f.acc.Login(context.Background(), username, p)
		got, wait := outcome(err)
		if got != a.want || wait != a.wait {
			t.Fatalf("%s attempt %d (+%v, right %v) = %s %v (%v); want %s %v", username, i+1, a.advance, a.right, got, wait, err, a.want, a.wait)
		}
	}
}

func wrongs(n int) []attempt {
	s := make([]attempt, n)
	for i := range s {
		s[i] = attempt{want: "bad"}
	}
	return s
}

// spaced returns n wrong attempts a minute apart: the delays never bite,
// and the 10th locks.
func spaced(n int) []attempt {
	s := wrongs(n)
	for i := range s {
		s[i].advance = time.Minute
	}
	return s
}

func TestLockoutProgression(t *testing.T) {
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, goodPassword)
	script := append(wrongs(5), // failures 1-5; the 6th attempt waits 1 s
		attempt{right: true, want: "delay", wait: time.Second}, // refused unchecked
		attempt{advance: 999 * time.Millisecond, want: "delay", wait: time.Millisecond},
		attempt{advance: time.Millisecond, want: "bad"}, // failure 6; wait 2 s
		attempt{advance: time.Second, want: "delay", wait: time.Second},
		attempt{advance: time.Second, want: "bad"},      // failure 7; wait 4 s
		attempt{advance: 4 * time.Second, want: "bad"},  // failure 8; wait 8 s
		attempt{advance: 8 * time.Second, want: "bad"},  // failure 9; wait 16 s
		attempt{advance: 16 * time.Second, want: "bad"}, // failure 10: locked for 15 min
		attempt{right: true, want: "locked", wait: 15 * time.Minute},
		attempt{advance: 10 * time.Minute, want: "locked", wait: 5 * time.Minute}, // hammering does not extend
		attempt{advance: 4*time.Minute + 59*time.Second, right: true, want: "locked", wait: time.Second},
		attempt{advance: time.Second, right: true, want: "ok"}, // the lock always ends
	)
	// A success clears the count: five more failures before any delay.
	script = append(script, wrongs(5)...)
	script = append(script, attempt{want: "delay", wait: time.Second})
	run(t, f, "alice", script)

	acts := f.actions(t)
	if countOf(acts, audit.ActionLoginFailed) != 15 || countOf(acts, audit.ActionAccountLocked) != 1 || countOf(acts, audit.ActionLogin) != 1 {
		t.Errorf("audit actions = %v", acts)
	}
	if res, err := audit.Verify(context.Background(), f.st); err != nil || res.Records != int64(len(acts)) {
		t.Errorf("audit.Verify = %+v, %v", res, err)
	}
}

func TestLockoutSuccessResets(t *testing.T) {
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, goodPassword)
	script := append(wrongs(4), attempt{right: true, want: "ok"})
	script = append(script, wrongs(5)...)
	run(t, f, "alice", append(script, attempt{want: "delay", wait: time.Second}))
}

func TestLockoutWindow(t *testing.T) {
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, goodPassword)
	// 15 minutes without a failure start a new run...
	script := append(wrongs(4), attempt{advance: 15 * time.Minute, want: "bad"})
	script = append(script, wrongs(4)...)
	script = append(script, attempt{want: "delay", wait: time.Second})
	run(t, f, "alice", script)
	// ...but a failure a little earlier continues the run.
	g := newAccounts(t, AccountsConfig{})
	g.user(t, "alice", store.RoleUser, goodPassword)
	script = append(wrongs(4), attempt{advance: 15*time.Minute - time.Second, want: "bad"})
	run(t, g, "alice", append(script, attempt{want: "delay", wait: time.Second}))
}

func TestLockoutUnknownUserAlike(t *testing.T) {
	script := append(wrongs(5),
		attempt{want: "delay", wait: time.Second},
		attempt{advance: time.Second, want: "bad"},
		attempt{advance: 2 * time.Second, want: "bad"},
		attempt{advance: 4 * time.Second, want: "bad"},
		attempt{advance: 8 * time.Second, want: "bad"},
		attempt{advance: 16 * time.Second, want: "bad"},
		attempt{want: "locked", wait: 15 * time.Minute},
		attempt{advance: 15 * time.Minute, want: "bad"},
	)
	for _, name := range []string{"alice", "ghost", "Ghost-With-Case", strings.Repeat("x", 500)} {
		t.Run(name[:min(len(name), 20)], func(t *testing.T) {
			f := newAccounts(t, AccountsConfig{})
			f.user(t, "alice", store.RoleUser, goodPassword)
			run(t, f, name, script)
			recs, _ := f.st.ListAudit(context.Background(), store.AuditFilter{Action: audit.ActionLoginFailed})
			if len(recs) != 11 {
				t.Fatalf("%d login-failed records, want 11", len(recs))
			}
			if name != "alice" && (recs[0].Target != "" || recs[0].Actor != "anonymous" || recs[0].Details["account"] != "unknown") {
				t.Errorf("unknown user recorded as %+v; the typed name must not be kept", recs[0])
			}
		})
	}
	// Case does not make a new key.
	f := newAccounts(t, AccountsConfig{})
	run(t, f, "ghost", wrongs(5))
	run(t, f, "GHOST", []attempt{{want: "delay", wait: time.Second}})
}

func TestLockoutSurvivesRestart(t *testing.T) {
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, goodPassword)
	for i := 0; i < 10; i++ {
		f.clock.Advance(time.Minute)
		f.acc.Login(context.Background(), "alice", "wrong")
	}
	f.st.Close()
	st, err := store.OpenSQLite(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f.st = st
	f.cfg.Audit = audit.NewLog(st, f.clock)
	f.acc = NewAccounts(st, f.clock, f.cfg)
	run(t, f, "alice", []attempt{
		{advance: time.Minute, right: true, want: "locked", wait: 14 * time.Minute},
		{advance: 14 * time.Minute, right: true, want: "ok"},
	})
}

func TestLockoutConcurrent(t *testing.T) {
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, goodPassword)
	const n = 20
	results := make(chan string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := f.acc.Login(context.Background(), "alice", "wrong")
			o, _ := outcome(err)
			results <- o
		}()
	}
	wg.Wait()
	close(results)
	count := map[string]int{}
	for o := range results {
		count[o]++
	}
	// Every attempt is counted before its password is checked: exactly the
	// five allowed before the first delay get through.
	if count["bad"] != 5 || count["delay"] != n-5 {
		t.Errorf("outcomes = %v; want 5 bad and %d delayed", count, n-5)
	}
}

func TestLockoutWrongCurrentPassword(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t, AccountsConfig{})
	u := f.user(t, "alice", store.RoleUser, goodPassword)
	for i := 0; i < 10; i++ {
		f.clock.Advance(time.Minute)
		if err := f.acc.ChangePassword(ctx, u.ID, "wrong", pw(1)); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if err := f.acc.ChangePassword(ctx, u.ID, goodPassword, pw(1)); !errors.Is(err, ErrLoginThrottled) {
		t.Errorf("change while locked: %v, want ErrLoginThrottled", err)
	}
	run(t, f, "alice", []attempt{{right: true, want: "locked", wait: 15 * time.Minute}})

	admin := f.user(t, "root", store.RoleAdmin, pw(9))
	if err := f.acc.Unlock(ctx, u, "alice"); !errors.Is(err, ErrNotAdmin) {
		t.Errorf("Unlock by a user: %v", err)
	}
	if err := f.acc.Unlock(ctx, admin, "alice"); err != nil {
		t.Fatal(err)
	}
	run(t, f, "alice", []attempt{{right: true, want: "ok"}})
	if acts := f.actions(t); countOf(acts, audit.ActionAccountUnlocked) != 1 || countOf(acts, audit.ActionAccountLocked) != 1 {
		t.Errorf("audit actions = %v", acts)
	}
}

func TestLockoutDisabledAndPrune(t *testing.T) {
	ctx := context.Background()
	none := LockoutPolicy{}
	f := newAccounts(t, AccountsConfig{Lockout: &none})
	f.user(t, "alice", store.RoleUser, goodPassword)
	run(t, f, "alice", append(wrongs(30), attempt{right: true, want: "ok"}))

	g := newAccounts(t, AccountsConfig{})
	run(t, g, "ghost1", wrongs(3))
	run(t, g, "ghost2", spaced(10))
	if n, err := g.acc.PruneThrottles(ctx); err != nil || n != 0 {
		t.Errorf("PruneThrottles at once = %d, %v; want 0", n, err)
	}
	g.clock.Advance(15*time.Minute + time.Second)
	// ghost1's run is over; ghost2's lock has just ended but it is kept
	// until a window after.
	if n, err := g.acc.PruneThrottles(ctx); err != nil || n != 1 {
		t.Errorf("PruneThrottles = %d, %v; want 1", n, err)
	}
	g.clock.Advance(15 * time.Minute)
	if n, err := g.acc.PruneThrottles(ctx); err != nil || n != 1 {
		t.Errorf("second PruneThrottles = %d, %v; want 1", n, err)
	}
}

func TestLoginBadAccounts(t *testing.T) {
	ctx := context.Background()
	f := newAccounts(t, AccountsConfig{})
	h, _ := cheapArgon2.Hash(goodPassword)
	for _, u := range []store.User{
		{Username: "off", PasswordHash: h, Role: store.RoleUser},
		{Username: "nopw", Role: store.RoleUser, Enabled: true},
	} {
		if _, err := f.st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.acc.Login(ctx, u.Username, goodPassword); err != ErrBadCredentials {
			t.Errorf("Login(%s) = %v, want exactly ErrBadCredentials", u.Username, err)
		}
	}
	if _, err := f.st.CreateUser(ctx, store.User{Username: "corrupt", PasswordHash: "$argon2id$junk", Role: store.RoleUser, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.acc.Login(ctx, "corrupt", goodPassword); !errors.Is(err, ErrMalformedHash) {
		t.Errorf("Login with a corrupt hash = %v, want ErrMalformedHash", err)
	}
	// The source address reaches the audit log.
	f.user(t, "alice", store.RoleUser, goodPassword)
	if _, _, err := f.acc.Login(audit.WithSource(ctx, "203.0.113.9"), "alice", goodPassword); err != nil {
		t.Fatal(err)
	}
	recs, _ := f.st.ListAudit(ctx, store.AuditFilter{Action: audit.ActionLogin})
	if len(recs) != 1 || recs[0].Source != "203.0.113.9" || recs[0].Actor != "alice" || recs[0].Outcome != audit.OutcomeSuccess {
		t.Errorf("login record = %+v", recs)
	}
}

type failingRecorder struct{}

func (failingRecorder) Record(context.Context, audit.Event) error { return errors.New("disk full") }

func TestLoginRefusedWhenAuditFails(t *testing.T) {
	f := newAccounts(t, AccountsConfig{})
	f.user(t, "alice", store.RoleUser, goodPassword)
	cfg := f.cfg
	cfg.Audit = failingRecorder{}
	acc := NewAccounts(f.st, f.clock, cfg)
	if u, _, err := acc.Login(context.Background(), "alice", goodPassword); err == nil || u.ID != 0 {
		t.Errorf("Login with a failing audit log = %+v, %v; want refused", u, err)
	}
}

func TestThrottleKey(t *testing.T) {
	long := strings.Repeat("a", 200)
	tests := []struct{ a, b string }{
		{"Alice", "alice"},
		{"ALICE@EXAMPLE.ORG", "alice@example.org"},
		{long, long[:store.MaxUsernameLen+1] + "zzz"},
	}
	for _, tt := range tests {
		if throttleKey(tt.a) != throttleKey(tt.b) {
			t.Errorf("throttleKey(%q) != throttleKey(%q)", tt.a, tt.b)
		}
	}
	if throttleKey("alice") == throttleKey("alicf") || throttleKey(long[:64]) == throttleKey(long[:65]) {
		t.Error("different usernames share a key")
	}
}

func TestLockoutDelayCap(t *testing.T) {
	p := DefaultLockoutPolicy()
	p.LockAfter = 0
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for k, w := range want {
		if got := p.delay(k); got != w {
			t.Errorf("delay(%d) = %v, want %v", k, got, w)
		}
	}
	if got := p.delay(1000); got != time.Minute {
		t.Errorf("delay(1000) = %v, want the cap", got)
	}
}
