package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"

	"conclave/internal/audit"
	"conclave/internal/client/termpass"
	"conclave/internal/config"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// What the commands that work on a node's data directory share (admin,
// audit, backup, cert, selfcheck): their flags, the store, the master key
// and the sealed audit log. Each works with the server running or not, and
// records what it changes in the audit log in the server's own way: sealed
// with the audit key, so that `conclave audit verify` holds it to the same
// standard.

// subcommand parses the flags of `conclave <group> <cmd>`: the data
// directory and database (-data, -database), the master key, and those
// that flags adds. It returns false (with the exit status to use) when
// the arguments are wrong or help was asked for.
func subcommand(group string, args []string, usage string, stderr io.Writer, flags func(cmd string, fs *flag.FlagSet) bool) (cmd string, cfg config.Config, code int, ok bool) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return "", cfg, 2, false
	}
	cmd, args = args[0], args[1:]
	cfg = config.Defaults()
	fs := flag.NewFlagSet("conclave "+group+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.RegisterDataDir(fs, &cfg)
	config.RegisterSecrets(fs, &cfg)
	if !flags(cmd, fs) {
		fmt.Fprintf(stderr, "conclave %s: unknown command %q\n\n%s", group, cmd, usage)
		return cmd, cfg, 2, false
	}
	if err := fs.Parse(args); err != nil {
		return cmd, cfg, 2, false
	}
	return cmd, cfg, 0, true
}

// masterKey opens the data directory's master key as configured,
// prompting for the passphrase on the terminal when asked to.
func masterKey(cfg config.Config, stderr io.Writer) (*secrets.Box, error) {
	if err := askSecretsPassphrase(&cfg); err != nil {
		return nil, err
	}
	return secrets.Open(cfg.DataDir, secrets.Source{KeyFile: cfg.Secrets.KeyFile, Key: cfg.Secrets.Key, Passphrase: cfg.Secrets.Passphrase})
}

// askSecretsPassphrase reads the passphrase of the secrets at rest from the
// terminal into cfg when --secrets-passphrase asks for it and the
// environment gave none.
func askSecretsPassphrase(cfg *config.Config) error {
	if !cfg.Secrets.Prompt || cfg.Secrets.Passphrase != "" {
		return nil
	}
	p, err := promptPassphrase("Passphrase of the secrets at rest: ")
	if err != nil {
		return err
	}
	cfg.Secrets.Passphrase = p
	return nil
}

// promptPassphrase reads a passphrase from the terminal without echo.
func promptPassphrase(prompt string) (string, error) {
	p, err := termpass.Read(prompt)
	if err != nil {
		return "", fmt.Errorf("passphrase: %w; set the environment variable instead", err)
	}
	return string(p), nil
}

// cliActor is the audit actor of the person at the shell:
// "cli:<login name>", the name sudo was run by when it was.
func cliActor() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return "cli:" + u
	}
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli:unknown"
}

// cliSource is the audit source of the command line.
const cliSource = "local"

// cliRecorder dates and signs events of the command line: the actor is
// cliActor and the source cliSource unless the event names others.
type cliRecorder struct {
	log   *audit.Log
	actor string
}

func (c cliRecorder) Record(ctx context.Context, e audit.Event) error {
	if e.Actor == "" {
		e.Actor = c.actor
	}
	if e.Source == "" {
		e.Source = cliSource
	}
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	return c.log.Record(ctx, e)
}

// node is a data directory opened by a command.
type node struct {
	cfg config.Config
	st  *store.DB
	box *secrets.Box
	// audit records in the sealed audit log (the running server copies
	// the records to the audit files and syslog).
	audit cliRecorder
}

// openNode opens cfg's store (the SQLite file of the data directory, or
// the PostgreSQL database of -database), master key and audit log. With
// create, a missing data directory and SQLite database are made (the
// admin commands set a node up); otherwise a missing database is an
// error that says which flag to set.
func openNode(cfg config.Config, create bool, stderr io.Writer) (*node, error) {
	if err := cfg.ValidateDatabase(); err != nil {
		return nil, err
	}
	if create {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	} else if cfg.Database == "" {
		if _, err := os.Stat(cfg.StoreName()); err != nil {
			return nil, fmt.Errorf("no Conclave database in %s (set -data, or -database for a PostgreSQL store)", cfg.DataDir)
		}
	}
	box, err := masterKey(cfg, stderr)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(cfg.StoreName())
	if err != nil {
		return nil, err
	}
	key, err := audit.LoadKey(filepath.Join(cfg.DataDir, "audit", audit.KeyFile), box, true)
	if err != nil {
		st.Close()
		return nil, err
	}
	l, err := audit.OpenLog(st, nil, audit.LogConfig{Key: key})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &node{cfg: cfg, st: st, box: box, audit: cliRecorder{log: l, actor: cliActor()}}, nil
}

// Close closes the audit log and the store.
func (n *node) Close() {
	n.audit.log.Close()
	n.st.Close()
}
