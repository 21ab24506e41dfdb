package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"conclave/internal/bus"
	"conclave/internal/config"
	"conclave/internal/nodeca"
	"conclave/internal/server"
	"conclave/internal/store"
)

const clusterUsage = `Usage:
  conclave cluster add-node -name NAME [-role conference|edge] [-labels L] [-management HOST:PORT] [-ttl 24h]
                                   make a one-time enrolment token and print the command
                                   that enrols the node with it
  conclave cluster list-nodes      the enrolled nodes and their certificates
  conclave cluster remove-node -name NAME
                                   take a node out and revoke its certificates
  conclave cluster nats-config -out DIR -host NAME... [-server-name nats-1] [-listen 0.0.0.0:4222]
                               [-path DIR] [-jetstream DIR] [-cluster conclave -routes HOST:PORT,...]
                                   write the configuration of an external NATS server for --nats:
                                   TLS with the cluster CA, a user per node with its permissions,
                                   JetStream, routes; the server's certificate for the host names;
                                   run it with conclave nats-server -c DIR/nats-server.conf
  conclave cluster nats-config -out DIR -users-only
                                   after a node is enrolled or removed: write its users again,
                                   then send the NATS server SIGHUP (nats-server --signal reload)

Flags common to all: --data, --database (as for conclave serve).
`

const nodeUsage = `Usage:
  conclave node run --nats tls://MANAGEMENT:4222 [--management HOST:PORT] [--listen :8443] [--media-udp :8443]
                    [--relay-listen :8447] [--host NAME]... [--public-url URL] [--data DIR]
                                   run this machine as a conference node of the cluster
  conclave node drain [--off] [--wait 2m] [--data DIR]
                                   move the participants of the running node to the other
                                   nodes and take no new ones (maintenance); --off ends it
  conclave node enrol -management HOST:PORT -token TOKEN -ca-pin sha256:... [-host ADDR]... [--data DIR]
                                   enrol this machine as a node of the cluster: make its
                                   P-384 key and fetch its certificate
  conclave node renew -management HOST:PORT [--data DIR]
                                   renew the node certificate now
  conclave node status [--data DIR]
                                   the node's name, role and certificate
`

// clusterCmd runs `conclave cluster ...` on the management node's data.
func clusterCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("conclave cluster "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Defaults()
	config.RegisterDataDir(fs, &cfg)
	config.RegisterSecrets(fs, &cfg)
	var name, role, labels, mgmt string
	var ttl time.Duration
	var natsDir bus.ExternalDir
	switch cmd {
	case "add-node":
		fs.StringVar(&name, "name", "", "the node's name (lower-case letters, digits, '-')")
		fs.StringVar(&role, "role", nodeca.RoleConference, "conference or edge")
		fs.StringVar(&labels, "labels", "", "location labels, comma-separated (node selection by location)")
		fs.StringVar(&mgmt, "management", "", "the cluster listener's address as the node reaches it (default: this machine's first address and port 8445)")
		fs.DurationVar(&ttl, "ttl", nodeca.TokenLifetime, "how long the token stays valid")
	case "remove-node":
		fs.StringVar(&name, "name", "", "the node's name")
	case "list-nodes":
	case "nats-config":
		fs.StringVar(&natsDir.Dir, "out", "", "the directory to write the NATS server's files into")
		fs.Func("host", "a name or address the nodes reach the NATS server at (the host of --nats), for its certificate; repeatable or comma-separated", func(v string) error {
			natsDir.Hosts = append(natsDir.Hosts, splitComma(v)...)
			return nil
		})
		fs.StringVar(&natsDir.Server.Name, "server-name", "nats-1", "the NATS server's name, unique among the servers of its NATS cluster")
		fs.StringVar(&natsDir.Server.Listen, "listen", "0.0.0.0:4222", "where the NATS server listens for the nodes")
		fs.StringVar(&natsDir.Path, "path", "", "where the files will be on the NATS host (default: -out)")
		fs.StringVar(&natsDir.Server.StoreDir, "jetstream", "", "JetStream's directory on the NATS host (default: PATH/jetstream)")
		fs.StringVar(&natsDir.Server.Cluster, "cluster", "conclave", "the NATS cluster's name (with -routes)")
		fs.Func("routes", "HOST:PORT of every server of the NATS cluster, comma-separated (several NATS servers)", func(v string) error {
			natsDir.Server.Routes = append(natsDir.Server.Routes, splitComma(v)...)
			return nil
		})
		fs.StringVar(&natsDir.Server.RouteListen, "route-listen", "0.0.0.0:6222", "where the NATS server listens for the others (with -routes)")
		fs.BoolVar(&natsDir.UsersOnly, "users-only", false, "write only the users (after a node is enrolled or removed)")
	default:
		fmt.Fprintf(stderr, "conclave cluster: unknown command %q\n\n%s", cmd, clusterUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if cmd == "nats-config" && (natsDir.Dir == "" || len(natsDir.Hosts) == 0 && !natsDir.UsersOnly) {
		fmt.Fprintf(stderr, "conclave cluster nats-config: give -out DIR and, unless -users-only, the NATS server's host names (-host)\n")
		return 2
	}
	if err := cfg.ValidateDatabase(); err != nil {
		fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
		return 1
	}
	st, err := store.Open(cfg.StoreName())
	if err != nil {
		fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
		return 1
	}
	defer st.Close()
	ctx := context.Background()
	// The cluster CA's key is sealed under the master key when there is
	// one.
	box, err := masterKey(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
		return 1
	}
	ca, err := nodeca.OpenSealed(filepath.Join(cfg.DataDir, server.ClusterDir), firstHost(), st, nil, box)
	if err != nil {
		fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
		return 1
	}
	switch cmd {
	case "add-node":
		if mgmt == "" {
			mgmt = firstHost() + ":8445"
		}
		tok, err := ca.NewToken(ctx, name, role, labels, "cli", ttl)
		if err != nil {
			fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "Enrolment token for node %s (%s), valid %s, usable once.\nOn the node, run:\n\n  conclave node enrol -management %s -token %s -ca-pin %s\n",
			name, role, ttl, mgmt, tok, ca.Fingerprint())
	case "remove-node":
		if err := ca.Remove(ctx, name); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				err = fmt.Errorf("no node called %q is part of the cluster", name)
			}
			fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "Node %s removed; its certificates are revoked (a running management node refuses it within %s).\n", name, "10s")
		fmt.Fprintf(stdout, "With an external NATS server (--nats), write its users again and reload it:\n  conclave cluster nats-config -out DIR -users-only, then SIGHUP to the NATS server (nats-server --signal reload)\n")
	case "nats-config":
		return natsConfig(ctx, ca, st, natsDir, stdout, stderr)
	case "list-nodes":
		nodes, err := st.ListNodes(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "conclave cluster: %v\n", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tLABELS\tENROLLED\tCERTIFICATE\tEXPIRES\tSTATE")
		for _, n := range nodes {
			certs, _ := st.NodeCerts(ctx, n.Name)
			serial, expires := "-", "-"
			if len(certs) > 0 {
				serial, expires = certs[0].Serial, certs[0].NotAfter.UTC().Format(time.RFC3339)
			}
			state := "member"
			if !n.RemovedAt.IsZero() {
				state = "removed " + n.RemovedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, orDash(n.Labels), n.EnrolledAt.UTC().Format(time.RFC3339), serial, expires, state)
		}
		tw.Flush()
	}
	return 0
}

// natsConfig writes the configuration of an external NATS server.
func natsConfig(ctx context.Context, ca *nodeca.CA, st store.NodeStore, d bus.ExternalDir, stdout, stderr io.Writer) int {
	res, err := bus.WriteExternalDir(ctx, ca, st, d, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "conclave cluster nats-config: %v\n", err)
		return 1
	}
	for _, n := range res.Stale {
		fmt.Fprintf(stderr, "conclave cluster nats-config: node %s holds a certificate from before enrolment names; run `conclave node renew` on it, or the NATS server refuses it\n", n)
	}
	nodes := len(res.Users) - 1
	if d.UsersOnly {
		fmt.Fprintf(stdout, "Wrote %s: the management node and %d nodes.\nOn the NATS host, after copying it, send the server SIGHUP (nats-server --signal reload for the stock program)\n",
			filepath.Join(d.Dir, bus.UsersFile), nodes)
		return 0
	}
	cert := "kept"
	if res.NewCert {
		cert = "issued"
	}
	fmt.Fprintf(stdout, "Wrote the NATS server's configuration into %s (the management node and %d nodes as users).\n", d.Dir, nodes)
	fmt.Fprintf(stdout, "Its certificate (%s) expires %s: run this command again before then (it issues a new one with 30 days left).\n",
		cert, res.CertExpiry.UTC().Format(time.RFC3339))
	conf := filepath.Join(orDefault(d.Path, d.Dir), bus.ExternalConfigFile)
	fmt.Fprintf(stdout, "Copy the directory to the NATS host (key: %s, keep it private) and start:\n  conclave nats-server -c %s\n", bus.ExternalKeyFile, conf)
	fmt.Fprintf(stdout, "(or the stock program, nats-server -c %s, which negotiates AES-128-GCM rather than AES-256-GCM)\n", conf)
	fmt.Fprintf(stdout, "After a node is enrolled or removed: conclave cluster nats-config -out %s -users-only, copy, and send the server SIGHUP (nats-server --signal reload for the stock program)\n", d.Dir)
	return 0
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nodeCmd runs `conclave node ...` on a conference or edge node.
func nodeCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, nodeUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "run":
		return nodeRun(args[1:], stdout, stderr)
	case "drain":
		return nodeDrain(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("conclave node "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Defaults()
	config.RegisterDataDir(fs, &cfg)
	config.RegisterSecrets(fs, &cfg)
	var mgmt, token, pin string
	var hosts []string
	switch cmd {
	case "enrol":
		fs.StringVar(&token, "token", "", "the one-time token from conclave cluster add-node")
		fs.StringVar(&pin, "ca-pin", "", "the cluster CA's fingerprint from conclave cluster add-node")
		fs.Func("host", "an address other nodes reach this node at, for its certificate; repeatable", func(v string) error {
			hosts = append(hosts, v)
			return nil
		})
		fallthrough
	case "renew":
		fs.StringVar(&mgmt, "management", "", "the management node's cluster listener, HOST:PORT")
	case "status":
	default:
		fmt.Fprintf(stderr, "conclave node: unknown command %q\n\n%s", cmd, nodeUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	dir := filepath.Join(cfg.DataDir, "node")
	// The node's key is sealed under the master key when one is set, as
	// `conclave node run` expects it (docs/admin.md, "Secrets at rest").
	box, err := masterKey(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "conclave node %s: master key: %v\n", cmd, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n *nodeca.Node
	switch cmd {
	case "enrol":
		if mgmt == "" || token == "" || pin == "" {
			fmt.Fprintf(stderr, "conclave node enrol: -management, -token and -ca-pin are required; conclave cluster add-node prints them\n")
			return 2
		}
		if len(hosts) == 0 {
			hosts = []string{firstHost()}
		}
		if _, serr := os.Stat(filepath.Join(dir, "node.pem")); serr == nil {
			fmt.Fprintf(stderr, "conclave node enrol: this data directory already holds a node identity (%s); use another --data, or remove it to enrol again\n", dir)
			return 1
		}
		n, err = nodeca.EnrolSealed(ctx, dir, mgmt, strings.TrimSpace(token), strings.TrimSpace(pin), hosts, box)
	case "renew":
		if n, err = nodeca.LoadNodeSealed(dir, box); err == nil {
			err = n.Renew(ctx, mgmt)
		}
	case "status":
		n, err = nodeca.LoadNodeSealed(dir, box)
	}
	if err != nil {
		fmt.Fprintf(stderr, "conclave node %s: %v\n", cmd, err)
		return 1
	}
	l := n.Leaf()
	fmt.Fprintf(stdout, "Node %s (%s)\n  certificate %s, valid until %s\n  covers %s\n  identity in %s\n",
		n.Name(), n.Role(), nodeca.SerialOf(l), l.NotAfter.UTC().Format(time.RFC3339),
		strings.Join(append(ipList(l.IPAddresses), l.DNSNames...), ", "), dir)
	return 0
}

func ipList(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// nodeRun runs `conclave node run`: a conference node until SIGINT or
// SIGTERM.
func nodeRun(args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	fs := flag.NewFlagSet("conclave node run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.RegisterNode(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.Level()}))
	if err := askSecretsPassphrase(&cfg); err != nil {
		fmt.Fprintf(stderr, "conclave node run: %v\n", err)
		return 1
	}
	n, err := server.OpenNode(cfg, log, server.NodeOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "conclave node run: %v\n", err)
		return 1
	}
	n.Start()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	have, _ := n.ConfigReady()
	fmt.Fprintf(stdout, "%s node %s is running.\n\n  Web client:  %s/\n  Media:       UDP %s\n  Bus:         %s\n",
		strings.ToUpper(n.Role()[:1])+n.Role()[1:], n.Name(), n.URL(), n.MediaAddr(), cfg.Cluster.NATS)
	if a := n.DebugAddr(); a != nil {
		fmt.Fprintf(stdout, "  Debug:       http://%s/metrics and /debug/pprof/ (loopback, no authentication)\n", a)
	}
	if !have {
		fmt.Fprintf(stdout, "\nIt has no configuration yet: it admits participants once it has reached the management node.\n")
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "Shutting down.")
	if err := n.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// nodeDrain runs `conclave node drain`: the running node on this data
// directory sends its participants to the other nodes and takes no new
// ones; the command waits until they have gone (or --wait passes).
func nodeDrain(args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	fs := flag.NewFlagSet("conclave node drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.RegisterDataDir(fs, &cfg)
	off := fs.Bool("off", false, "end draining: the node takes participants again")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the participants to leave (0: do not wait)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rep, err := server.Control(cfg.DataDir, server.ControlRequest{Command: "drain", Off: *off})
	if err != nil {
		fmt.Fprintf(stderr, "conclave node drain: %v\n", err)
		return 1
	}
	if *off {
		fmt.Fprintf(stdout, "The node takes participants again (%d in %d meetings now).\n", rep.Participants, rep.Meetings)
		return 0
	}
	fmt.Fprintf(stdout, "Draining: %d participants sent to other nodes; new ones go elsewhere.\n", rep.Moved)
	deadline := time.Now().Add(*wait)
	for rep.Participants > 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		if rep, err = server.Control(cfg.DataDir, server.ControlRequest{Command: "status"}); err != nil {
			fmt.Fprintf(stderr, "conclave node drain: %v\n", err)
			return 1
		}
	}
	if rep.Participants > 0 {
		fmt.Fprintf(stdout, "%d participants are still here (their clients did not move, or no other node could take them); the node keeps draining.\n", rep.Participants)
		return 1
	}
	fmt.Fprintln(stdout, "No participant is left: the node can be stopped.")
	return 0
}
