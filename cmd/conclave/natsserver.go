package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"conclave/internal/bus"
)

const natsServerUsage = `Usage: conclave nats-server -c FILE

Runs a NATS server of the cluster's bus (an external one, --nats) from the
configuration 'conclave cluster nats-config' writes: the NATS server of the
stock nats-server program, with the TLS of every other node-to-node link,
so that the bus negotiates AES-256-GCM (a stock nats-server negotiates
AES-128-GCM with Conclave's nodes). Every server of a NATS cluster of
several runs it. SIGHUP reads the configuration again (after
'conclave cluster nats-config -users-only'); SIGINT or SIGTERM stop it.
docs/cluster.md, "An external NATS cluster".

Flags:
`

// natsServerCmd runs `conclave nats-server` until SIGINT or SIGTERM.
func natsServerCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conclave nats-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, natsServerUsage); fs.PrintDefaults() }
	path := fs.String("c", "", "the configuration file (nats-server.conf of conclave cluster nats-config)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "conclave nats-server: -log-level %q: use debug, info, warn or error\n", *level)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	srv, err := bus.StartExternal(*path, log)
	if err != nil {
		fmt.Fprintf(stderr, "conclave nats-server: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "NATS server of the cluster's bus on %s (TLS 1.3, AES-256-GCM, P-384).\n", srv.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			srv.Close()
			return 0
		case <-hup:
			if err := srv.Reload(); err != nil {
				// The server goes on with the configuration it has.
				log.Error("bus: the configuration was not reloaded; the server keeps the previous one", "err", err)
			}
		}
	}
}
