package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"conclave/internal/ra"
	"conclave/internal/store"
)

// Device administration (docs/e2ee.md, section 7): list the devices the
// E2EE log certified for a user, revoke one, or disable a user, which
// revokes all of them. The server may be running: it reads the log's new
// records within 2 s and sends the revoked devices away.

func openAuthority(dataDir string, st store.Store) (*ra.Authority, error) {
	return ra.Open(dataDir, "", "", st, nil)
}

func listDevices(ctx context.Context, st store.Store, dataDir, username string, stdout io.Writer) error {
	if username == "" {
		return errors.New("-username is required")
	}
	u, err := st.UserByName(ctx, username)
	if err != nil {
		return fmt.Errorf("no user %q", username)
	}
	a, err := openAuthority(dataDir, st)
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
	for _, d := range devs {
		state := "active"
		if d.Revoked {
			state = "revoked " + d.RevokedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.Fingerprint, d.FirstCertified.Local().Format(time.DateTime),
			d.LastNotAfter.Local().Format(time.DateTime), d.Credentials, state)
	}
	return tw.Flush()
}

func revokeDevice(ctx context.Context, st store.Store, dataDir, username, fingerprint, reason string, stdout io.Writer) error {
	if username == "" || fingerprint == "" {
		return errors.New("-username and -device (the fingerprint, as list-devices prints it) are required")
	}
	u, err := st.UserByName(ctx, username)
	if err != nil {
		return fmt.Errorf("no user %q", username)
	}
	a, err := openAuthority(dataDir, st)
	if err != nil {
		return err
	}
	devs, err := a.Devices(ctx, u)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if ra.SameFingerprint(d.Fingerprint, fingerprint) {
			if err := a.Revoke(ctx, u, d.PublicKey, reason); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Device %s of %s revoked. Meetings it is in drop it within seconds.\n", d.Fingerprint, username)
			return nil
		}
	}
	return fmt.Errorf("%s has no device with fingerprint %q (see list-devices)", username, fingerprint)
}

func disableUser(ctx context.Context, st store.Store, dataDir, username, reason string, stdout io.Writer) error {
	if username == "" {
		return errors.New("-username is required")
	}
	u, err := st.UserByName(ctx, username)
	if err != nil {
		return fmt.Errorf("no user %q", username)
	}
	if err := st.SetUserEnabled(ctx, u.ID, false); err != nil {
		return err
	}
	n, err := st.DeleteUserSessions(ctx, u.ID)
	if err != nil {
		return err
	}
	a, err := openAuthority(dataDir, st)
	if err != nil {
		return fmt.Errorf("%s is disabled and signed out, but its devices could not be revoked: %w", username, err)
	}
	if reason == "" {
		reason = "account disabled"
	}
	revoked, err := a.RevokeUser(ctx, u, reason)
	if err != nil {
		return fmt.Errorf("%s is disabled and signed out, but revoking its devices failed after %d: %w", username, revoked, err)
	}
	fmt.Fprintf(stdout, "User %s disabled: %d session(s) ended, %d device(s) revoked.\n", username, n, revoked)
	return nil
}
