package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"conclave/internal/client/termpass"
	"conclave/internal/devca"
	"conclave/internal/pki"
)

const deviceUsage = `Usage:
  conclave device enrol --server https://host:8443 --token TOKEN [--key ecdsa-p256] [--dir DIR]
      make a device key and a certificate request, and have the server's
      registration authority sign it with a one-time enrolment token (from the
      admin page or your account page). Writes DIR/device.key (encrypted
      PKCS#8, the passphrase is asked for), DIR/device.crt and DIR/device-ca.crt.
  conclave device export --dir DIR --out FILE
      write the certificate and the decrypted key into one PEM file for a SIP
      client that cannot read encrypted keys (such as baresip); keep FILE safe.

Both read the passphrase from the terminal, or from --passphrase-file.
`

func device(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, deviceUsage)
		return 2
	}
	switch args[0] {
	case "enrol", "enroll":
		return deviceEnrol(args[1:], stdout, stderr)
	case "export":
		return deviceExport(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, deviceUsage)
		return 0
	}
	fmt.Fprintf(stderr, "conclave device: unknown command %q\n\n%s", args[0], deviceUsage)
	return 2
}

// readPassphrase reads the key passphrase from file, or asks on the
// terminal (twice when confirm is set).
func readPassphrase(file string, confirm bool) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	p, err := termpass.Read("Passphrase for the device key: ")
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w; give --passphrase-file", err)
	}
	if confirm {
		again, err := termpass.Read("Again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("the two passphrases differ")
		}
	}
	return p, nil
}

func deviceEnrol(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conclave device enrol", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the server's https URL, e.g. https://meet.example.org:8443")
	token := fs.String("token", "", "the one-time enrolment token")
	kind := fs.String("key", "ecdsa-p256", "key type: "+strings.Join(devca.KeyKinds, ", "))
	dir := fs.String("dir", ".", "directory to write device.key, device.crt and device-ca.crt into")
	ca := fs.String("ca", "", "PEM file of the CA that signed the server's HTTPS certificate (default: system roots)")
	passFile := fs.String("passphrase-file", "", "file holding the key passphrase (default: ask on the terminal)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *server == "" || *token == "" {
		fmt.Fprintln(stderr, "conclave device enrol: --server and --token are required")
		return 2
	}
	if !strings.HasPrefix(*server, "https://") {
		fmt.Fprintln(stderr, "conclave device enrol: --server must be an https:// URL; the token must not travel in clear")
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave device enrol: %v\n", err)
		return 1
	}
	keyPath := filepath.Join(*dir, "device.key")
	if _, err := os.Stat(keyPath); err == nil {
		return fail(fmt.Errorf("%s exists; enrol into another --dir, or remove it after revoking its certificate", keyPath))
	}
	roots, err := trustedRoots(*ca, "")
	if err != nil {
		return fail(err)
	}
	pass, err := readPassphrase(*passFile, true)
	if err != nil {
		return fail(err)
	}
	if len(pass) < devca.MinPassphrase {
		return fail(fmt.Errorf("the passphrase must have at least %d characters", devca.MinPassphrase))
	}
	key, err := devca.GenerateKey(*kind)
	if err != nil {
		return fail(err)
	}
	csr, err := devca.MakeCSR(key, "device")
	if err != nil {
		return fail(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(roots)}}
	res, err := devca.RequestEnrol(context.Background(), hc, *server, *token, csr)
	if err != nil {
		return fail(err)
	}
	if err := checkIssued(res, key.Public()); err != nil {
		return fail(err)
	}
	keyPEM, err := devca.EncryptKey(key, pass)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fail(err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"device.key", keyPEM, 0o600}, {"device.crt", []byte(res.Certificate), 0o644}, {"device-ca.crt", []byte(res.CA), 0o644}} {
		if err := os.WriteFile(filepath.Join(*dir, f.name), f.data, f.mode); err != nil {
			return fail(err)
		}
	}
	need := "the registrar does not ask for it now; keep it in case it is turned on (--sip-digest)"
	if res.DigestRequired {
		need = "the registrar asks for it: enter it in the phone as its SIP password"
	}
	fmt.Fprintf(stdout, "Digest secret of this device (user %s; shown once; %s):\n\n  %s\n\n",
		strings.ToLower(res.Username), need, res.DigestPassword)
	fmt.Fprintf(stdout, "Enrolled %s.\n\n  Address of record: %s\n  Registrar:         sips over TLS %s (domain %s)\n  Certificate:       %s (serial %s, until %s)\n  Fingerprint:       %s\n  Key:               %s (encrypted PKCS#8)\n  Device CA:         %s\n",
		res.Username, res.AOR, res.Registrar, res.Domain, filepath.Join(*dir, "device.crt"), res.Serial, res.NotAfter,
		res.Fingerprint, keyPath, filepath.Join(*dir, "device-ca.crt"))
	return 0
}

// checkIssued makes sure the certificate returned is for our key.
func checkIssued(res devca.EnrolResponse, pub any) error {
	b, _ := pem.Decode([]byte(res.Certificate))
	if b == nil {
		return errors.New("the server returned no certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("the server returned an unreadable certificate: %w", err)
	}
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(pub) {
		return errors.New("the server returned a certificate for another key; do not use it")
	}
	return nil
}

func deviceExport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conclave device export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory holding device.key and device.crt")
	out := fs.String("out", "", "PEM file to write (certificate and clear key, mode 0600)")
	passFile := fs.String("passphrase-file", "", "file holding the key passphrase (default: ask on the terminal)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave device export: %v\n", err)
		return 1
	}
	if *out == "" {
		return fail(errors.New("--out is required"))
	}
	keyPEM, err := os.ReadFile(filepath.Join(*dir, "device.key"))
	if err != nil {
		return fail(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(*dir, "device.crt"))
	if err != nil {
		return fail(err)
	}
	pass, err := readPassphrase(*passFile, false)
	if err != nil {
		return fail(err)
	}
	key, err := devca.DecryptKey(keyPEM, pass)
	if err != nil {
		return fail(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fail(err)
	}
	data := append(append([]byte{}, certPEM...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	if err := os.WriteFile(*out, data, 0o600); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "Wrote %s (certificate and key in clear, mode 0600): keep it on the device only.\n", *out)
	return 0
}
