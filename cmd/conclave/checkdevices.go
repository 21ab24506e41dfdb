package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/pki"
)

const checkDevicesUsage = `Usage: conclave check-devices [flags] <server or meeting URL>

Reads the server's E2EE identity log (docs/e2ee.md, section 13), checks
that it extends what this device saw before, and lists the devices
certified for this device's account, warning about any certified since
this device was. Uses the key directory of 'conclave join --user'.

Flags:
`

// checkDevices runs 'conclave check-devices'.
func checkDevices(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conclave check-devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, checkDevicesUsage)
		fs.PrintDefaults()
	}
	keyDir := fs.String("key-dir", os.Getenv("CONCLAVE_KEY_DIR"), "directory of the device key (default: <user config dir>/conclave; env CONCLAVE_KEY_DIR)")
	ca := fs.String("ca", "", "trust the CA certificate(s) in this PEM file instead of the system roots")
	data := fs.String("data", os.Getenv("CONCLAVE_DATA"), "server data directory: trust its <data>/tls/ca.crt")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave check-devices: %v\n", err)
		return 1
	}
	if *keyDir == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return fail(err)
		}
		*keyDir = filepath.Join(dir, "conclave")
	}
	u := strings.TrimRight(fs.Arg(0), "/")
	if !strings.Contains(u, "/r/") {
		u += "/r/x"
	}
	m, err := client.ParseMeetingURL(u)
	if err != nil {
		return fail(err)
	}
	roots, err := trustedRoots(*ca, *data)
	if err != nil {
		return fail(err)
	}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(roots)}}
	ctx := context.Background()
	device, _, err := secure.LoadOrCreateDeviceKey(filepath.Join(*keyDir, "device.key"), askPassphrase, false)
	if err != nil {
		return fail(err)
	}
	server := strings.TrimPrefix(m.Origin, "https://")
	org, err := secure.FetchOrg(ctx, hc, m.Base)
	if err != nil {
		return fail(err)
	}
	pinned, status, err := secure.CheckPin(filepath.Join(*keyDir, "known-orgs"), server, org)
	if err != nil {
		return fail(err)
	}
	if status == secure.PinChanged {
		return fail(fmt.Errorf("THE ORGANISATION KEY OF %s CHANGED: the log cannot be checked against it", server))
	}
	out := &joinPrinter{w: stdout}
	logKey := pinLog(*keyDir, server, org.LogKey, out)
	if logKey == "" {
		return 1
	}
	orgKey, _ := pinned.Key()
	mon, err := secure.NewLogMonitor(secure.LogMonitorConfig{API: secure.HTTPLog{Client: hc, Base: m.Base}, VerifierKey: logKey,
		OrgKey: orgKey, OrgID: pinned.ID, StatePath: logStatePath(*keyDir, server), Device: &device.PublicKey})
	if err != nil {
		return fail(err)
	}
	if mon.User() == "" {
		return fail(errors.New("this device has no account on this server yet: join once with 'conclave join --user NAME'"))
	}
	alarm := false
	mon.Listen(func(e secure.LogEvent) {
		switch e.Kind {
		case secure.LogNewDevice:
			alarm = true
			fmt.Fprintf(stdout, "WARNING: A NEW DEVICE WAS CERTIFIED FOR YOUR ACCOUNT: %s, on %s. If it is not one of yours, tell your administrator at once.\n",
				e.Fingerprint, e.At.Local().Format(time.DateTime))
		case secure.LogSplit:
			alarm = true
			fmt.Fprintf(stdout, "WARNING: THE SERVER SHOWED DIFFERENT VERSIONS OF THE IDENTITY LOG: %s\n", e.Text)
		}
	})
	if err := mon.Refresh(ctx); err != nil {
		return fail(err)
	}
	if s := mon.Split(); s != "" && !alarm {
		alarm = true
		fmt.Fprintf(stdout, "WARNING: THE SERVER SHOWED DIFFERENT VERSIONS OF THE IDENTITY LOG: %s\n", s)
	}
	cp := mon.Checkpoint()
	fmt.Fprintf(stdout, "Identity log of %s: %d records, consistent with what this device saw before.\n", server, cp.Size)
	own, _ := e2ee.MarshalPublicKey(&device.PublicKey)
	fmt.Fprintln(stdout, "Devices certified for your account:")
	for key, at := range mon.Devices() {
		pub, err := e2ee.ParsePublicKey([]byte(key))
		if err != nil {
			continue
		}
		fp, _ := e2ee.Fingerprint(pub)
		me := ""
		if key == string(own) {
			me = "  (this device)"
		}
		fmt.Fprintf(stdout, "  %s  first certified %s%s\n", fp, at.Local().Format(time.DateTime), me)
	}
	if alarm {
		return 3
	}
	return 0
}
