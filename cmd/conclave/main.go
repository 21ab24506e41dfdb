// Command conclave is the Conclave video meeting platform: one binary for the
// server (`conclave serve`), its administration from the shell
// (`conclave admin ...`), the native client (`conclave join`) and the load
// tester (`conclave loadtest`).
package main

import (
	"fmt"
	"io"
	"os"

	"conclave/internal/version"
)

const usage = `Conclave — self-hosted, end-to-end encrypted video meetings.

Usage:
  conclave serve [flags]          run the all-in-one server
  conclave admin <command> ...    manage users and rooms from the shell
  conclave join [flags] <URL>     join a meeting as a native participant
  conclave check-devices <URL>    list the devices certified for your account (E2EE log)
  conclave device <command> ...   enrol a SIP device at the registration authority
  conclave loadtest [flags]       measure a server under load (docs/benchmarks.md)
  conclave audit <command> ...    verify and export the audit log
  conclave backup <command> ...   create, check and restore encrypted backups
  conclave cert <command> ...     certificate requests, imports and trusted CAs
  conclave selfcheck <command>    check or re-sign the protected configuration
  conclave cluster <command> ...  enrol, list and remove conference nodes (docs/cluster.md)
  conclave node <command> ...     on a node: enrol with the management node, renew, status
  conclave nats-server -c FILE    run a NATS server of the cluster's bus (external --nats)
  conclave version                print the version and build

Run 'conclave <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "admin":
		return admin(args[1:], stdin, stdout, stderr)
	case "join":
		return join(args[1:], stdout, stderr)
	case "check-devices":
		return checkDevices(args[1:], stdout, stderr)
	case "device":
		return device(args[1:], stdout, stderr)
	case "loadtest":
		return runLoadtest(args[1:], stdout, stderr)
	case "audit":
		return auditCmd(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdin, stdout, stderr)
	case "cert":
		return certCmd(args[1:], stdout, stderr)
	case "selfcheck":
		return selfcheckCmd(args[1:], stdout, stderr)
	case "cluster":
		return clusterCmd(args[1:], stdout, stderr)
	case "nats-server":
		return natsServerCmd(args[1:], stdout, stderr)
	case "node":
		return nodeCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.Get())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "conclave: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
