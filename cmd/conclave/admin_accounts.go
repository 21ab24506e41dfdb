package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/clock"
	"conclave/internal/config"
	"conclave/internal/devca"
	"conclave/internal/perm"
	"conclave/internal/store"
)

// accountsUsage lists the account and role commands of `conclave admin`.
const accountsUsage = `
Accounts and roles (the same rules and audit entries as the admin page):
  conclave admin add-user -username NAME [-display-name TEXT] [-roles R1,R2] -password-stdin
                          the user changes this password at the first sign-in
  conclave admin disable-user -username NAME    ends its sessions; the server closes its meetings
  conclave admin enable-user -username NAME
  conclave admin delete-user -username NAME
  conclave admin reset-password -username NAME -password-stdin
  conclave admin unlock-user -username NAME
  conclave admin set-roles -username NAME -roles R1,R2   (empty: a meeting user)
  conclave admin list-sessions [-username NAME]
  conclave admin end-sessions -username NAME
  conclave admin list-roles
  conclave admin list-permissions
  conclave admin create-role -name NAME -permissions P1,P2 [-description TEXT]
  conclave admin update-role -name NAME -permissions P1,P2 [-description TEXT]
  conclave admin delete-role -name NAME
`

// accountCommands are the account and role commands; admin() hands them
// their arguments.
var accountCommands = map[string]bool{
	"add-user": true, "disable-user": true, "enable-user": true, "delete-user": true, "reset-password": true,
	"unlock-user": true, "set-roles": true, "list-sessions": true, "end-sessions": true, "list-roles": true,
	"list-permissions": true, "create-role": true, "update-role": true, "delete-role": true,
}

func splitComma(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// adminAccounts runs one account or role command.
func adminAccounts(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	fs := flag.NewFlagSet("conclave admin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.RegisterDataDir(fs, &cfg)
	config.RegisterSecrets(fs, &cfg)
	username := fs.String("username", "", "the account's username")
	var (
		displayName, roles, name, perms, description string
		passwordStdin                                bool
	)
	switch cmd {
	case "add-user":
		fs.StringVar(&displayName, "display-name", "", "name shown to others (default: the username)")
		fs.StringVar(&roles, "roles", "", "management roles, comma-separated (none: a meeting user)")
		fs.BoolVar(&passwordStdin, "password-stdin", false, "read the first password from the first line of standard input")
	case "reset-password":
		fs.BoolVar(&passwordStdin, "password-stdin", false, "read the new password from the first line of standard input")
	case "set-roles":
		fs.StringVar(&roles, "roles", "", "management roles, comma-separated (empty: a meeting user)")
	case "create-role", "update-role", "delete-role":
		fs.StringVar(&name, "name", "", "the role's name")
		if cmd != "delete-role" {
			fs.StringVar(&perms, "permissions", "", "permissions, comma-separated (conclave admin list-permissions)")
			fs.StringVar(&description, "description", "", "what the role is for")
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	n, err := openNode(cfg, true, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "conclave admin: %v\n", err)
		return 1
	}
	defer n.Close()
	st := n.st
	actor := auth.CLIActor()
	actor.Username = n.audit.actor
	ctx := audit.WithActor(audit.WithSource(context.Background(), cliSource), actor.Username)
	accounts := auth.NewAccounts(st, nil, auth.AccountsConfig{Audit: n.audit})
	rs := auth.NewRoles(st, nil, n.audit)
	life := auth.NewLifecycle(st, nil, n.audit, accounts, rs)
	// A disabled or deleted account's devices are revoked as the server
	// revokes them: its E2EE devices in the log (docs/e2ee.md, section
	// 7), and its telephony device certificates (docs/sip.md). A running
	// server reads both within seconds: it sends the E2EE devices away,
	// drops the phones' registrations and publishes the revocations in
	// its device CRL and OCSP answers.
	life.OnDeactivate(func(ctx context.Context, u store.User, reason string) error {
		dn, err := deviceAdmin{st: st, dataDir: cfg.DataDir, box: n.box, stdout: stdout}.revokeAll(ctx, u, "account "+reason)
		if dn > 0 {
			fmt.Fprintf(stdout, "%d end-to-end encryption device(s) of %s revoked.\n", dn, u.Username)
		}
		pn, perr := devca.RevokeUserInStore(ctx, st, n.audit, time.Now(), u, actor.Username, cliSource)
		if pn > 0 {
			fmt.Fprintf(stdout, "%d telephony device(s) of %s revoked.\n", pn, u.Username)
		}
		return errors.Join(err, perr)
	})

	target := func() (store.User, error) {
		if *username == "" {
			return store.User{}, errors.New("-username is required")
		}
		u, err := st.UserByName(ctx, *username)
		if errors.Is(err, store.ErrNotFound) {
			return store.User{}, fmt.Errorf("no account is named %q", *username)
		}
		return u, err
	}
	err = func() error {
		switch cmd {
		case "add-user":
			if !passwordStdin {
				return errors.New("give the first password on standard input with -password-stdin")
			}
			pw, err := readPassword(stdin)
			if err != nil {
				return err
			}
			u, err := life.Create(ctx, actor, auth.NewAccount{Username: *username, DisplayName: displayName, Password: pw, Roles: splitComma(roles)})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Account %s created (roles: %s); the password must be changed at the first sign-in.\n", u.Username, rolesText(u.Roles))
		case "disable-user", "enable-user":
			u, err := target()
			if err != nil {
				return err
			}
			if err := life.SetEnabled(ctx, actor, u.ID, cmd == "enable-user"); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Account %s %sd.\n", u.Username, strings.TrimSuffix(cmd, "-user"))
		case "delete-user":
			u, err := target()
			if err != nil {
				return err
			}
			if err := life.Delete(ctx, actor, u.ID); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Account %s deleted.\n", u.Username)
		case "reset-password":
			u, err := target()
			if err != nil {
				return err
			}
			if u.Source != store.SourceLocal && u.Source != "" {
				return auth.ErrDirectoryAccount
			}
			if !passwordStdin {
				return errors.New("give the new password on standard input with -password-stdin")
			}
			pw, err := readPassword(stdin)
			if err != nil {
				return err
			}
			if err := accounts.ResetPassword(ctx, actor, u.ID, pw); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Password of %s reset; it must be changed at the next sign-in, and the account's sessions have ended.\n", u.Username)
		case "unlock-user":
			u, err := target()
			if err != nil {
				return err
			}
			if err := accounts.Unlock(ctx, actor, u.Username); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Account %s unlocked.\n", u.Username)
		case "set-roles":
			u, err := target()
			if err != nil {
				return err
			}
			if err := life.SetRoles(ctx, actor, u.ID, splitComma(roles)); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Roles of %s: %s.\n", u.Username, rolesText(splitComma(roles)))
		case "list-sessions":
			f := store.SessionFilter{Now: clock.System{}.Now().UTC()}
			if *username != "" {
				u, err := target()
				if err != nil {
					return err
				}
				f.UserID = u.ID
			}
			list, err := st.ListSessions(ctx, f)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSERNAME\tSINCE\tLAST SEEN\tFROM\tMETHOD\tPLANE")
			for _, s := range list {
				name := ""
				if u, err := st.UserByID(ctx, s.UserID); err == nil {
					name = u.Username
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", base64.RawURLEncoding.EncodeToString(s.IDHash)[:12], name,
					s.CreatedAt.Format("2006-01-02 15:04"), s.LastSeen.Format("2006-01-02 15:04"), s.Remote, s.Method, s.Plane)
			}
			return tw.Flush()
		case "end-sessions":
			u, err := target()
			if err != nil {
				return err
			}
			n, err := life.EndSessions(ctx, actor, u.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d session(s) of %s ended.\n", n, u.Username)
		case "list-roles":
			list, err := rs.List(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tKIND\tPERMISSIONS")
			for _, r := range list {
				kind := "custom"
				if r.BuiltIn {
					kind = "built-in"
				}
				var ps []string
				for _, p := range r.Permissions {
					ps = append(ps, string(p))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, kind, strings.Join(ps, ","))
			}
			return tw.Flush()
		case "list-permissions":
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			for _, p := range perm.All {
				fmt.Fprintf(tw, "%s\t%s\n", p.Name, p.Description)
			}
			return tw.Flush()
		case "create-role", "update-role":
			var ps []perm.Permission
			for _, p := range splitComma(perms) {
				ps = append(ps, perm.Permission(p))
			}
			r, err := rs.Save(ctx, actor.Username, perm.Role{Name: name, Description: description, Permissions: ps}, cmd == "create-role")
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Role %s saved with %d permission(s).\n", r.Name, len(r.Permissions))
		case "delete-role":
			if err := rs.Delete(ctx, actor.Username, name); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Role %s deleted.\n", name)
		}
		return nil
	}()
	if err != nil {
		fmt.Fprintf(stderr, "conclave admin %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func rolesText(r []string) string {
	if len(r) == 0 {
		return "none, a meeting user"
	}
	return strings.Join(r, ", ")
}
