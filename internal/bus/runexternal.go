package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"conclave/internal/nodeca"
)

// BusServer runs a NATS server of the cluster's bus from the
// configuration file `conclave cluster nats-config` writes, in this
// process (`conclave nats-server`): the same NATS server as the stock
// nats-server program, with the TLS of every other node-to-node link.
// A stock nats-server negotiates AES-128-GCM with Conclave's nodes
// (crypto/tls lets neither side rule it out); this one negotiates
// AES-256-GCM only, on its client port and its routes.
type BusServer struct {
	path string
	ns   *server.Server
	log  *slog.Logger
}

// StartExternal reads the configuration at path and starts the server;
// it returns once the server takes connections.
func StartExternal(path string, log *slog.Logger) (*BusServer, error) {
	opts, err := externalOptions(path)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start the NATS server: %w", err)
	}
	// The NATS server reports what stops it (a port taken, a JetStream
	// directory it cannot use) as fatal and expects the process to end:
	// the first such line is the start's error.
	fatal := make(chan string, 1)
	ns.SetLoggerV2(natsLog{log: log, fatal: fatal}, false, false, false)
	started := make(chan struct{})
	go func() { ns.Start(); close(started) }()
	ready := make(chan bool, 1)
	go func() { ready <- ns.ReadyForConnections(30 * time.Second) }()
	select {
	case ok := <-ready:
		if ok {
			return &BusServer{path: path, ns: ns, log: log}, nil
		}
		ns.Shutdown()
		return nil, errors.New("start the NATS server: it did not take connections within 30 s (see the lines above)")
	case msg := <-fatal:
		// Start logs on until it returns; the wait for readiness ends by
		// itself (ready is buffered).
		<-started
		ns.Shutdown()
		return nil, fmt.Errorf("start the NATS server: %s", msg)
	}
}

// externalOptions reads the configuration file and holds its TLS to the
// node-to-node policy.
func externalOptions(path string) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the NATS configuration %s: %w", path, err)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || !opts.TLSMap {
		return nil, fmt.Errorf("%s does not ask every client for a certificate of the cluster CA (a tls block with verify_and_map); write it with `conclave cluster nats-config`", path)
	}
	nodeca.RequireAES256(opts.TLSConfig)
	nodeca.RequireAES256(opts.Cluster.TLSConfig)
	opts.NoSigs = true // signals are the command's
	return opts, nil
}

// Addr is the client listener's address.
func (s *BusServer) Addr() string { return s.ns.Addr().String() }

// Reload reads the configuration file again (after `conclave cluster
// nats-config -users-only`): users added or removed take effect at once,
// and the connections of removed ones are closed.
func (s *BusServer) Reload() error {
	opts, err := externalOptions(s.path)
	if err != nil {
		return err
	}
	if err := s.ns.ReloadOptions(opts); err != nil {
		return fmt.Errorf("reload the NATS configuration: %w", err)
	}
	s.log.Info("bus: configuration reloaded", "file", s.path)
	return nil
}

// Close stops the server.
func (s *BusServer) Close() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// natsLog passes the NATS server's lines to slog, and its first fatal
// one to fatal.
type natsLog struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l natsLog) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l natsLog) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }

func (l natsLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}

func (l natsLog) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLog) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLog) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
