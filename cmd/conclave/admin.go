package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/store"
)

const adminUsage = `Usage:
  conclave admin create-user -username NAME [-display-name TEXT] [-role user|admin] -password-stdin
  conclave admin list-users
  conclave admin enrol [-role admin|user]         print a one-time account creation link
  conclave admin create-room -alias ALIAS [-name TEXT]
  conclave admin list-rooms
  conclave admin delete-room -alias ALIAS

Every command accepts -data DIR (env CONCLAVE_DATA) and, for printed links,
-public-url URL (env CONCLAVE_PUBLIC_URL). The server may be running.
`

func admin(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	cmd, args := args[0], args[1:]
	cfg := config.Defaults()
	fs := flag.NewFlagSet("conclave admin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.RegisterDataDir(fs, &cfg)
	publicURL := fs.String("public-url", envOr("CONCLAVE_PUBLIC_URL", ""), "base URL for printed links")
	var (
		username, displayName, role, alias, name string
		passwordStdin                            bool
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
	case "delete-room":
		fs.StringVar(&alias, "alias", "", "room alias")
	case "list-users", "list-rooms":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, adminUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "conclave admin: unknown command %q\n\n%s", cmd, adminUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	st, err := store.OpenSQLite(filepath.Join(cfg.DataDir, "conclave.db"))
	if err != nil {
		fmt.Fprintf(stderr, "conclave admin: %v\n", err)
		return 1
	}
	defer st.Close()
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
		err = createRoom(ctx, st, stdout, base, alias, name)
	case "list-rooms":
		err = listRooms(ctx, st, stdout, base)
	case "delete-room":
		if alias == "" {
			err = errors.New("-alias is required")
		} else if err = st.DeleteRoom(ctx, alias); errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("no room has the alias %q", alias)
		} else if err == nil {
			fmt.Fprintf(stdout, "Room %s deleted.\n", alias)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "conclave admin %s: %v\n", cmd, err)
		return 1
	}
	return 0
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
	fmt.Fprintln(tw, "USERNAME\tDISPLAY NAME\tROLE\tENABLED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", u.Username, u.DisplayName, u.Role, u.Enabled)
	}
	return tw.Flush()
}

func createRoom(ctx context.Context, st store.Store, stdout io.Writer, base, alias, name string) error {
	alias = strings.ToLower(strings.TrimSpace(alias))
	if err := store.ValidAlias(alias); err != nil {
		return err
	}
	if name == "" {
		name = alias
	}
	r, err := st.CreateRoom(ctx, store.Room{Alias: alias, DisplayName: name, CreatedAt: time.Now()})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("a room with the alias %q already exists", alias)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Room %q created: %s/r/%s\n", r.DisplayName, strings.TrimRight(base, "/"), r.Alias)
	return nil
}

func listRooms(ctx context.Context, st store.Store, stdout io.Writer, base string) error {
	rooms, err := st.ListRooms(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALIAS\tNAME\tURL")
	for _, r := range rooms {
		fmt.Fprintf(tw, "%s\t%s\t%s/r/%s\n", r.Alias, r.DisplayName, strings.TrimRight(base, "/"), r.Alias)
	}
	return tw.Flush()
}

func envOr(name, def string) string {
	if v, ok := lookupEnv(name); ok {
		return v
	}
	return def
}
