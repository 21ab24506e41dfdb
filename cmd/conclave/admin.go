package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"conclave/internal/audit"
	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/store"
)

const adminUsage = `Usage:
  conclave admin create-user -username NAME [-display-name TEXT] [-role user|admin] -password-stdin
  conclave admin list-users
  conclave admin enrol [-role admin|user]         print a one-time account creation link
  conclave admin create-room -alias ALIAS [-name TEXT] [-access open|pin|accounts]
                             [-host-pin DIGITS] [-guest-pin DIGITS] [-no-guests]
  conclave admin list-rooms
  conclave admin delete-room -alias ALIAS
  conclave admin list-devices -username NAME       devices the E2EE log certified for a user
  conclave admin revoke-device -username NAME -device FINGERPRINT [-reason TEXT]

Every command accepts -data DIR (env CONCLAVE_DATA) and, for printed links,
-public-url URL (env CONCLAVE_PUBLIC_URL). The server may be running.
`

func admin(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	cmd, args := args[0], args[1:]
	if accountCommands[cmd] {
		return adminAccounts(cmd, args, stdin, stdout, stderr)
	}
	cfg := config.Defaults()
	fs := flag.NewFlagSet("conclave admin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.RegisterDataDir(fs, &cfg)
	config.RegisterSecrets(fs, &cfg)
	publicURL := fs.String("public-url", envOr("CONCLAVE_PUBLIC_URL", ""), "base URL for printed links")
	var (
		username, displayName, role, alias, name string
		access, hostPIN, guestPIN                string
		device, reason                           string
		passwordStdin, noGuests                  bool
	)
	switch cmd {
	case "create-user":
		fs.StringVar(&username, "username", "", "login name")
		fs.StringVar(&displayName, "display-name", "", "name shown to others (default: the username)")
		fs.StringVar(&role, "role", "user", "user or admin")
		fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	case "enrol":
		fs.StringVar(&role, "role", "admin", "user or admin")
	case "create-room":
		fs.StringVar(&alias, "alias", "", "room alias, used in the meeting URL /r/<alias>")
		fs.StringVar(&name, "name", "", "display name (default: the alias)")
		fs.StringVar(&access, "access", "open", "who may enter: open (anyone with the link), pin, or accounts")
		fs.StringVar(&hostPIN, "host-pin", "", "host PIN (digits; required for -access pin)")
		fs.StringVar(&guestPIN, "guest-pin", "", "guest PIN (digits; empty lets guests in without PIN)")
		fs.BoolVar(&noGuests, "no-guests", false, "admit no guests (only the host PIN, or accounts)")
	case "delete-room":
		fs.StringVar(&alias, "alias", "", "room alias")
	case "list-devices":
		fs.StringVar(&username, "username", "", "login name")
	case "revoke-device":
		fs.StringVar(&username, "username", "", "login name")
		fs.StringVar(&device, "device", "", "fingerprint of the device key, as list-devices prints it")
		fs.StringVar(&reason, "reason", "", "why (kept in the log, shown to participants)")
	case "list-users", "list-rooms":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, adminUsage+accountsUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "conclave admin: unknown command %q\n\n%s%s", cmd, adminUsage, accountsUsage)
		return 2
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
	st, rec := n.st, n.audit
	ctx := context.Background()
	base := *publicURL
	if base == "" {
		base = "https://" + net.JoinHostPort(firstHost(), "8443")
	}

	switch cmd {
	case "create-user":
		err = createUser(ctx, st, stdin, stdout, username, displayName, store.Role(role), passwordStdin)
	case "list-users":
		err = listUsers(ctx, st, stdout)
	case "enrol":
		var token string
		token, err = auth.NewEnroller(st, nil, auth.EnrolConfig{}).Create(ctx, store.Role(role))
		if err == nil {
			fmt.Fprintf(stdout, "One-time link to create a %s account (valid %s):\n\n  %s/enrol#%s\n", role, auth.DefaultEnrolmentTTL, strings.TrimRight(base, "/"), token)
		}
	case "create-room":
		err = createRoom(ctx, st, stdout, base, store.Room{Alias: alias, DisplayName: name, Access: store.Access(access),
			AllowGuests: !noGuests, GuestsMayUnmute: true, GuestsMayPresent: true}, hostPIN, guestPIN)
	case "list-rooms":
		err = listRooms(ctx, st, stdout, base)
	case "list-devices", "revoke-device":
		// The E2EE CA and log keys may be sealed under the master key.
		dev := deviceAdmin{st: st, dataDir: cfg.DataDir, box: n.box, stdout: stdout}
		if cmd == "list-devices" {
			err = dev.list(ctx, username)
		} else {
			err = dev.revoke(ctx, username, device, reason)
		}
	case "delete-room":
		if alias == "" {
			err = errors.New("-alias is required")
		} else if err = st.DeleteRoom(ctx, alias); errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("no room has the alias %q", alias)
		} else if err == nil {
			fmt.Fprintf(stdout, "Room %s deleted.\n", alias)
		}
	}
	if ev, ok := cliEvent(cmd, username, role, alias, access); ok {
		ev.Outcome = audit.OutcomeSuccess
		if err != nil {
			ev.Outcome = audit.OutcomeFailure
			ev.Details["error"] = err.Error()
		}
		if rerr := rec.Record(ctx, ev); rerr != nil {
			fmt.Fprintf(stderr, "conclave admin %s: the audit log could not be written: %v\n", cmd, rerr)
			if err == nil {
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "conclave admin %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// cliEvent is the audit event of a changing admin command.
func cliEvent(cmd, username, role, alias, access string) (audit.Event, bool) {
	d := map[string]string{"command": "admin " + cmd}
	switch cmd {
	case "create-user":
		d["role"] = role
		return audit.Event{Action: audit.ActionUserCreated, Target: username, Details: d}, true
	case "enrol":
		d["role"] = role
		return audit.Event{Action: audit.ActionEnrolmentCreated, Target: role, Details: d}, true
	case "create-room":
		d["access"] = access
		return audit.Event{Action: audit.ActionRoomCreated, Target: alias, Details: d}, true
	case "delete-room":
		return audit.Event{Action: audit.ActionRoomDeleted, Target: alias, Details: d}, true
	}
	return audit.Event{}, false
}

func createUser(ctx context.Context, st store.Store, stdin io.Reader, stdout io.Writer, username, displayName string, role store.Role, passwordStdin bool) error {
	if !role.Valid() {
		return fmt.Errorf("-role must be user or admin")
	}
	if err := store.ValidUsername(username); err != nil {
		return err
	}
	if !passwordStdin {
		return errors.New("give the password on standard input with -password-stdin (or use 'conclave admin enrol' to send a link)")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if err := auth.CheckPasswordPolicy(password); err != nil {
		return err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	if displayName == "" {
		displayName = username
	}
	now := time.Now()
	u, err := st.CreateUser(ctx, store.User{Username: username, DisplayName: displayName, PasswordHash: hash,
		Role: role, Enabled: true, CreatedAt: now, PasswordChangedAt: now})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("a user named %q already exists", username)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "User %s (%s) created.\n", u.Username, u.Role)
	return nil
}

func listUsers(ctx context.Context, st store.Store, stdout io.Writer) error {
	users, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tDISPLAY NAME\tROLES\tSOURCE\tENABLED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", u.Username, u.DisplayName, strings.Join(u.Roles, ","), u.Source, u.Enabled)
	}
	return tw.Flush()
}

func createRoom(ctx context.Context, st store.Store, stdout io.Writer, base string, r store.Room, hostPIN, guestPIN string) error {
	r.Alias = strings.ToLower(strings.TrimSpace(r.Alias))
	if err := store.ValidAlias(r.Alias); err != nil {
		return err
	}
	if r.DisplayName == "" {
		r.DisplayName = r.Alias
	}
	if !r.Access.Valid() {
		return fmt.Errorf("-access must be open, pin or accounts")
	}
	if err := auth.CheckPINsDiffer(hostPIN, guestPIN, "", ""); err != nil {
		return fmt.Errorf("-host-pin and -guest-pin: %w", err)
	}
	for _, p := range []struct {
		pin  string
		hash *string
	}{{hostPIN, &r.HostPINHash}, {guestPIN, &r.GuestPINHash}} {
		if p.pin == "" {
			continue
		}
		if err := auth.CheckPIN(p.pin, 0); err != nil {
			return err
		}
		h, err := auth.HashPIN(p.pin)
		if err != nil {
			return err
		}
		*p.hash = h
	}
	if r.Access == store.AccessPIN && hostPIN == "" {
		return errors.New("a room entered by PIN needs -host-pin")
	}
	r.CreatedAt = time.Now()
	created, err := st.CreateRoom(ctx, r)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("a room with the alias %q already exists", r.Alias)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Room %q created (%s): %s/r/%s\n", created.DisplayName, created.Access, strings.TrimRight(base, "/"), created.Alias)
	if created.Access == store.AccessOpen {
		fmt.Fprintln(stdout, "Anyone who has the link can enter an open room; use -access pin or accounts for sensitive meetings.")
	}
	return nil
}

func listRooms(ctx context.Context, st store.Store, stdout io.Writer, base string) error {
	rooms, err := st.ListRooms(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALIAS\tNAME\tACCESS\tURL")
	for _, r := range rooms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/r/%s\n", r.Alias, r.DisplayName, r.Access, strings.TrimRight(base, "/"), r.Alias)
	}
	return tw.Flush()
}

func envOr(name, def string) string {
	if v, ok := lookupEnv(name); ok {
		return v
	}
	return def
}
