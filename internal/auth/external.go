package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"conclave/internal/audit"
	"conclave/internal/authn"
	"conclave/internal/store"
)

// ErrDirectoryAccount refuses a password change or reset of an account
// whose password a directory or single sign-on provider keeps.
var ErrDirectoryAccount = errors.New("this account's password is kept by the directory or single sign-on provider; change it there")

// Sign-in methods, as recorded on sessions and in the audit log.
const (
	MethodPassword    = "password"
	MethodLDAP        = "ldap"
	MethodOIDC        = "oidc"
	MethodCertificate = "certificate"
)

// Audit actions of directory and single sign-on logins.
const (
	ActionDirectoryFallback = "ldap-fallback"
	ActionAccountConflict   = "external-account-conflict"
)

// DirectoryLogin checks a username and password against a directory (see
// authn.LDAPLogin).
type DirectoryLogin func(ctx context.Context, username, password string) (authn.Identity, error)

// LoginChain signs in with a username and password: the directory first,
// when dir is not nil, then the local accounts. The local accounts are
// tried when the directory does not know the username, or when it is
// unavailable (down, unreachable, refusing TLS); each such fallback is
// recorded in the audit log with the reason. A password the directory
// refuses is not tried locally. The lockout rule applies to directory
// attempts as to local ones. It returns the account, what it must do
// first, and the method ("ldap" or "password").
func (a *Accounts) LoginChain(ctx context.Context, username, password string, dir DirectoryLogin) (store.User, LoginState, string, error) {
	if dir == nil {
		u, st, err := a.Login(ctx, username, password)
		return u, st, MethodPassword, err
	}
	now := a.clock.Now().UTC()
	key := throttleKey(username)
	refused, lockedNow, err := a.beginAttempt(ctx, key, now)
	if err != nil {
		return store.User{}, LoginState{}, "", fmt.Errorf("login: %w", err)
	}
	if refused != nil {
		return store.User{}, LoginState{}, "", refused
	}
	id, derr := dir(ctx, username, password)
	var unavailable *authn.UnavailableError
	switch {
	case derr == nil:
		u, err := a.provision(ctx, id)
		if err != nil {
			if errors.Is(err, ErrBadCredentials) {
				if rerr := a.recordFailure(ctx, store.User{Username: id.Username}, true, username, audit.ActionLoginFailed,
					"directory: "+err.Error(), lockedNow, now); rerr != nil {
					return store.User{}, LoginState{}, "", rerr
				}
			}
			return store.User{}, LoginState{}, "", err
		}
		if err := a.clearThrottle(ctx, key); err != nil {
			return store.User{}, LoginState{}, "", fmt.Errorf("login: %w", err)
		}
		if err := a.record(ctx, audit.Event{Time: now, Actor: u.Username, Action: audit.ActionLogin, Target: u.Username,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"method": MethodLDAP, "roles": strings.Join(u.Roles, ",")}}); err != nil {
			return store.User{}, LoginState{}, "", fmt.Errorf("login: %w", err)
		}
		return u, LoginState{}, MethodLDAP, nil
	case errors.Is(derr, authn.ErrDirectoryRefused):
		u, _ := a.store.UserByName(ctx, username)
		if err := a.recordFailure(ctx, u, u.ID != 0, username, audit.ActionLoginFailed, "directory refused the password", lockedNow, now); err != nil {
			return store.User{}, LoginState{}, "", fmt.Errorf("login: %w", err)
		}
		return store.User{}, LoginState{}, "", ErrBadCredentials
	case errors.As(derr, &unavailable):
		if err := a.record(ctx, audit.Event{Time: now, Actor: audit.ActorSystem, Action: ActionDirectoryFallback,
			Outcome: audit.OutcomeFailure, Details: map[string]string{"reason": derr.Error()}}); err != nil {
			return store.User{}, LoginState{}, "", fmt.Errorf("login: %w", err)
		}
	case errors.Is(derr, authn.ErrNotInDirectory):
	default:
		return store.User{}, LoginState{}, "", fmt.Errorf("login: directory: %w", derr)
	}
	// Local accounts. The attempt was counted above: forgive it so that
	// Login counts it once.
	if _, err := a.store.UpdateLoginThrottle(ctx, key, func(t store.LoginThrottle) store.LoginThrottle {
		if t.Failures > 0 {
			t.Failures--
		}
		return t
	}); err != nil {
		return store.User{}, LoginState{}, "", fmt.Errorf("login: %w", err)
	}
	u, st, err := a.Login(ctx, username, password)
	return u, st, MethodPassword, err
}

// ExternalLogin signs in an identity a single sign-on provider vouched
// for, creating or updating its account, and records it.
func (a *Accounts) ExternalLogin(ctx context.Context, id authn.Identity, method string) (store.User, error) {
	now := a.clock.Now().UTC()
	u, err := a.provision(ctx, id)
	if err != nil {
		if rerr := a.record(ctx, audit.Event{Time: now, Actor: id.Username, Action: audit.ActionLoginFailed, Target: id.Username,
			Outcome: audit.OutcomeFailure, Details: map[string]string{"method": method, "reason": err.Error()}}); rerr != nil {
			return store.User{}, rerr
		}
		return store.User{}, err
	}
	if err := a.record(ctx, audit.Event{Time: now, Actor: u.Username, Action: audit.ActionLogin, Target: u.Username,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"method": method, "roles": strings.Join(u.Roles, ",")}}); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// provision finds or creates the account of an external identity and
// brings its display name and roles up to date: a user removed from a
// group loses the group's roles at this login. An identity whose username
// belongs to an account of another source is refused (and audited), so
// that a directory entry cannot take over a local administrator.
func (a *Accounts) provision(ctx context.Context, id authn.Identity) (store.User, error) {
	now := a.clock.Now().UTC()
	roles := slices.Clone(id.Roles)
	slices.Sort(roles)
	roles = slices.Compact(roles)
	if id.Use == authn.UseUsers {
		roles = nil
	}
	if id.Use == authn.UseAdmins && len(roles) == 0 {
		return store.User{}, fmt.Errorf("%w (no group of this account maps to a management role)", ErrBadCredentials)
	}
	if err := store.ValidUsername(id.Username); err != nil {
		return store.User{}, fmt.Errorf("%w (%v)", ErrBadCredentials, err)
	}
	name := strings.TrimSpace(id.DisplayName)
	if name == "" || validDisplayName(name) != nil {
		name = id.Username
	}
	u, err := a.store.UserByExternalID(ctx, id.Source, id.ExternalID)
	if errors.Is(err, store.ErrNotFound) {
		u, err = a.store.UserByName(ctx, id.Username)
		if err == nil {
			_ = a.record(ctx, audit.Event{Time: now, Actor: audit.ActorSystem, Action: ActionAccountConflict, Target: u.Username,
				Outcome: audit.OutcomeFailure, Details: map[string]string{"source": id.Source, "existing-source": u.Source}})
			return store.User{}, fmt.Errorf("%w (an account of another source has this username)", ErrBadCredentials)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.User{}, err
		}
		u, err = a.store.CreateUser(ctx, store.User{Username: id.Username, DisplayName: name, Role: store.RoleUser,
			Roles: roles, Enabled: true, CreatedAt: now, Source: id.Source, ExternalID: id.ExternalID})
		if err != nil {
			return store.User{}, fmt.Errorf("create %s account %s: %w", id.Source, id.Username, err)
		}
		return u, a.record(ctx, audit.Event{Time: now, Actor: audit.ActorSystem, Action: "account-created", Target: u.Username,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"source": id.Source, "roles": strings.Join(roles, ",")}})
	}
	if err != nil {
		return store.User{}, err
	}
	if !u.Enabled {
		return store.User{}, fmt.Errorf("%w (the account is disabled in Conclave)", ErrBadCredentials)
	}
	if u.DisplayName != name {
		if err := a.store.UpdateUserIdentity(ctx, u.ID, name, id.Source, id.ExternalID); err != nil {
			return store.User{}, err
		}
		u.DisplayName = name
	}
	if !slices.Equal(u.Roles, roles) {
		if err := a.store.SetUserRoles(ctx, u.ID, roles); err != nil {
			return store.User{}, err
		}
		if err := a.record(ctx, audit.Event{Time: now, Actor: audit.ActorSystem, Action: audit.ActionRoleChanged, Target: u.Username,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"from": strings.Join(u.Roles, ","), "to": strings.Join(roles, ","),
				"source": id.Source}}); err != nil {
			return store.User{}, err
		}
		return a.store.UserByID(ctx, u.ID)
	}
	return u, nil
}
