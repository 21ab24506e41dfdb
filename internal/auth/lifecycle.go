package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/perm"
	"conclave/internal/store"
)

// Errors of Lifecycle, meant for the administrator.
var (
	// ErrSelf refuses to disable, delete or change the roles of one's own
	// account, so that nobody locks themselves out by mistake.
	ErrSelf = errors.New("you cannot do this to your own account; ask another administrator")
	// ErrLastAdministrator refuses a change that would leave no enabled
	// account holding the built-in role "administrator".
	ErrLastAdministrator = errors.New("this is the last enabled account with the administrator role; give the role to another account first")
)

// Deactivation is told when an account is disabled or deleted, after its
// sessions have ended: it ends what else the account holds (its meeting
// connections, its E2EE devices). reason is "disabled" or "deleted".
type Deactivation func(ctx context.Context, u store.User, reason string) error

// Lifecycle creates, disables, enables and deletes accounts and changes
// their roles, on the authority of an actor, recording each change in the
// audit log. The web API, the admin page and the CLI all go through it;
// callers check the actor's permissions first.
type Lifecycle struct {
	store    store.Store
	clock    clock.Clock
	audit    audit.Recorder
	accounts *Accounts
	roles    *Roles
	onDeact  []Deactivation
}

// NewLifecycle returns a Lifecycle. accounts supplies the password policy
// and hashing; roles checks role names.
func NewLifecycle(st store.Store, clk clock.Clock, rec audit.Recorder, accounts *Accounts, roles *Roles) *Lifecycle {
	if rec == nil {
		rec = audit.Discard{}
	}
	return &Lifecycle{store: st, clock: clock.Or(clk), audit: rec, accounts: accounts, roles: roles}
}

// OnDeactivate registers f, called when an account is disabled or
// deleted. Call it before the Lifecycle is used.
func (l *Lifecycle) OnDeactivate(f Deactivation) { l.onDeact = append(l.onDeact, f) }

// CLIActor is the actor of changes made with `conclave admin` from the
// shell of the server, whose access to the data directory is full
// authority.
func CLIActor() store.User {
	return store.User{Username: "cli", Role: store.RoleAdmin, Enabled: true, Roles: []string{perm.Administrator}}
}

// NewAccount describes an account to create.
type NewAccount struct {
	Username    string
	DisplayName string
	// Password is the first password; the user must change it at the
	// first sign-in unless KeepPassword is set (the CLI's -password-stdin
	// for one's own account).
	Password     string
	KeepPassword bool
	// Roles are management roles; none makes a meeting user.
	Roles []string
}

func (l *Lifecycle) record(ctx context.Context, actor store.User, action, target string, details map[string]string) error {
	err := l.audit.Record(ctx, audit.Event{Time: l.clock.Now().UTC(), Actor: actor.Username, Source: audit.SourceFrom(ctx),
		Action: action, Target: target, Outcome: audit.OutcomeSuccess, Details: details})
	if err != nil {
		return fmt.Errorf("%s (it was done): audit: %w", action, err)
	}
	return nil
}

// Create makes a local account.
func (l *Lifecycle) Create(ctx context.Context, actor store.User, a NewAccount) (store.User, error) {
	if err := store.ValidUsername(a.Username); err != nil {
		return store.User{}, &InputError{err.Error()}
	}
	a.DisplayName = strings.TrimSpace(a.DisplayName)
	if a.DisplayName == "" {
		a.DisplayName = a.Username
	}
	if err := validDisplayName(a.DisplayName); err != nil {
		return store.User{}, &InputError{err.Error()}
	}
	roles, err := l.roles.Check(ctx, a.Roles)
	if err != nil {
		return store.User{}, err
	}
	if err := l.accounts.policy.Check(a.Password); err != nil {
		return store.User{}, err
	}
	hash, err := l.accounts.argon2.Hash(a.Password)
	if err != nil {
		return store.User{}, err
	}
	now := l.clock.Now().UTC()
	u, err := l.store.CreateUser(ctx, store.User{Username: a.Username, DisplayName: a.DisplayName, PasswordHash: hash,
		Role: store.RoleUser, Roles: roles, Enabled: true, CreatedAt: now, PasswordChangedAt: now,
		MustChangePassword: !a.KeepPassword, Source: store.SourceLocal})
	if errors.Is(err, store.ErrExists) {
		return store.User{}, ErrUsernameTaken
	}
	if err != nil {
		return store.User{}, err
	}
	return u, l.record(ctx, actor, "account-created", u.Username, map[string]string{"roles": strings.Join(u.Roles, ",")})
}

// wouldOrphan reports whether applying change to the account id would
// leave no enabled account holding the administrator role.
func (l *Lifecycle) wouldOrphan(ctx context.Context, id int64, change func(*store.User)) (bool, error) {
	users, err := l.store.ListUsers(ctx)
	if err != nil {
		return false, err
	}
	before, after := 0, 0
	for _, u := range users {
		isAdmin := func(u store.User) bool { return u.Enabled && slices.Contains(u.Roles, perm.Administrator) }
		if isAdmin(u) {
			before++
		}
		if u.ID == id {
			change(&u)
		}
		if isAdmin(u) {
			after++
		}
	}
	return before > 0 && after == 0, nil
}

// SetEnabled disables or enables the account id. Disabling ends its
// sessions at once and then runs the deactivation hooks (meetings,
// devices).
func (l *Lifecycle) SetEnabled(ctx context.Context, actor store.User, id int64, enabled bool) error {
	var (
		u   store.User
		err error
	)
	if enabled {
		u, err = l.store.UserByID(ctx, id)
	} else {
		u, err = l.mayDeactivate(ctx, actor, id)
	}
	if err != nil {
		return err
	}
	if err := l.store.SetUserEnabled(ctx, id, enabled); err != nil {
		return err
	}
	if enabled {
		return l.record(ctx, actor, "account-enabled", u.Username, nil)
	}
	n, err := l.store.DeleteUserSessions(ctx, id)
	if err != nil {
		return fmt.Errorf("disable %s: end sessions: %w", u.Username, err)
	}
	herr := l.deactivated(ctx, u, "disabled")
	return errors.Join(herr, l.record(ctx, actor, "account-disabled", u.Username,
		map[string]string{"sessions-ended": strconv.FormatInt(n, 10)}))
}

// mayDeactivate returns the account id if actor may disable or delete
// it: not one's own, and not the last enabled administrator.
func (l *Lifecycle) mayDeactivate(ctx context.Context, actor store.User, id int64) (store.User, error) {
	u, err := l.store.UserByID(ctx, id)
	if err != nil {
		return store.User{}, err
	}
	if u.ID == actor.ID {
		return store.User{}, ErrSelf
	}
	if orphan, err := l.wouldOrphan(ctx, id, func(u *store.User) { u.Enabled = false }); err != nil {
		return store.User{}, err
	} else if orphan {
		return store.User{}, ErrLastAdministrator
	}
	return u, nil
}

func (l *Lifecycle) deactivated(ctx context.Context, u store.User, reason string) error {
	var errs []error
	for _, f := range l.onDeact {
		if err := f(ctx, u, reason); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Delete removes the account id with its sessions, after the
// deactivation hooks ran.
func (l *Lifecycle) Delete(ctx context.Context, actor store.User, id int64) error {
	u, err := l.mayDeactivate(ctx, actor, id)
	if err != nil {
		return err
	}
	// Disable first, so that nothing signs in between the hooks and the
	// deletion.
	if err := l.store.SetUserEnabled(ctx, id, false); err != nil {
		return err
	}
	if _, err := l.store.DeleteUserSessions(ctx, id); err != nil {
		return err
	}
	herr := l.deactivated(ctx, u, "deleted")
	if err := l.store.DeleteUser(ctx, id); err != nil {
		return errors.Join(herr, err)
	}
	return errors.Join(herr, l.record(ctx, actor, "account-deleted", u.Username,
		map[string]string{"source": u.Source, "roles": strings.Join(u.Roles, ",")}))
}

// SetRoles replaces the management roles of the account id. Roles must
// exist. An account given no role becomes a meeting user.
func (l *Lifecycle) SetRoles(ctx context.Context, actor store.User, id int64, roles []string) error {
	u, err := l.store.UserByID(ctx, id)
	if err != nil {
		return err
	}
	roles, err = l.roles.Check(ctx, roles)
	if err != nil {
		return err
	}
	slices.Sort(roles)
	if u.ID == actor.ID && !slices.Equal(roles, u.Roles) {
		return ErrSelf
	}
	if orphan, err := l.wouldOrphan(ctx, id, func(u *store.User) { u.Roles = roles }); err != nil {
		return err
	} else if orphan {
		return ErrLastAdministrator
	}
	if err := l.store.SetUserRoles(ctx, id, roles); err != nil {
		return err
	}
	return l.record(ctx, actor, audit.ActionRoleChanged, u.Username,
		map[string]string{"from": strings.Join(u.Roles, ","), "to": strings.Join(roles, ",")})
}

// EndSessions ends every session of the account id.
func (l *Lifecycle) EndSessions(ctx context.Context, actor store.User, id int64) (int64, error) {
	u, err := l.store.UserByID(ctx, id)
	if err != nil {
		return 0, err
	}
	n, err := l.store.DeleteUserSessions(ctx, id)
	if err != nil {
		return 0, err
	}
	return n, l.record(ctx, actor, audit.ActionSessionsEnded, u.Username, map[string]string{"count": strconv.FormatInt(n, 10)})
}
