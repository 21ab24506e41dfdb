package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/store"
)

// Errors of Accounts. Their messages are meant for the person at the
// keyboard.
var (
	// ErrWrongPassword refuses a password change whose current password is
	// wrong.
	ErrWrongPassword = errors.New("the current password is incorrect")
	// ErrNotAdmin refuses an administrator's action to someone who is not
	// an enabled administrator.
	ErrNotAdmin = errors.New("only an administrator can do this")
	// ErrOwnPassword refuses an administrator's reset of their own
	// password, which must go through ChangePassword and its check of the
	// current password.
	ErrOwnPassword = errors.New("to change your own password, use the password change, which asks for your current password")
)

// AccountsConfig configures Accounts.
type AccountsConfig struct {
	// Policy is the password policy; nil means DefaultPasswordPolicy.
	Policy *PasswordPolicy
	// Lockout is the failed-login rule; nil means DefaultLockoutPolicy.
	Lockout *LockoutPolicy
	// Argon2 are the parameters of new password hashes; zero means
	// DefaultArgon2.
	Argon2 Argon2Params
	// Audit receives the security events; nil records nothing.
	Audit audit.Recorder
}

// Accounts signs users in under the lockout rule and changes passwords
// under the password policy, recording what happens in the audit log.
//
// Audit events carry the client address from audit.WithSource on the
// context. If the Recorder fails, the method returns its error: a login is
// then refused, and a password change or reset that was already stored
// stays stored.
type Accounts struct {
	store   store.Store
	clock   clock.Clock
	policy  PasswordPolicy
	lockout LockoutPolicy
	argon2  Argon2Params
	audit   audit.Recorder
	// dummy is verified in place of a missing hash; it has the costs of
	// argon2, so that answers take as long for unknown users.
	dummy string
}

// NewAccounts returns Accounts on st. A nil clock means clock.System.
func NewAccounts(st store.Store, clk clock.Clock, cfg AccountsConfig) *Accounts {
	a := &Accounts{store: st, clock: clock.Or(clk), policy: DefaultPasswordPolicy(), lockout: DefaultLockoutPolicy(),
		argon2: DefaultArgon2, audit: cfg.Audit}
	if cfg.Policy != nil {
		a.policy = *cfg.Policy
	}
	if cfg.Lockout != nil {
		a.lockout = *cfg.Lockout
	}
	if cfg.Argon2 != (Argon2Params{}) {
		a.argon2 = cfg.Argon2
	}
	if a.audit == nil {
		a.audit = audit.Discard{}
	}
	a.dummy = encodePHC(a.argon2, make([]byte, a.argon2.SaltLen), make([]byte, a.argon2.KeyLen))
	return a
}

// Policy returns the password policy in force.
func (a *Accounts) Policy() PasswordPolicy { return a.policy }

// LoginState tells what a user who just signed in must do first.
type LoginState struct {
	// MustChangePassword: the user must choose a new password (with
	// ChangePassword) before doing anything else, because an administrator
	// reset it or it is older than the policy's MaxAge.
	MustChangePassword bool
	// Reason says why, as a sentence for the user; empty when no change is
	// required.
	Reason string
	// PasswordExpiresAt is when the password reaches MaxAge; zero if
	// passwords do not expire.
	PasswordExpiresAt time.Time
}

// Login checks a username (case-insensitive) and password under the lockout
// rule (see LockoutPolicy) and returns the account and whether it must
// change its password now.
//
// Unknown users, wrong passwords, accounts without a password and disabled
// accounts all give ErrBadCredentials; an attempt during a delay or lock
// gives a *ThrottleError (errors.Is ErrLoginThrottled) without the password
// being looked at. Both answers are the same for usernames with and without
// an account. Any other error is a failure of the store, the audit log or a
// corrupt stored hash.
func (a *Accounts) Login(ctx context.Context, username, password string) (store.User, LoginState, error) {
	now := a.clock.Now().UTC()
	key := throttleKey(username)
	refused, lockedNow, err := a.beginAttempt(ctx, key, now)
	if err != nil {
		return store.User{}, LoginState{}, fmt.Errorf("login: %w", err)
	}
	if refused != nil {
		// Not recorded: the lock itself was, and recording every refused
		// attempt would let a client fill the log.
		return store.User{}, LoginState{}, refused
	}
	u, known, ok, err := a.checkPassword(ctx, username, password)
	if err != nil {
		return store.User{}, LoginState{}, fmt.Errorf("login: %w", err)
	}
	if !ok {
		err := a.recordFailure(ctx, u, known, username, audit.ActionLoginFailed, "bad credentials", lockedNow, now)
		if err != nil {
			return store.User{}, LoginState{}, fmt.Errorf("login: %w", err)
		}
		return store.User{}, LoginState{}, ErrBadCredentials
	}
	if err := a.clearThrottle(ctx, key); err != nil {
		return store.User{}, LoginState{}, fmt.Errorf("login: %w", err)
	}
	state := a.loginState(u, now)
	details := map[string]string{"role": string(u.Role)}
	if state.MustChangePassword {
		details["must-change-password"] = state.Reason
	}
	if err := a.record(ctx, audit.Event{Time: now, Actor: u.Username, Action: audit.ActionLogin,
		Target: u.Username, Outcome: audit.OutcomeSuccess, Details: details}); err != nil {
		return store.User{}, LoginState{}, fmt.Errorf("login: %w", err)
	}
	return u, state, nil
}

// beginAttempt counts an attempt under key, or refuses it.
func (a *Accounts) beginAttempt(ctx context.Context, key string, now time.Time) (*ThrottleError, bool, error) {
	var (
		refused   *ThrottleError
		lockedNow bool
	)
	_, err := a.store.UpdateLoginThrottle(ctx, key, func(t store.LoginThrottle) store.LoginThrottle {
		var next store.LoginThrottle
		next, refused, lockedNow = a.lockout.begin(t, now)
		return next
	})
	if err != nil {
		return nil, false, err
	}
	return refused, lockedNow, nil
}

// clearThrottle forgives the attempts counted under key.
func (a *Accounts) clearThrottle(ctx context.Context, key string) error {
	if err := a.store.DeleteLoginThrottle(ctx, key); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// checkPassword looks the user up and verifies the password, spending the
// same work whether or not the user exists. It returns the user (if known),
// whether it is known, and whether the login may proceed.
func (a *Accounts) checkPassword(ctx context.Context, username, password string) (store.User, bool, bool, error) {
	u, err := a.store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = VerifyPassword(a.dummy, password)
		return store.User{}, false, false, nil
	}
	if err != nil {
		return store.User{}, false, false, err
	}
	if u.PasswordHash == "" {
		_, _ = VerifyPassword(a.dummy, password)
		return u, true, false, nil
	}
	ok, err := VerifyPassword(u.PasswordHash, password)
	if err != nil {
		return store.User{}, true, false, fmt.Errorf("user %d: %w", u.ID, err)
	}
	return u, true, ok && u.Enabled, nil
}

// recordFailure records a failed attempt and, if it locked the username, the
// lock. The target of an unknown username is left empty: what people type
// there is sometimes their password.
func (a *Accounts) recordFailure(ctx context.Context, u store.User, known bool, username, action, reason string, lockedNow bool, now time.Time) error {
	target := u.Username
	details := map[string]string{"reason": reason}
	if !known {
		details["account"] = "unknown"
	}
	actor := audit.ActorFrom(ctx)
	switch {
	case actor != "":
	case known:
		actor = target
	default:
		actor = "anonymous"
	}
	if err := a.record(ctx, audit.Event{Time: now, Actor: actor, Action: action, Target: target,
		Outcome: audit.OutcomeFailure, Details: details}); err != nil {
		return err
	}
	if !lockedNow {
		return nil
	}
	details = map[string]string{
		"failures": strconv.Itoa(a.lockout.LockAfter),
		"until":    now.Add(a.lockout.LockDuration).Format(time.RFC3339),
	}
	if !known {
		details["account"] = "unknown"
	}
	return a.record(ctx, audit.Event{Time: now, Actor: audit.ActorSystem, Action: audit.ActionAccountLocked,
		Target: target, Outcome: audit.OutcomeInfo, Details: details})
}

// record sends e to the Recorder with the context's source address.
func (a *Accounts) record(ctx context.Context, e audit.Event) error {
	if e.Source == "" {
		e.Source = audit.SourceFrom(ctx)
	}
	if err := a.audit.Record(ctx, e); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// passwordSetAt is when u's password was set, CreatedAt if not recorded.
func passwordSetAt(u store.User) time.Time {
	if !u.PasswordChangedAt.IsZero() {
		return u.PasswordChangedAt
	}
	return u.CreatedAt
}

// loginState tells whether u must change the password at now.
func (a *Accounts) loginState(u store.User, now time.Time) LoginState {
	var s LoginState
	if u.Source != "" && u.Source != store.SourceLocal {
		// The directory's or provider's own policy applies.
		return s
	}
	if a.policy.MaxAge > 0 {
		s.PasswordExpiresAt = passwordSetAt(u).Add(a.policy.MaxAge)
	}
	switch {
	case u.MustChangePassword:
		s.MustChangePassword = true
		s.Reason = "an administrator has reset your password; choose a new one to continue"
	case !s.PasswordExpiresAt.IsZero() && !now.Before(s.PasswordExpiresAt):
		s.MustChangePassword = true
		s.Reason = fmt.Sprintf("your password is more than %s old; choose a new one to continue", humanDuration(a.policy.MaxAge))
	}
	return s
}

// ChangePassword sets a new password chosen by the user, who gives the
// current one. Wrong current passwords count as failed logins under the
// lockout rule (so a stolen session cannot be used to guess the password)
// and give ErrWrongPassword, or a *ThrottleError during a delay or lock.
// The new password must satisfy the policy, must not be one of the last
// History passwords and, unless a change is required (see LoginState), the
// current one must be at least MinAge old; refusals are *PolicyError.
//
// The user's sessions are left alone: callers usually end the others
// (Sessions.DeleteUser, then Create for the current client).
func (a *Accounts) ChangePassword(ctx context.Context, userID int64, oldPassword, newPassword string) error {
	now := a.clock.Now().UTC()
	u, err := a.store.UserByID(ctx, userID)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if !u.Enabled {
		return fmt.Errorf("change password of user %d: the account is disabled", u.ID)
	}
	if u.Source != "" && u.Source != store.SourceLocal {
		return ErrDirectoryAccount
	}
	key := throttleKey(u.Username)
	refused, lockedNow, err := a.beginAttempt(ctx, key, now)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if refused != nil {
		return refused
	}
	ok := false
	if u.PasswordHash == "" {
		_, _ = VerifyPassword(a.dummy, oldPassword)
	} else if ok, err = VerifyPassword(u.PasswordHash, oldPassword); err != nil {
		return fmt.Errorf("change password of user %d: %w", u.ID, err)
	}
	if !ok {
		ctx := audit.WithActor(ctx, u.Username)
		if err := a.recordFailure(ctx, u, true, u.Username, audit.ActionPasswordRefused, "wrong current password", lockedNow, now); err != nil {
			return fmt.Errorf("change password: %w", err)
		}
		return ErrWrongPassword
	}
	if err := a.clearThrottle(ctx, key); err != nil {
		return fmt.Errorf("change password: %w", err)
	}

	refuse := func(perr error) error {
		if err := a.record(ctx, audit.Event{Time: now, Actor: u.Username, Action: audit.ActionPasswordRefused,
			Target: u.Username, Outcome: audit.OutcomeFailure, Details: map[string]string{"reason": perr.Error()}}); err != nil {
			return fmt.Errorf("change password: %w", err)
		}
		return perr
	}
	if st := a.loginState(u, now); !st.MustChangePassword && a.policy.MinAge > 0 {
		if next := passwordSetAt(u).Add(a.policy.MinAge); now.Before(next) {
			return refuse(&PolicyError{fmt.Sprintf(
				"you changed your password less than %s ago; you can change it again from %s, or ask an administrator to reset it",
				humanDuration(a.policy.MinAge), next.Format("2 January 2006 15:04 MST"))})
		}
	}
	if err := a.policy.Check(newPassword); err != nil {
		return refuse(err)
	}
	if err := a.checkHistory(ctx, u, newPassword); err != nil {
		var perr *PolicyError
		if errors.As(err, &perr) {
			return refuse(err)
		}
		return fmt.Errorf("change password: %w", err)
	}
	if err := a.setPassword(ctx, u, newPassword, now, false); err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if err := a.record(ctx, audit.Event{Time: now, Actor: u.Username, Action: audit.ActionPasswordChanged,
		Target: u.Username, Outcome: audit.OutcomeSuccess}); err != nil {
		return fmt.Errorf("change password (it was changed): %w", err)
	}
	return nil
}

// ResetPassword sets a new password for another account on the authority
// of actor, an enabled administrator. The password must satisfy the policy
// and not be among the account's last History passwords; the minimum age
// does not apply (an administrator resets a password when the user cannot
// wait). The user must change it at the next login; the account's sessions
// are ended and any lockout cleared. An administrator's own password is
// changed with ChangePassword (ErrOwnPassword).
func (a *Accounts) ResetPassword(ctx context.Context, actor store.User, userID int64, newPassword string) error {
	now := a.clock.Now().UTC()
	if actor.Role != store.RoleAdmin || !actor.Enabled {
		return ErrNotAdmin
	}
	if actor.ID == userID {
		return ErrOwnPassword
	}
	u, err := a.store.UserByID(ctx, userID)
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	if err := a.policy.Check(newPassword); err != nil {
		return err
	}
	if err := a.checkHistory(ctx, u, newPassword); err != nil {
		return err
	}
	if err := a.setPassword(ctx, u, newPassword, now, true); err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	n, err := a.store.DeleteUserSessions(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("reset password: end sessions: %w", err)
	}
	if err := a.clearThrottle(ctx, throttleKey(u.Username)); err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	if err := a.record(ctx, audit.Event{Time: now, Actor: actor.Username, Action: audit.ActionPasswordReset,
		Target: u.Username, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"sessions-ended": strconv.FormatInt(n, 10)}}); err != nil {
		return fmt.Errorf("reset password (it was reset): %w", err)
	}
	return nil
}

// checkHistory returns a *PolicyError if pw is the current password or one
// of the retired ones the policy remembers.
func (a *Accounts) checkHistory(ctx context.Context, u store.User, pw string) error {
	if a.policy.History <= 0 {
		return nil
	}
	hashes := []string{u.PasswordHash}
	old, err := a.store.PasswordHistory(ctx, u.ID, a.policy.History-1)
	if err != nil {
		return err
	}
	hashes = append(hashes, old...)
	for _, h := range hashes {
		if h == "" {
			continue
		}
		// A hash this package cannot read cannot match; skip it rather
		// than block every change.
		if ok, err := VerifyPassword(h, pw); err == nil && ok {
			return &PolicyError{fmt.Sprintf(
				"this password was used recently; choose one that is not among your last %d passwords", a.policy.History)}
		}
	}
	return nil
}

// setPassword hashes pw and stores it as u's password.
func (a *Accounts) setPassword(ctx context.Context, u store.User, pw string, now time.Time, mustChange bool) error {
	hash, err := a.argon2.Hash(pw)
	if err != nil {
		return err
	}
	return a.store.ReplacePassword(ctx, u.ID, store.PasswordChange{
		Hash: hash, ChangedAt: now, MustChange: mustChange, KeepHistory: max(a.policy.History-1, 0),
	})
}

// LockedUntil returns when the lock on username ends, or the zero time if
// it is not locked.
func (a *Accounts) LockedUntil(ctx context.Context, username string) (time.Time, error) {
	t, err := a.store.LoginThrottle(ctx, throttleKey(username))
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("lock status: %w", err)
	}
	if !a.clock.Now().Before(t.LockedUntil) {
		return time.Time{}, nil
	}
	return t.LockedUntil, nil
}

// Unlock ends any lock or delay on username and forgets its failures, on
// the authority of actor, an enabled administrator.
func (a *Accounts) Unlock(ctx context.Context, actor store.User, username string) error {
	if actor.Role != store.RoleAdmin || !actor.Enabled {
		return ErrNotAdmin
	}
	if err := a.clearThrottle(ctx, throttleKey(username)); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	if err := a.record(ctx, audit.Event{Time: a.clock.Now().UTC(), Actor: actor.Username, Action: audit.ActionAccountUnlocked,
		Target: username, Outcome: audit.OutcomeSuccess}); err != nil {
		return fmt.Errorf("unlock (it was unlocked): %w", err)
	}
	return nil
}

// PruneThrottles forgets throttle records that no longer delay, lock or
// count anything, and returns how many. Run it now and then (hourly, say),
// so that attempts on many made-up usernames do not pile up.
func (a *Accounts) PruneThrottles(ctx context.Context) (int64, error) {
	now := a.clock.Now().UTC()
	n, err := a.store.PruneLoginThrottles(ctx, now.Add(-a.lockout.Window))
	if err != nil {
		return 0, fmt.Errorf("prune throttles: %w", err)
	}
	return n, nil
}

// State tells whether u must change its password before doing anything
// else, for requests made with an existing session.
func (a *Accounts) State(u store.User) LoginState {
	return a.loginState(u, a.clock.Now().UTC())
}
