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

	"conclave/internal/config"
	"conclave/internal/pki"
	"conclave/internal/server"
)

func serve(args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	cfg.SIPListen, cfg.SIPRelayPorts = config.DefaultSIPListen, config.DefaultSIPRelayPorts
	fs := flag.NewFlagSet("conclave serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.Register(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.Level()}))

	if err := askSecretsPassphrase(&cfg); err != nil {
		fmt.Fprintf(stderr, "conclave: %v\n", err)
		return 1
	}
	srv, err := server.Open(cfg, log, server.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "conclave: %v\n", err)
		return 1
	}
	srv.Start()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(stdout, "Conclave is running.\n\n  Web client:  %s/\n  Admin page:  %s/admin\n  Data:        %s\n  Media:       UDP %s", srv.URL(), srv.AdminURL(), cfg.DataDir, srv.MediaAddr())
	if cfg.MediaTCP != "" {
		fmt.Fprintf(stdout, ", ICE-TCP %s", cfg.MediaTCP)
	}
	if a := srv.SIPAddr(); a != nil {
		fmt.Fprintf(stdout, "\n  SIP:         TLS %s, domain %s (docs/sip.md)", a, srv.SIPDomain())
	}
	if a := srv.DebugAddr(); a != nil {
		fmt.Fprintf(stdout, "\n  Debug:       http://%s/metrics and /debug/pprof/ (loopback, no authentication)", a)
	}
	fmt.Fprintf(stdout, "\n\n%s\n", pki.TrustInstructions(srv.TLS()))
	link, created, err := srv.EnrolmentLink(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "conclave: %v\n", err)
		srv.Close()
		return 1
	}
	if created {
		fmt.Fprintf(stdout, "No administrator exists yet. Open this one-time link within 24 hours to create the first one:\n\n  %s\n\n(or run 'conclave admin create-user --role admin ...').\n", link)
	}

	<-ctx.Done()
	fmt.Fprintln(stdout, "Shutting down.")
	if err := srv.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
