package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"conclave/internal/audit"
	"conclave/internal/backup"
	"conclave/internal/pki"
	"conclave/internal/secrets"
	"conclave/internal/selfcheck"
	"conclave/internal/server"
	"conclave/internal/store"
	"conclave/internal/version"
)

// The operator's commands: audit, backup, cert, selfcheck
// (docs/admin.md). Each works on the data directory with the server
// running or not, and records what it changes in the audit log.

const auditUsage = `Usage:
  conclave audit verify                 check the chain, the seals and the audit files
  conclave audit export [-format csv|json] [-action A] [-actor U] [-outcome O]
                        [-since DATE] [-until DATE] [-q TEXT] [-o FILE]

Every command accepts -data DIR (env CONCLAVE_DATA) and the master key flags.
`

func auditCmd(args []string, stdout, stderr io.Writer) int {
	var f store.AuditFilter
	var format, out, since, until string
	cmd, cfg, code, ok := subcommand("audit", args, auditUsage, stderr, func(cmd string, fs *flag.FlagSet) bool {
		switch cmd {
		case "verify":
		case "export":
			fs.StringVar(&format, "format", "csv", "csv or json")
			fs.StringVar(&f.Action, "action", "", "only this action")
			fs.StringVar(&f.Actor, "actor", "", "only this actor")
			fs.StringVar(&f.Outcome, "outcome", "", "only this outcome (success, failure, info)")
			fs.StringVar(&f.Text, "q", "", "only records holding this text")
			fs.StringVar(&since, "since", "", "only records from this date (2026-12-05) or time (RFC 3339)")
			fs.StringVar(&until, "until", "", "only records before this date or time")
			fs.StringVar(&out, "o", "", "write to this file instead of standard output")
		default:
			return false
		}
		return true
	})
	if !ok {
		return code
	}
	n, err := openNode(cfg, false, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "conclave audit: %v\n", err)
		return 1
	}
	defer n.Close()
	st, rec := n.st, n.audit
	ctx := context.Background()
	switch cmd {
	case "verify":
		res, err := audit.VerifyLog(ctx, st, audit.VerifyOptions{Key: rec.log.Key(), Dir: filepath.Join(cfg.DataDir, "audit")})
		outcome := audit.OutcomeSuccess
		if err != nil {
			outcome = audit.OutcomeFailure
		}
		rec.Record(ctx, audit.Event{Action: audit.ActionAuditVerified, Target: "audit", Outcome: outcome,
			Details: map[string]string{"records": fmt.Sprint(res.Records)}})
		if err != nil {
			fmt.Fprintf(stderr, "conclave audit verify: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "The audit log is intact: %d records in the database (%d to %d), %d in %d audit files; every record is chained", res.Records, res.FirstSeq, res.LastSeq, res.FileRecords, len(res.Files))
		if res.Unsealed > 0 {
			fmt.Fprintf(stdout, ", and sealed except the %d written before the audit key existed (covered by the first seal after them)", res.Unsealed)
		} else {
			fmt.Fprint(stdout, " and sealed")
		}
		fmt.Fprintf(stdout, ".\nLast record: %d, hash %x\n", res.LastSeq, res.LastHash)
		return 0
	case "export":
		for _, t := range []struct {
			v   string
			dst *time.Time
		}{{since, &f.Since}, {until, &f.Until}} {
			if t.v == "" {
				continue
			}
			tm, err := time.Parse(time.RFC3339, t.v)
			if err != nil {
				if tm, err = time.Parse("2006-01-02", t.v); err != nil {
					fmt.Fprintf(stderr, "conclave audit export: %q is neither a date (2026-12-05) nor an RFC 3339 time\n", t.v)
					return 2
				}
			}
			*t.dst = tm
		}
		if format != "csv" && format != "json" {
			fmt.Fprintln(stderr, "conclave audit export: -format must be csv or json")
			return 2
		}
		recs, err := st.ListAudit(ctx, f)
		if err != nil {
			fmt.Fprintf(stderr, "conclave audit export: %v\n", err)
			return 1
		}
		w := stdout
		if out != "" {
			fh, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				fmt.Fprintf(stderr, "conclave audit export: %v\n", err)
				return 1
			}
			defer fh.Close()
			w = fh
		}
		fr := make([]audit.FileRecord, len(recs))
		for i, r := range recs {
			fr[i] = audit.ToFile(r)
		}
		if format == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			err = enc.Encode(fr)
		} else {
			err = audit.WriteCSV(w, fr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "conclave audit export: %v\n", err)
			return 1
		}
		rec.Record(ctx, audit.Event{Action: audit.ActionAuditExported, Target: "audit", Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"format": format, "records": fmt.Sprint(len(fr))}})
	}
	return 0
}

const backupUsage = `Usage:
  conclave backup create [-o FILE]          encrypted backup of the data directory (default: into <data>/backups)
  conclave backup restore -in FILE -data NEWDIR
                                            restore onto a new data directory
  conclave backup list                      the backups in <data>/backups
  conclave backup check -in FILE            check that a backup opens, and show what it holds

The passphrase is read from CONCLAVE_BACKUP_PASSPHRASE, else from the
first line of standard input with -passphrase-stdin, else from the terminal.
Every command accepts -data DIR (env CONCLAVE_DATA) and the master key flags.
`

func backupCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var in, out string
	var passStdin bool
	cmd, cfg, code, ok := subcommand("backup", args, backupUsage, stderr, func(cmd string, fs *flag.FlagSet) bool {
		switch cmd {
		case "create":
			fs.StringVar(&out, "o", "", "write the backup to this file instead of <data>/backups")
			fs.BoolVar(&passStdin, "passphrase-stdin", false, "read the passphrase from the first line of standard input")
		case "restore", "check":
			fs.StringVar(&in, "in", "", "the backup file")
			fs.BoolVar(&passStdin, "passphrase-stdin", false, "read the passphrase from the first line of standard input")
		case "list":
		default:
			return false
		}
		return true
	})
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave backup %s: %v\n", cmd, err)
		return 1
	}
	passphrase := func() (string, error) {
		if p, ok := os.LookupEnv("CONCLAVE_BACKUP_PASSPHRASE"); ok {
			return p, nil
		}
		if passStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return "", err
			}
			return strings.TrimRight(line, "\r\n"), nil
		}
		return promptPassphrase("Backup passphrase: ")
	}
	// openBackup opens the backup of -in and asks for its passphrase.
	openBackup := func() (*os.File, string, error) {
		if in == "" {
			return nil, "", errors.New("-in is required")
		}
		p, err := passphrase()
		if err != nil {
			return nil, "", err
		}
		f, err := os.Open(in)
		return f, p, err
	}
	ctx := context.Background()
	switch cmd {
	case "list":
		ents, err := os.ReadDir(filepath.Join(cfg.DataDir, backup.Dir))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSIZE")
		for _, e := range ents {
			if info, err := e.Info(); err == nil && backup.IsBackupName(e.Name()) {
				fmt.Fprintf(tw, "%s\t%d\n", e.Name(), info.Size())
			}
		}
		tw.Flush()
		return 0
	case "check":
		f, p, err := openBackup()
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		h, names, err := backup.Inspect(f, p)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Backup of node %s made %s by Conclave %s; it opens and holds %d entries:\n", h.Node, h.Created.Format(time.RFC3339), h.Version, len(names))
		for _, n := range names {
			fmt.Fprintln(stdout, "  "+n)
		}
		return 0
	case "restore":
		f, p, err := openBackup()
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := askSecretsPassphrase(&cfg); err != nil {
			return fail(err)
		}
		h, err := server.RestoreDataDir(f, p, cfg)
		if err != nil {
			return fail(err)
		}
		n, err := openNode(cfg, false, stderr)
		if err != nil {
			return fail(err)
		}
		defer n.Close()
		n.audit.Record(ctx, audit.Event{Action: audit.ActionBackupRestored, Target: filepath.Base(in), Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"created": h.Created.Format(time.RFC3339), "node": h.Node, "version": h.Version}})
		start := "-data " + cfg.DataDir
		if cfg.Database != "" {
			start += " -database ..."
		}
		fmt.Fprintf(stdout, "Restored the backup of node %s made %s into %s. %s Start Conclave on it: 'conclave serve %s'.\n", h.Node, h.Created.Format(time.RFC3339), cfg.DataDir, h.Database, start)
		return 0
	case "create":
		p, err := passphrase()
		if err != nil {
			return fail(err)
		}
		n, err := openNode(cfg, false, stderr)
		if err != nil {
			return fail(err)
		}
		defer n.Close()
		rec := n.audit
		host, _ := os.Hostname()
		src := backup.Source{DataDir: cfg.DataDir, Box: n.box, Snapshot: n.st.Snapshot, SnapshotName: server.SnapshotName(n.st), Version: version.Get().Version, Node: host, Now: time.Now()}
		var name string
		if out == "" {
			m, err := backup.NewManager(backup.ManagerConfig{Source: src})
			if err != nil {
				return fail(err)
			}
			info, err := m.Create(ctx, p)
			if err != nil {
				return fail(err)
			}
			name = filepath.Join(cfg.DataDir, backup.Dir, info.Name)
		} else {
			fh, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fail(err)
			}
			_, err = backup.Create(ctx, fh, p, src)
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(out)
				return fail(err)
			}
			name = out
		}
		rec.Record(ctx, audit.Event{Action: audit.ActionBackupCreated, Target: filepath.Base(name), Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"trigger": "cli"}})
		fmt.Fprintf(stdout, "Backup written to %s. Keep the passphrase: without it the backup cannot be opened.\n", name)
		return 0
	}
	return 0
}

const certUsage = `Usage:
  conclave cert csr [-key-type ecdsa-p256|ecdsa-p384|rsa-3072|rsa-4096] -name NAME [-name ...]
                    [-cn NAME] [-org ORG] [-country CC] [-node NODE]   print a certificate signing request
  conclave cert import -chain FILE [-node NODE]                         install the signed certificate
  conclave cert trust -name NAME -ca FILE                               trust CA certificates (LDAP, syslog)
  conclave cert list

A running server serves an imported certificate within a minute, without a restart.
Every command accepts -data DIR (env CONCLAVE_DATA) and the master key flags.
`

func certCmd(args []string, stdout, stderr io.Writer) int {
	host, _ := os.Hostname()
	var req pki.CSRRequest
	var node, file, name string
	cmd, cfg, code, ok := subcommand("cert", args, certUsage, stderr, func(cmd string, fs *flag.FlagSet) bool {
		switch cmd {
		case "csr":
			fs.StringVar(&req.KeyType, "key-type", "ecdsa-p256", "ecdsa-p256, ecdsa-p384, rsa-3072 or rsa-4096")
			fs.Func("name", "DNS name or IP address the certificate covers; repeatable", func(v string) error {
				req.Names = append(req.Names, v)
				return nil
			})
			fs.StringVar(&req.CommonName, "cn", "", "subject common name (default: the first name)")
			fs.StringVar(&req.Organization, "org", "", "subject organisation")
			fs.StringVar(&req.Country, "country", "", "subject country (two letters)")
			fs.StringVar(&node, "node", host, "node the certificate is for")
		case "import":
			fs.StringVar(&file, "chain", "", "PEM file: the certificate, then its intermediates")
			fs.StringVar(&node, "node", host, "node the certificate is for")
		case "trust":
			fs.StringVar(&name, "name", "", "short name for these CA certificates")
			fs.StringVar(&file, "ca", "", "PEM file of CA certificates")
		case "list":
		default:
			return false
		}
		return true
	})
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "conclave cert %s: %v\n", cmd, err)
		return 1
	}
	n, err := openNode(cfg, false, stderr)
	if err != nil {
		return fail(err)
	}
	defer n.Close()
	box, rec := n.box, n.audit
	ctx := context.Background()
	// A change made here is signed into the self-check's manifest, so that
	// the running server does not take it for an intrusion.
	commit := func() error {
		exe, _ := os.Executable()
		c, _, err := selfcheck.Open(selfcheck.Config{DataDir: cfg.DataDir, Box: box, Binary: exe, Version: version.Get().Version})
		if err != nil {
			return err
		}
		return c.Commit()
	}
	switch cmd {
	case "csr":
		csr, err := pki.CreateCSR(cfg.DataDir, node, req, box)
		if err != nil {
			return fail(err)
		}
		rec.Record(ctx, audit.Event{Action: audit.ActionCSRCreated, Target: strings.Join(req.Names, ","), Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"key_type": req.KeyType, "node": node}})
		stdout.Write(csr)
	case "import":
		data, err := os.ReadFile(file)
		if err != nil {
			return fail(err)
		}
		cert, err := pki.ImportCertificate(cfg.DataDir, node, data, nil, time.Now(), box)
		if err != nil {
			rec.Record(ctx, audit.Event{Action: audit.ActionCertImported, Target: node, Outcome: audit.OutcomeFailure, Details: map[string]string{"error": err.Error()}})
			return fail(err)
		}
		if err := commit(); err != nil {
			return fail(err)
		}
		info := pki.Describe("server", cert.Leaf)
		rec.Record(ctx, audit.Event{Action: audit.ActionCertImported, Target: info.Subject, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"fingerprint": info.Fingerprint, "node": node}})
		fmt.Fprintf(stdout, "Installed %s for node %s (valid until %s, SHA-256 %s).\n", info.Subject, node, info.NotAfter.Format(time.DateOnly), info.Fingerprint)
	case "trust":
		data, err := os.ReadFile(file)
		if err != nil {
			return fail(err)
		}
		certs, err := pki.ImportTrustedCA(cfg.DataDir, name, data)
		if err != nil {
			return fail(err)
		}
		if err := commit(); err != nil {
			return fail(err)
		}
		rec.Record(ctx, audit.Event{Action: audit.ActionCAImported, Target: name, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"certificates": fmt.Sprint(len(certs))}})
		fmt.Fprintf(stdout, "Trusting %d CA certificates as %q.\n", len(certs), name)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tSUBJECT\tNOT AFTER\tKEY")
		cas, err := pki.TrustedCAs(cfg.DataDir)
		if err != nil {
			return fail(err)
		}
		for n, cs := range cas {
			for _, c := range cs {
				i := pki.Describe("trusted-ca:"+n, c)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Role, i.Subject, i.NotAfter.Format(time.DateOnly), i.KeyType)
			}
		}
		if c, err := pki.LoadNode(cfg.DataDir, host, box); err == nil {
			i := pki.Describe("server (node "+host+")", c.Leaf)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Role, i.Subject, i.NotAfter.Format(time.DateOnly), i.KeyType)
		}
		tw.Flush()
	}
	return 0
}

const selfcheckUsage = `Usage:
  conclave selfcheck check   compare the protected configuration with the signed manifest (changes nothing)
  conclave selfcheck reset   sign the present configuration as the good one (after a refusal you checked)
`

func selfcheckCmd(args []string, stdout, stderr io.Writer) int {
	cmd, cfg, code, ok := subcommand("selfcheck", args, selfcheckUsage, stderr, func(cmd string, fs *flag.FlagSet) bool {
		return cmd == "check" || cmd == "reset"
	})
	if !ok {
		return code
	}
	// The master key opens the manifest key; the audit log, where there
	// is a database, records a reset.
	var box *secrets.Box
	n, err := openNode(cfg, false, stderr)
	if err == nil {
		defer n.Close()
		box = n.box
	} else if box, err = masterKey(cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "conclave selfcheck: %v\n", err)
		return 1
	}
	exe, _ := os.Executable()
	sc := selfcheck.Config{DataDir: cfg.DataDir, Box: box, Binary: exe, Version: version.Get().Version}
	switch cmd {
	case "check":
		c, _, err := selfcheck.Open(sc)
		if err != nil {
			fmt.Fprintf(stderr, "conclave selfcheck: %v\n", err)
			return 1
		}
		diff, err := c.Diff()
		if err != nil {
			fmt.Fprintf(stderr, "conclave selfcheck: %v\n", err)
			return 1
		}
		if len(diff) == 0 {
			fmt.Fprintf(stdout, "The %d protected files match the manifest signed %s.\n", len(c.Files()), c.Signed().Format(time.RFC3339))
			return 0
		}
		for _, ch := range diff {
			fmt.Fprintf(stdout, "%s: %s\n", ch.Path, ch.What)
		}
		return 1
	case "reset":
		if err := selfcheck.Reset(sc); err != nil {
			fmt.Fprintf(stderr, "conclave selfcheck: %v\n", err)
			return 1
		}
		if n != nil {
			n.audit.Record(context.Background(), audit.Event{Action: "self-check-reset", Target: "configuration", Outcome: audit.OutcomeSuccess})
		}
		fmt.Fprintln(stdout, "The present configuration is signed as the good one.")
		return 0
	}
	fmt.Fprintf(stderr, "conclave selfcheck: unknown command %q\n\n%s", cmd, selfcheckUsage)
	return 2
}
