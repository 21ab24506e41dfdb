// Package bus is the message bus between the management node and the
// conference nodes: NATS (github.com/nats-io/nats-server/v2, embedded in
// the management node; github.com/nats-io/nats.go in every node), over
// the cluster's mutually authenticated TLS (internal/nodeca) from the
// first byte. The embedded server admits a client only with a valid,
// unrevoked node certificate, and makes it a NATS user named after the
// node, allowed to publish only under its own subject prefix.
package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"conclave/internal/nodeca"
)

// Subjects. A node publishes under NodePrefix + its name + "."; every
// node may subscribe to anything under Prefix.
const (
	Prefix     = "conclave."
	NodePrefix = "conclave.node."
	// CommandPrefix + a node's name + "." + a command is where the
	// management node sends a node commands (CommandDrain).
	CommandPrefix = "conclave.command."
)

// Commands the management node sends a node.
const (
	// CommandDrain asks a node to move its participants to other nodes
	// and take no more (payload "on"), or to take participants again
	// ("off").
	CommandDrain = "drain"
)

// JetStream resources, made by the management node.
const (
	// ConfigBucket is the key-value bucket of the configuration the
	// conference nodes need (internal/nodeconf); only the management
	// node writes it.
	ConfigBucket = "conclave_config"
	// SpoolStream keeps what nodes deliver to the management node (audit
	// entries, call records) until it has taken them.
	SpoolStream = "CONCLAVE_SPOOL"
)

// StatusSubject is where node name publishes its status.
func StatusSubject(name string) string { return NodePrefix + name + ".status" }

// SpoolSubject is where node name delivers its audit entries and call
// records (stream SpoolStream).
func SpoolSubject(name string) string { return NodePrefix + name + ".spool" }

// CommandSubject is where node name receives command cmd.
func CommandSubject(name, cmd string) string { return CommandPrefix + name + "." + cmd }

// Config configures the embedded server.
type Config struct {
	// Listen is host:port for nodes.
	Listen string
	// StoreDir holds JetStream's data.
	StoreDir string
	// Cert returns the management node's current certificate.
	Cert func() *tls.Certificate
	// Trust checks the nodes' certificates.
	Trust nodeca.Trust
	Log   *slog.Logger
}

// Server is the embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start runs the embedded NATS server until Close.
func Start(cfg Config) (*Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("bus listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("bus listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:                 "conclave-management",
		Host:                       host,
		Port:                       port,
		TLS:                        true,
		TLSVerify:                  true,
		TLSHandshakeFirst:          true,
		TLSTimeout:                 5,
		TLSConfig:                  nodeca.ServerConfig(cfg.Cert, cfg.Trust, tls.RequireAndVerifyClientCert),
		CustomClientAuthentication: nodeAuth{trust: cfg.Trust, log: cfg.Log},
		JetStream:                  cfg.StoreDir != "",
		StoreDir:                   cfg.StoreDir,
		NoSigs:                     true,
		NoLog:                      true,
		MaxPayload:                 1 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start the bus: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("start the bus: the NATS server did not get ready within 10 s")
	}
	return &Server{ns: ns}, nil
}

// Addr is the address nodes connect to.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// URL is the tls:// URL of the server.
func (s *Server) URL() string { return "tls://" + s.ns.Addr().String() }

// Close stops the server.
func (s *Server) Close() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// nodeAuth admits clients by their node certificate.
type nodeAuth struct {
	trust nodeca.Trust
	log   *slog.Logger
}

// Check implements server.Authentication.
func (a nodeAuth) Check(c server.ClientAuthentication) bool {
	cs := c.GetTLSConnectionState()
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return false
	}
	leaf := cs.VerifiedChains[0][0]
	if a.trust.Revoked != nil && a.trust.Revoked(leaf) {
		a.log.Warn("bus: revoked node refused", "remote", c.RemoteAddress(), "serial", nodeca.SerialOf(leaf))
		return false
	}
	name, role, err := nodeca.Identity(leaf)
	if err != nil {
		return false
	}
	u := &server.User{Username: name}
	if role != nodeca.RoleManagement {
		u.Permissions = NodePermissions(name)
	}
	c.RegisterUser(u)
	return true
}

// NodePermissions is what a conference or edge node may do on the bus:
// publish under its own name (status, the spool), answer requests, read
// the configuration bucket (a watch is an ordered consumer of its
// stream), and nothing else of JetStream: it cannot write, purge or
// delete the configuration, nor read or delete another node's spool.
func NodePermissions(name string) *server.Permissions {
	kv := "KV_" + ConfigBucket
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			NodePrefix + name + ".>", "_INBOX.>",
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + kv,
			"$JS.API.CONSUMER.CREATE." + kv, "$JS.API.CONSUMER.CREATE." + kv + ".>",
			"$JS.API.CONSUMER.INFO." + kv + ".>",
			"$JS.API.CONSUMER.DELETE." + kv + ".>",
			"$JS.API.DIRECT.GET." + kv + ".>",
			"$JS.FC." + kv + ".>",
			"$JS.API.STREAM.INFO." + SpoolStream,
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			CommandPrefix + name + ".>", NodePrefix + "*.status", "_INBOX.>",
		}},
	}
}

// Connect connects a node to the bus at url ("tls://host:port") with its
// current certificate, reconnecting by itself whenever the connection
// drops. extra adds options (RetryOnFailedConnect for a node that starts
// while the bus is down, handlers). The server must present the
// management node's certificate (the embedded server) or a bus server's
// (an external one, conclave cluster nats-config), whatever trust.Roles
// says; an external server may choose AES-128-GCM (nodeca.Trust.AnyAESGCM).
func Connect(url string, cert func() *tls.Certificate, trust nodeca.Trust, serverName, clientName string, extra ...nats.Option) (*nats.Conn, error) {
	trust.Roles = []string{nodeca.RoleManagement, nodeca.RoleBus}
	trust.AnyAESGCM = true
	opts := []nats.Option{
		nats.Secure(nodeca.ClientConfig(cert, trust, serverName)),
		nats.TLSHandshakeFirst(),
		nats.Name(clientName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, connectError(url, err)
	}
	return nc, nil
}
