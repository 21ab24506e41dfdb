package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"conclave/internal/ra"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// Device administration (docs/e2ee.md, section 7): list the devices the
// E2EE log certified for a user, or revoke one. Disabling or deleting an
// account (admin_accounts.go) revokes all of them. The server may be running: it reads the log's new
// records within 2 s and sends the revoked devices away.

// deviceAdmin runs the device commands on a data directory.
type deviceAdmin struct {
	st      store.Store
	dataDir string
	box     *secrets.Box
	stdout  io.Writer
}

func (d deviceAdmin) authority() (*ra.Authority, error) {
	return ra.OpenSealed(d.dataDir, "", "", d.st, nil, d.box)
}

func (d deviceAdmin) list(ctx context.Context, username string) error {
	st, stdout := d.st, d.stdout
	if username == "" {
		return errors.New("-username is required")
	}
	u, err := st.UserByName(ctx, username)
	if err != nil {
		return fmt.Errorf("no user %q", username)
	}
	a, err := d.authority()
	if err != nil {
		return err
	}
	devs, err := a.Devices(ctx, u)
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		fmt.Fprintf(stdout, "No device was certified for %s.\n", username)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tFIRST CERTIFIED\tVALID UNTIL\tCREDENTIALS\tSTATE")
	for _, dev := range devs {
		state := "active"
		if dev.Revoked {
			state = "revoked " + dev.RevokedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", dev.Fingerprint, dev.FirstCertified.Local().Format(time.DateTime),
			dev.LastNotAfter.Local().Format(time.DateTime), dev.Credentials, state)
	}
	return tw.Flush()
}

func (d deviceAdmin) revoke(ctx context.Context, username, fingerprint, reason string) error {
	st, stdout := d.st, d.stdout
	if username == "" || fingerprint == "" {
		return errors.New("-username and -device (the fingerprint, as list-devices prints it) are required")
	}
	u, err := st.UserByName(ctx, username)
	if err != nil {
		return fmt.Errorf("no user %q", username)
	}
	a, err := d.authority()
	if err != nil {
		return err
	}
	devs, err := a.Devices(ctx, u)
	if err != nil {
		return err
	}
	for _, dev := range devs {
		if ra.SameFingerprint(dev.Fingerprint, fingerprint) {
			if err := a.Revoke(ctx, u, dev.PublicKey, reason); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Device %s of %s revoked. Meetings it is in drop it within seconds.\n", dev.Fingerprint, username)
			return nil
		}
	}
	return fmt.Errorf("%s has no device with fingerprint %q (see list-devices)", username, fingerprint)
}

// revokeAll revokes every device of u, for a deactivated account; an
// organisation that never started the server has no log to write to.
func (d deviceAdmin) revokeAll(ctx context.Context, u store.User, reason string) (int, error) {
	a, err := d.authority()
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(d.dataDir, "e2ee", "org-id")); errors.Is(statErr, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	return a.RevokeUser(ctx, u, reason)
}
