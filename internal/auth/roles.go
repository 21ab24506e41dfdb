package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/perm"
	"conclave/internal/store"
)

// Errors of Roles. Their messages are meant for the administrator.
var (
	// ErrRoleNotFound: no built-in or custom role has this name.
	ErrRoleNotFound = errors.New("no role has this name")
	// ErrRoleInUse refuses to delete a custom role that accounts hold.
	ErrRoleInUse = errors.New("accounts hold this role; take it from them first")
	// ErrBuiltInRole refuses to change or delete a built-in role.
	ErrBuiltInRole = errors.New("built-in roles cannot be changed or deleted; create a custom role instead")
	// ErrRoleExists refuses a custom role whose name is taken.
	ErrRoleExists = errors.New("a role with this name exists already")
)

// InputError is a request refused for what the administrator typed; its
// message says what to change.
type InputError struct{ Msg string }

// Error returns the message.
func (e *InputError) Error() string { return e.Msg }

// Roles resolves the management roles accounts hold into permissions, and
// keeps the organisation's custom roles (see internal/perm).
type Roles struct {
	store store.Store
	clock clock.Clock
	audit audit.Recorder
}

// NewRoles returns Roles on st; nil clk means clock.System, nil rec
// records nothing.
func NewRoles(st store.Store, clk clock.Clock, rec audit.Recorder) *Roles {
	if rec == nil {
		rec = audit.Discard{}
	}
	return &Roles{store: st, clock: clock.Or(clk), audit: rec}
}

func fromCustom(c store.CustomRole) perm.Role {
	r := perm.Role{Name: c.Name, Description: c.Description}
	for _, p := range c.Permissions {
		r.Permissions = append(r.Permissions, perm.Permission(p))
	}
	return r
}

// List returns the built-in roles, then the custom ones by name.
func (rs *Roles) List(ctx context.Context) ([]perm.Role, error) {
	out := perm.BuiltIn()
	custom, err := rs.store.CustomRoles(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range custom {
		out = append(out, fromCustom(c))
	}
	return out, nil
}

// Get returns the role called name, or ErrRoleNotFound.
func (rs *Roles) Get(ctx context.Context, name string) (perm.Role, error) {
	all, err := rs.List(ctx)
	if err != nil {
		return perm.Role{}, err
	}
	for _, r := range all {
		if r.Name == name {
			return r, nil
		}
	}
	return perm.Role{}, ErrRoleNotFound
}

// Permissions returns what u may do: the union of the permissions of its
// roles. Names of roles that no longer exist grant nothing; disabled
// accounts get nothing.
func (rs *Roles) Permissions(ctx context.Context, u store.User) (perm.Set, error) {
	if !u.Enabled || len(u.Roles) == 0 {
		return perm.Set{}, nil
	}
	all, err := rs.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("permissions of %s: %w", u.Username, err)
	}
	var held []perm.Role
	for _, r := range all {
		for _, name := range u.Roles {
			if r.Name == name {
				held = append(held, r)
			}
		}
	}
	return perm.Union(held), nil
}

// Check returns the role names sorted, or an error naming those that do
// not exist.
func (rs *Roles) Check(ctx context.Context, names []string) ([]string, error) {
	all, err := rs.List(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, r := range all {
		known[r.Name] = true
	}
	var unknown []string
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if !known[n] {
			unknown = append(unknown, fmt.Sprintf("%q", n))
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(unknown) > 0 {
		return nil, &InputError{fmt.Sprintf("there is no role %s; GET /api/roles lists them", strings.Join(unknown, ", "))}
	}
	return out, nil
}

// Save creates (create true) or replaces a custom role on the authority
// of actor, and records it in the audit log.
func (rs *Roles) Save(ctx context.Context, actor string, r perm.Role, create bool) (perm.Role, error) {
	if _, ok := perm.BuiltInRole(r.Name); ok {
		return perm.Role{}, ErrBuiltInRole
	}
	if err := perm.ValidRoleName(r.Name); err != nil {
		return perm.Role{}, &InputError{err.Error()}
	}
	r.Description = strings.TrimSpace(r.Description)
	if len([]rune(r.Description)) > 256 {
		return perm.Role{}, &InputError{"the description is longer than 256 characters"}
	}
	ps, err := perm.CheckPermissions(r.Permissions)
	if err != nil {
		return perm.Role{}, &InputError{err.Error()}
	}
	r.Permissions, r.BuiltIn = ps, false
	now := rs.clock.Now().UTC()
	c := store.CustomRole{Name: r.Name, Description: r.Description, CreatedAt: now, UpdatedAt: now}
	for _, p := range ps {
		c.Permissions = append(c.Permissions, string(p))
	}
	action := "role-created"
	if create {
		err = rs.store.CreateCustomRole(ctx, c)
		if errors.Is(err, store.ErrExists) {
			return perm.Role{}, ErrRoleExists
		}
	} else {
		action = "role-changed"
		err = rs.store.UpdateCustomRole(ctx, c)
		if errors.Is(err, store.ErrNotFound) {
			return perm.Role{}, ErrRoleNotFound
		}
	}
	if err != nil {
		return perm.Role{}, err
	}
	err = rs.audit.Record(ctx, audit.Event{Time: now, Actor: actor, Source: audit.SourceFrom(ctx), Action: action,
		Target: r.Name, Outcome: audit.OutcomeSuccess, Details: map[string]string{"permissions": strings.Join(c.Permissions, ",")}})
	if err != nil {
		return r, fmt.Errorf("save role (it was saved): audit: %w", err)
	}
	return r, nil
}

// Delete removes a custom role nobody holds, on the authority of actor.
func (rs *Roles) Delete(ctx context.Context, actor, name string) error {
	if _, ok := perm.BuiltInRole(name); ok {
		return ErrBuiltInRole
	}
	n, err := rs.store.CountRoleHolders(ctx, name)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w (%d account(s))", ErrRoleInUse, n)
	}
	if err := rs.store.DeleteCustomRole(ctx, name); errors.Is(err, store.ErrNotFound) {
		return ErrRoleNotFound
	} else if err != nil {
		return err
	}
	return rs.audit.Record(ctx, audit.Event{Time: rs.clock.Now().UTC(), Actor: actor, Source: audit.SourceFrom(ctx),
		Action: "role-deleted", Target: name, Outcome: audit.OutcomeSuccess})
}
