// Package perm is Conclave's management permission model: named
// permissions, the built-in roles made of them, and custom roles that an
// organisation defines as sets of permissions.
//
// Every management API route names the one permission it needs (see the
// route table in internal/web); a session may use a route when one of its
// account's roles grants that permission. A meeting user holds no role and
// so no management permission.
//
// To add a permission: append it to All with a description, and add it to
// the built-in roles that should have it (Administrator has all of them).
package perm

import (
	"fmt"
	"slices"
	"strings"
)

// Permission is a named right to use a group of management routes.
type Permission string

// The management permissions.
const (
	// UsersView: list accounts and see their roles, state and sessions.
	UsersView Permission = "users.view"
	// UsersManage: create, disable, enable, delete, unlock accounts, reset
	// their passwords, make enrolment links, end their sessions.
	UsersManage Permission = "users.manage"
	// UsersAssignRoles: change the roles an account holds.
	UsersAssignRoles Permission = "users.assign-roles"
	// RolesView: list roles and permissions.
	RolesView Permission = "roles.view"
	// RolesManage: create, change and delete custom roles.
	RolesManage Permission = "roles.manage"
	// SessionsView: list every signed-in session.
	SessionsView Permission = "sessions.view"
	// SessionsEnd: end any session.
	SessionsEnd Permission = "sessions.end"
	// RoomsView: list rooms and their members.
	RoomsView Permission = "rooms.view"
	// RoomsManage: create, change and delete rooms and their member lists.
	RoomsManage Permission = "rooms.manage"
	// AuthSettingsView: read the directory, single sign-on and certificate
	// login settings (never their secrets).
	AuthSettingsView Permission = "auth-settings.view"
	// AuthSettingsManage: change those settings.
	AuthSettingsManage Permission = "auth-settings.manage"
	// AuditView: read the audit log.
	AuditView Permission = "audit.view"
	// SystemView: read the system's state: alarms, metrics, certificates,
	// backups.
	SystemView Permission = "system.view"
	// SystemManage: change the system: certificates, backups, syslog,
	// alarms.
	SystemManage Permission = "system.manage"
	// DevicesView: list telephony devices, their certificates and
	// registrations (docs/sip.md).
	DevicesView Permission = "devices.view"
	// DevicesManage: make enrolment tokens for any account and revoke any
	// device certificate.
	DevicesManage Permission = "devices.manage"
	// CallRecordsView: read the call detail records of telephony.
	CallRecordsView Permission = "call-records.view"
)

// Info describes a permission for people choosing them.
type Info struct {
	Name        Permission `json:"name"`
	Description string     `json:"description"`
}

// All lists every permission, in the order the admin page shows them.
var All = []Info{
	{UsersView, "See accounts, their roles, state and sessions."},
	{UsersManage, "Create, disable, enable, delete and unlock accounts, reset passwords, end an account's sessions."},
	{UsersAssignRoles, "Change the roles an account holds."},
	{RolesView, "See roles and their permissions."},
	{RolesManage, "Create, change and delete custom roles."},
	{SessionsView, "See every signed-in session."},
	{SessionsEnd, "End any session."},
	{RoomsView, "See rooms and their member lists."},
	{RoomsManage, "Create, change and delete rooms and their member lists."},
	{AuthSettingsView, "See the directory (LDAP), single sign-on (OIDC) and certificate login settings."},
	{AuthSettingsManage, "Change the directory, single sign-on and certificate login settings."},
	{AuditView, "Read the audit log."},
	{SystemView, "See alarms, metrics, certificates and backups."},
	{SystemManage, "Change certificates, backups, syslog export and alarms."},
	{DevicesView, "See telephony devices, their certificates and registrations."},
	{DevicesManage, "Make device enrolment tokens for any account and revoke device certificates."},
	{CallRecordsView, "Read the call detail records of telephony (calls and dial-ins)."},
}

// Known reports whether p is one of All.
func Known(p Permission) bool {
	return slices.ContainsFunc(All, func(i Info) bool { return i.Name == p })
}

// Names of the built-in roles.
const (
	// Administrator holds every permission.
	Administrator = "administrator"
	// SecurityAdmin manages accounts, roles, sessions and sign-in
	// settings, and reads the audit log.
	SecurityAdmin = "security-admin"
	// RoomAdmin manages rooms and sees accounts (to list members).
	RoomAdmin = "room-admin"
	// Auditor reads the audit log, and nothing else.
	Auditor = "auditor"
	// Operator watches the service: rooms, sessions, system state.
	Operator = "operator"
)

// Role is a named set of permissions.
type Role struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Permissions []Permission `json:"permissions"`
	// BuiltIn roles are defined by Conclave and cannot be changed.
	BuiltIn bool `json:"builtIn"`
}

// Has reports whether r grants p.
func (r Role) Has(p Permission) bool { return slices.Contains(r.Permissions, p) }

func allPermissions() []Permission {
	out := make([]Permission, len(All))
	for i, p := range All {
		out[i] = p.Name
	}
	return out
}

// BuiltIn returns the built-in roles, in a fixed order.
func BuiltIn() []Role {
	return []Role{
		{Name: Administrator, BuiltIn: true, Description: "Every permission.", Permissions: allPermissions()},
		{Name: SecurityAdmin, BuiltIn: true, Description: "Accounts, roles, sessions and sign-in settings; reads the audit log.",
			Permissions: []Permission{UsersView, UsersManage, UsersAssignRoles, RolesView, RolesManage,
				SessionsView, SessionsEnd, AuthSettingsView, AuthSettingsManage, AuditView, DevicesView, DevicesManage}},
		{Name: RoomAdmin, BuiltIn: true, Description: "Rooms and their member lists; sees accounts.",
			Permissions: []Permission{RoomsView, RoomsManage, UsersView}},
		{Name: Auditor, BuiltIn: true, Description: "Reads the audit log and the call detail records, nothing else.",
			Permissions: []Permission{AuditView, CallRecordsView}},
		{Name: Operator, BuiltIn: true, Description: "Watches the service: rooms, sessions and the system's state.",
			Permissions: []Permission{RoomsView, SessionsView, SystemView, DevicesView}},
	}
}

// BuiltInRole returns the built-in role called name.
func BuiltInRole(name string) (Role, bool) {
	for _, r := range BuiltIn() {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// MaxRoleNameLen bounds role names.
const MaxRoleNameLen = 64

// ValidRoleName reports, as a sentence for the user, why name cannot name
// a custom role: 1 to 64 characters among a-z, 0-9 and '-', starting with
// a letter, and not the name of a built-in role.
func ValidRoleName(name string) error {
	if name == "" || len(name) > MaxRoleNameLen {
		return fmt.Errorf("a role name has 1 to %d characters", MaxRoleNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-')
		if !ok {
			return fmt.Errorf("the role name %q must start with a letter a-z and hold only a-z, 0-9 and '-'", name)
		}
	}
	if _, ok := BuiltInRole(name); ok {
		return fmt.Errorf("%q is a built-in role; choose another name", name)
	}
	return nil
}

// CheckPermissions reports unknown or repeated permissions as a sentence
// for the user, and returns them sorted in the order of All.
func CheckPermissions(ps []Permission) ([]Permission, error) {
	if len(ps) == 0 {
		return nil, fmt.Errorf("a role needs at least one permission")
	}
	seen := map[Permission]bool{}
	var unknown []string
	for _, p := range ps {
		if !Known(p) {
			unknown = append(unknown, string(p))
		}
		seen[p] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown permission %s; the permissions are listed by GET /api/permissions", strings.Join(unknown, ", "))
	}
	var out []Permission
	for _, i := range All {
		if seen[i.Name] {
			out = append(out, i.Name)
		}
	}
	return out, nil
}

// Set is the union of the permissions of some roles.
type Set map[Permission]bool

// Has reports whether s holds p.
func (s Set) Has(p Permission) bool { return s[p] }

// Any reports whether s holds at least one permission.
func (s Set) Any() bool { return len(s) > 0 }

// List returns s's permissions in the order of All.
func (s Set) List() []Permission {
	var out []Permission
	for _, i := range All {
		if s[i.Name] {
			out = append(out, i.Name)
		}
	}
	return out
}

// Union returns the permissions of roles.
func Union(roles []Role) Set {
	s := Set{}
	for _, r := range roles {
		for _, p := range r.Permissions {
			s[p] = true
		}
	}
	return s
}
