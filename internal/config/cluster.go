package config

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

// Cluster holds the settings of a node that is part of a cluster
// (docs/cluster.md): the bus, and the node-to-node listener of meetings
// that span nodes.
type Cluster struct {
	// BusListen is where the management node's embedded NATS server
	// listens for nodes (with ClusterListen set); empty means port 4222 on
	// ClusterListen's host (an ephemeral port if ClusterListen's is).
	BusListen string
	// NATS is the URL of an external NATS server or cluster
	// (tls://host:4222) used instead of the embedded one; on a
	// conference node, the bus to connect to.
	NATS string
	// RelayListen is the node-to-node listener (mutual TLS 1.3) on which
	// other nodes relay the meetings they share with this one; empty
	// means port 8447 on all addresses when the node is in a cluster.
	RelayListen string
	// Management is the management node's cluster listener (host:port),
	// where a conference node renews its certificate.
	Management string
	// Selection is the node selection policy (local, least-loaded,
	// location); Locations map client networks to node labels
	// ("10.1.0.0/16=paris").
	Selection string
	Locations []string
}

// DefaultBusPort and DefaultRelayPort are the cluster's default ports.
const (
	DefaultBusPort   = "4222"
	DefaultRelayPort = "8447"
)

func registerCluster(fs *flag.FlagSet, c *Cluster) {
	fs.StringVar(&c.BusListen, "bus-listen", env("CONCLAVE_BUS_LISTEN", c.BusListen), "address of the embedded NATS server for the cluster's nodes (with --cluster-listen; default port 4222 on its host) (env CONCLAVE_BUS_LISTEN)")
	fs.StringVar(&c.NATS, "nats", env("CONCLAVE_NATS", c.NATS), "tls:// URL of an external NATS server or cluster to use instead of the embedded one (env CONCLAVE_NATS)")
	fs.StringVar(&c.RelayListen, "relay-listen", env("CONCLAVE_RELAY_LISTEN", c.RelayListen), "node-to-node listener for meetings that span nodes, mutual TLS 1.3 (default :8447 in a cluster) (env CONCLAVE_RELAY_LISTEN)")
	fs.StringVar(&c.Selection, "node-selection", env("CONCLAVE_NODE_SELECTION", c.Selection), "which node a joining participant uses: local (the one it reached), least-loaded, or location (see --location) (env CONCLAVE_NODE_SELECTION)")
	fs.Func("location", "a client network and the node label it should use, NETWORK=LABEL (e.g. 10.1.0.0/16=paris); repeatable", func(v string) error {
		c.Locations = append(c.Locations, v)
		return nil
	})
}

// RegisterNode adds the flags of `conclave node run`: a conference node
// has no database, accounts or management listener of its own.
func RegisterNode(fs *flag.FlagSet, c *Config) {
	RegisterDataDir(fs, c)
	fs.StringVar(&c.Listen, "listen", env("CONCLAVE_LISTEN", c.Listen), "HTTPS listen address for browsers (env CONCLAVE_LISTEN)")
	fs.StringVar(&c.MediaUDP, "media-udp", env("CONCLAVE_MEDIA_UDP", c.MediaUDP), "UDP address for all media (env CONCLAVE_MEDIA_UDP)")
	fs.StringVar(&c.MediaTCP, "media-tcp", env("CONCLAVE_MEDIA_TCP", c.MediaTCP), "passive ICE-TCP address, empty to disable (env CONCLAVE_MEDIA_TCP)")
	fs.Func("public-ip", "public IP address announced to clients behind NAT; repeatable or comma-separated", func(v string) error {
		c.PublicIPs = append(c.PublicIPs, splitList(v)...)
		return nil
	})
	fs.Func("host", "host name or address for the web certificate and links; repeatable or comma-separated (env CONCLAVE_HOSTS)", func(v string) error {
		c.Hosts = append(c.Hosts, splitList(v)...)
		return nil
	})
	fs.StringVar(&c.PublicURL, "public-url", env("CONCLAVE_PUBLIC_URL", c.PublicURL), "base URL browsers reach this node at, e.g. https://paris-1.example.org (env CONCLAVE_PUBLIC_URL)")
	fs.StringVar(&c.CertFile, "tls-cert", env("CONCLAVE_TLS_CERT", c.CertFile), "PEM certificate chain for browsers instead of the generated one (env CONCLAVE_TLS_CERT)")
	fs.StringVar(&c.KeyFile, "tls-key", env("CONCLAVE_TLS_KEY", c.KeyFile), "PEM private key of --tls-cert (env CONCLAVE_TLS_KEY)")
	fs.StringVar(&c.OrgName, "org-name", env("CONCLAVE_ORG_NAME", c.OrgName), "organisation name (env CONCLAVE_ORG_NAME)")
	fs.StringVar(&c.LogLevel, "log-level", env("CONCLAVE_LOG_LEVEL", c.LogLevel), "debug, info, warn or error (env CONCLAVE_LOG_LEVEL)")
	fs.IntVar(&c.MaxParticipants, "max-participants", envInt("CONCLAVE_MAX_PARTICIPANTS", c.MaxParticipants), "most participants in one meeting (env CONCLAVE_MAX_PARTICIPANTS; default 100)")
	fs.Int64Var(&c.MaxFileSize, "max-file-size", int64(envInt("CONCLAVE_MAX_FILE_SIZE", int(c.MaxFileSize))), "largest file shared in a meeting, in bytes (env CONCLAVE_MAX_FILE_SIZE; default 100 MiB)")
	fs.Func("allow", "address or prefix exempt from break-in blocking; repeatable or comma-separated (env CONCLAVE_ALLOW)", func(v string) error {
		c.AllowList = append(c.AllowList, splitList(v)...)
		return nil
	})
	fs.StringVar(&c.DebugListen, "debug-listen", env("CONCLAVE_DEBUG_LISTEN", c.DebugListen), "loopback address serving process metrics and Go profiles without authentication (env CONCLAVE_DEBUG_LISTEN)")
	registerTURN(fs, c)
	RegisterSecrets(fs, c)
	fs.StringVar(&c.Cluster.NATS, "nats", env("CONCLAVE_NATS", c.Cluster.NATS), "tls:// URL of the cluster's bus (default: port 4222 on the management node) (env CONCLAVE_NATS)")
	fs.StringVar(&c.Cluster.RelayListen, "relay-listen", env("CONCLAVE_RELAY_LISTEN", c.Cluster.RelayListen), "node-to-node listener for meetings that span nodes, mutual TLS 1.3 (default :8447) (env CONCLAVE_RELAY_LISTEN)")
	fs.StringVar(&c.Cluster.Management, "management", env("CONCLAVE_MANAGEMENT", c.Cluster.Management), "the management node's cluster listener, HOST:PORT, for certificate renewal (env CONCLAVE_MANAGEMENT)")
	if v := os.Getenv("CONCLAVE_HOSTS"); v != "" {
		c.Hosts = splitList(v)
	}
}

// BusAddr is where the embedded bus listens: BusListen, or port 4222 on
// ClusterListen's host.
func (c *Config) BusAddr() string {
	if c.Cluster.BusListen != "" {
		return c.Cluster.BusListen
	}
	return c.besideCluster(DefaultBusPort)
}

// RelayAddr is where the node-to-node listener listens: RelayListen, or
// port 8447 on ClusterListen's host (on all addresses for a conference
// node).
func (c *Config) RelayAddr() string {
	if c.Cluster.RelayListen != "" {
		return c.Cluster.RelayListen
	}
	return c.besideCluster(DefaultRelayPort)
}

// besideCluster is port on ClusterListen's host; a cluster listener on
// an ephemeral port (tests) makes the others ephemeral too.
func (c *Config) besideCluster(port string) string {
	host, p, _ := net.SplitHostPort(c.ClusterListen)
	if p == "0" {
		port = "0"
	}
	return net.JoinHostPort(host, port)
}

// ValidateNode checks the settings of a conference node.
func (c *Config) ValidateNode() error {
	if c.DataDir == "" {
		return fmt.Errorf("the data directory is empty; set --data or CONCLAVE_DATA")
	}
	if c.Cluster.NATS == "" {
		return fmt.Errorf("--nats is required: the bus of the cluster, e.g. tls://management.example.org:4222")
	}
	if !strings.HasPrefix(c.Cluster.NATS, "tls://") {
		return fmt.Errorf("--nats %q must be a tls:// URL: nodes speak to the bus only over TLS", c.Cluster.NATS)
	}
	if c.Listen == "" || c.MediaUDP == "" {
		return fmt.Errorf("--listen and --media-udp must not be empty")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("--tls-cert and --tls-key must be given together")
	}
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("--public-url must start with https://")
	}
	if c.DebugListen != "" && !loopbackAddr(c.DebugListen) {
		return fmt.Errorf("--debug-listen %q must be a loopback address such as 127.0.0.1:6060: it serves profiles without authentication", c.DebugListen)
	}
	if c.MaxParticipants < 0 || c.MaxParticipants > MaxParticipantsLimit {
		return fmt.Errorf("--max-participants must be between 1 and %d (0 for the default, 100)", MaxParticipantsLimit)
	}
	return c.validateTURN()
}
