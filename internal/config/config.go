// Package config holds the settings of a Conclave node and reads them from
// command-line flags and environment variables. Flags win over variables;
// both win over defaults.
package config

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the configuration of `conclave serve`.
type Config struct {
	// DataDir holds the database, certificates and other state.
	DataDir string
	// ClusterListen is the address of the cluster listener, on which
	// conference nodes enrol and renew their certificates
	// (docs/cluster.md); empty means no node can join.
	ClusterListen string
	// Database is the PostgreSQL database of the management store, as a
	// postgres:// URL (docs/cluster.md); empty means the embedded SQLite
	// file conclave.db in DataDir.
	Database string
	// Listen is the HTTPS address (web client, API, signaling).
	Listen string
	// MediaUDP is the UDP address shared by all WebRTC media.
	MediaUDP string
	// MediaTCP is the passive ICE-TCP address; empty disables ICE-TCP.
	MediaTCP string
	// PublicIPs are announced to clients in addition to local addresses,
	// for a server behind 1:1 NAT.
	PublicIPs []string
	// Hosts are the names and addresses the generated server certificate
	// covers; empty means this machine's names and addresses.
	Hosts []string
	// PublicURL is the base of links the server prints and returns, e.g.
	// https://meet.example.org; empty derives it from Hosts and Listen.
	PublicURL string
	// CertFile and KeyFile point to an operator-provided certificate and
	// key; empty means the generated ones.
	CertFile, KeyFile string
	// Banner is shown before the admin login form.
	Banner string
	// OrgName names the organisation in E2EE credentials ("certified by
	// <OrgName>"); empty means the first host name.
	OrgName string
	// MaxFileSize bounds the encrypted files exchanged in meetings.
	MaxFileSize int64
	// PINMinLength is the minimum number of digits of room PINs.
	PINMinLength int
	// AllowList holds addresses and prefixes exempt from the break-in
	// rules (blocked rooms, quarantined addresses).
	AllowList []string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// MaxParticipants bounds the participants of one meeting (those
	// waiting included); 0 means the default, 100.
	MaxParticipants int
	// TURNUDP and TURNTCP are the embedded TURN server's UDP and TCP
	// addresses; empty disables the transport.
	TURNUDP, TURNTCP string
	// TURNTLS offers TURN over TLS on the HTTPS port (--listen).
	TURNTLS bool
	// TURNRelayIP is the address TURN relay sockets bind to; empty
	// derives it from MediaUDP (loopback when media listens on all
	// addresses).
	TURNRelayIP string
	// TURNTTL is how long the TURN credentials given at join can open
	// allocations.
	TURNTTL time.Duration
	// TURNMaxBitrate bounds what one TURN allocation relays each way,
	// in bit/s.
	TURNMaxBitrate int64
	// AlwaysRelay makes clients send all media through TURN
	// (iceTransportPolicy "relay").
	AlwaysRelay bool
	// DebugListen, when set, serves process metrics and Go profiles
	// (docs/api.md, "Debug listener") on this loopback address, without
	// authentication. Empty disables it.
	DebugListen string

	// SIP over TLS (docs/sip.md).
	// SIPListen is the SIP-TLS address (":5061"); empty disables SIP.
	SIPListen string
	// SIPDomain is the SIP domain of addresses of record; empty means the
	// first host name.
	SIPDomain string
	// SIPRelayIP is the address the media relay binds and announces;
	// empty means the first public IP, else the SIP listener's address,
	// else this machine's first address.
	SIPRelayIP string
	// SIPRelayPorts is the UDP port range of the media relay ("min-max");
	// empty means ephemeral ports.
	SIPRelayPorts string
	// SIPAllowSDES allows SDES-SRTP calls, which are not end-to-end.
	SIPAllowSDES bool
	// SIPDigest asks devices for their digest secret as a second factor on
	// top of their certificate, with this algorithm: "sha-256" or "md5";
	// empty for no digest.
	SIPDigest string
	// Auth holds the management listener and sign-in settings
	// (internal/config/auth.go).
	Auth AuthConfig
	// HashMemory bounds the memory Argon2 password and PIN checks use at
	// once, in bytes; 0 means 64 MiB (docs/hardening.md).
	HashMemory int64
	// MaxConnsPerAddress bounds the open HTTPS connections of one client
	// address (an IPv6 /64 counts as one); 0 means 128, negative no limit.
	MaxConnsPerAddress int
	// Secrets says where the master key that seals the private keys at
	// rest comes from (docs/admin.md, "Secrets at rest").
	Secrets Secrets
	// NodeName names this node: its imported certificate is kept under
	// <data>/tls/nodes/<NodeName>. Empty means the machine's host name.
	NodeName string
	// MetricsTokenFile names a file holding the bearer token that lets a
	// Prometheus server scrape /metrics on the HTTPS listener.
	MetricsTokenFile string
	// Cluster holds the bus and node-to-node settings (cluster.go).
	Cluster Cluster
}

// Secrets are the sources of the master key; at most one is set.
type Secrets struct {
	// KeyFile is a file outside the data directory holding the key.
	KeyFile string
	// Key is the key itself (CONCLAVE_SECRETS_KEY).
	Key string
	// Passphrase is typed at start (--secrets-passphrase) and stretched.
	Passphrase string
	// Prompt asks for the passphrase on the terminal at start.
	Prompt bool
}

// RegisterSecrets adds the master key flags to fs (serve and the
// commands that read the data directory's keys).
func RegisterSecrets(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Secrets.KeyFile, "secrets-key-file", env("CONCLAVE_SECRETS_KEY_FILE", c.Secrets.KeyFile), "file, outside the data directory, holding the master key that encrypts private keys at rest (env CONCLAVE_SECRETS_KEY_FILE; or set CONCLAVE_SECRETS_KEY)")
	fs.BoolVar(&c.Secrets.Prompt, "secrets-passphrase", c.Secrets.Prompt, "ask for the passphrase that encrypts private keys at rest on the terminal at start (or set CONCLAVE_SECRETS_PASSPHRASE)")
	if v, ok := os.LookupEnv("CONCLAVE_SECRETS_KEY"); ok {
		c.Secrets.Key = v
	}
	if v, ok := os.LookupEnv("CONCLAVE_SECRETS_PASSPHRASE"); ok {
		c.Secrets.Passphrase = v
	}
}

// DefaultSIPListen and DefaultSIPRelayPorts are what `conclave serve`
// uses unless told otherwise. Defaults leaves SIP off, so that servers
// started by tests do not compete for port 5061.
const (
	DefaultSIPListen     = ":5061"
	DefaultSIPRelayPorts = "40000-40999"
)

// DefaultDataDir is /var/lib/conclave for root and
// ~/.local/share/conclave for others.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/conclave"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "conclave")
	}
	return "conclave-data"
}

// Defaults returns the embedded default configuration.
func Defaults() Config {
	return Config{
		DataDir:  DefaultDataDir(),
		Listen:   ":8443",
		MediaUDP: ":8443",
		MediaTCP: ":8444",
		TURNUDP:  ":3478",
		TURNTCP:  ":3478",
		TURNTLS:  true,
		TURNTTL:  10 * time.Minute,
		LogLevel: "info",

		TURNMaxBitrate: 20_000_000,
	}
}

// RegisterDataDir adds the --data flag (env CONCLAVE_DATA) to fs.
func RegisterDataDir(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.DataDir, "data", env("CONCLAVE_DATA", c.DataDir), "data directory (env CONCLAVE_DATA)")
	fs.StringVar(&c.Database, "database", env("CONCLAVE_DATABASE", c.Database), "PostgreSQL store as postgres://user@host:5432/db; empty for SQLite in the data directory (env CONCLAVE_DATABASE)")
}

// StoreName names the management store for store.Open: the PostgreSQL URL
// of Database, or else the SQLite file in DataDir.
func (c *Config) StoreName() string {
	if c.Database != "" {
		return c.Database
	}
	return filepath.Join(c.DataDir, "conclave.db")
}

// ValidateDatabase reports, as a sentence an operator can act on, why
// Database is not a PostgreSQL URL; nil when it is one or is empty.
func (c *Config) ValidateDatabase() error {
	if c.Database == "" || strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://") {
		return nil
	}
	return fmt.Errorf("--database takes a postgres:// URL such as postgres://conclave@db.example.org:5432/conclave; leave it empty for the embedded SQLite database in the data directory")
}

// Register adds every serve flag to fs, with defaults taken from c and the
// environment.
func Register(fs *flag.FlagSet, c *Config) {
	RegisterDataDir(fs, c)
	fs.StringVar(&c.Listen, "listen", env("CONCLAVE_LISTEN", c.Listen), "HTTPS listen address (env CONCLAVE_LISTEN)")
	fs.StringVar(&c.ClusterListen, "cluster-listen", env("CONCLAVE_CLUSTER_LISTEN", c.ClusterListen), "address where conference nodes enrol, mutual TLS 1.3 (docs/cluster.md); empty: none (env CONCLAVE_CLUSTER_LISTEN)")
	fs.StringVar(&c.MediaUDP, "media-udp", env("CONCLAVE_MEDIA_UDP", c.MediaUDP), "UDP address for all media (env CONCLAVE_MEDIA_UDP)")
	fs.StringVar(&c.MediaTCP, "media-tcp", env("CONCLAVE_MEDIA_TCP", c.MediaTCP), "passive ICE-TCP address, empty to disable (env CONCLAVE_MEDIA_TCP)")
	fs.Func("public-ip", "public IP address announced to clients behind NAT; repeatable or comma-separated (env CONCLAVE_PUBLIC_IPS)", func(v string) error {
		c.PublicIPs = append(c.PublicIPs, splitList(v)...)
		return nil
	})
	fs.Func("host", "host name or address for the certificate and links; repeatable or comma-separated (env CONCLAVE_HOSTS)", func(v string) error {
		c.Hosts = append(c.Hosts, splitList(v)...)
		return nil
	})
	fs.StringVar(&c.OrgName, "org-name", env("CONCLAVE_ORG_NAME", c.OrgName), "organisation name shown on certified participants (env CONCLAVE_ORG_NAME)")
	fs.Int64Var(&c.MaxFileSize, "max-file-size", int64(envInt("CONCLAVE_MAX_FILE_SIZE", int(c.MaxFileSize))), "largest file shared in a meeting, in bytes (env CONCLAVE_MAX_FILE_SIZE; default 100 MiB)")
	fs.IntVar(&c.PINMinLength, "pin-min-length", envInt("CONCLAVE_PIN_MIN_LENGTH", c.PINMinLength), "minimum digits of room PINs (env CONCLAVE_PIN_MIN_LENGTH; default 6)")
	fs.Func("allow", "address or prefix exempt from break-in blocking; repeatable or comma-separated (env CONCLAVE_ALLOW)", func(v string) error {
		c.AllowList = append(c.AllowList, splitList(v)...)
		return nil
	})
	fs.StringVar(&c.PublicURL, "public-url", env("CONCLAVE_PUBLIC_URL", c.PublicURL), "base URL for links, e.g. https://meet.example.org (env CONCLAVE_PUBLIC_URL)")
	fs.StringVar(&c.CertFile, "tls-cert", env("CONCLAVE_TLS_CERT", c.CertFile), "PEM certificate chain to use instead of the generated one (env CONCLAVE_TLS_CERT)")
	fs.StringVar(&c.KeyFile, "tls-key", env("CONCLAVE_TLS_KEY", c.KeyFile), "PEM private key of --tls-cert (env CONCLAVE_TLS_KEY)")
	fs.StringVar(&c.Banner, "banner", env("CONCLAVE_BANNER", c.Banner), "text shown before the admin login (env CONCLAVE_BANNER)")
	fs.StringVar(&c.LogLevel, "log-level", env("CONCLAVE_LOG_LEVEL", c.LogLevel), "debug, info, warn or error (env CONCLAVE_LOG_LEVEL)")
	fs.IntVar(&c.MaxParticipants, "max-participants", envInt("CONCLAVE_MAX_PARTICIPANTS", c.MaxParticipants), "most participants in one meeting (env CONCLAVE_MAX_PARTICIPANTS; default 100)")
	registerTURN(fs, c)
	RegisterSecrets(fs, c)
	fs.StringVar(&c.NodeName, "node-name", env("CONCLAVE_NODE_NAME", c.NodeName), "name of this node, for its own certificate (env CONCLAVE_NODE_NAME; default: the host name)")
	fs.StringVar(&c.MetricsTokenFile, "metrics-token-file", env("CONCLAVE_METRICS_TOKEN_FILE", c.MetricsTokenFile), "file holding the bearer token for scraping /metrics on the HTTPS listener (env CONCLAVE_METRICS_TOKEN_FILE)")
	fs.Int64Var(&c.HashMemory, "hash-memory", int64(envInt("CONCLAVE_HASH_MEMORY", int(c.HashMemory))), "memory Argon2 password and PIN checks may use at once, in bytes (env CONCLAVE_HASH_MEMORY; default 64 MiB)")
	fs.IntVar(&c.MaxConnsPerAddress, "max-conns-per-address", envInt("CONCLAVE_MAX_CONNS_PER_ADDRESS", c.MaxConnsPerAddress), "open HTTPS connections one client address may hold (env CONCLAVE_MAX_CONNS_PER_ADDRESS; default 128, negative: no limit)")
	fs.StringVar(&c.DebugListen, "debug-listen", env("CONCLAVE_DEBUG_LISTEN", c.DebugListen), "loopback address serving process metrics and Go profiles without authentication, e.g. 127.0.0.1:6060; empty disables (env CONCLAVE_DEBUG_LISTEN)")
	fs.StringVar(&c.SIPListen, "sip-listen", env("CONCLAVE_SIP_LISTEN", c.SIPListen), "SIP over TLS address; empty disables SIP (env CONCLAVE_SIP_LISTEN)")
	fs.StringVar(&c.SIPDomain, "sip-domain", env("CONCLAVE_SIP_DOMAIN", c.SIPDomain), "SIP domain of addresses of record; default the first host name (env CONCLAVE_SIP_DOMAIN)")
	fs.StringVar(&c.SIPRelayIP, "sip-relay-ip", env("CONCLAVE_SIP_RELAY_IP", c.SIPRelayIP), "address the SIP media relay binds and announces (env CONCLAVE_SIP_RELAY_IP)")
	fs.StringVar(&c.SIPRelayPorts, "sip-relay-ports", env("CONCLAVE_SIP_RELAY_PORTS", c.SIPRelayPorts), "UDP port range of the SIP media relay, min-max (env CONCLAVE_SIP_RELAY_PORTS)")
	fs.StringVar(&c.SIPDigest, "sip-digest", env("CONCLAVE_SIP_DIGEST", c.SIPDigest), "ask SIP devices for their digest secret as well as their certificate, with sha-256 or md5 (for phones that know nothing else); empty: no digest (env CONCLAVE_SIP_DIGEST)")
	fs.BoolVar(&c.SIPAllowSDES, "sip-allow-sdes", envBool("CONCLAVE_SIP_ALLOW_SDES", c.SIPAllowSDES), "allow SDES-SRTP calls, whose keys the server sees (not end-to-end) (env CONCLAVE_SIP_ALLOW_SDES)")
	registerAuth(fs, &c.Auth)
	registerCluster(fs, &c.Cluster)
	if v := os.Getenv("CONCLAVE_PUBLIC_IPS"); v != "" {
		c.PublicIPs = splitList(v)
	}
	if v := os.Getenv("CONCLAVE_ALLOW"); v != "" {
		c.AllowList = splitList(v)
	}
	if v := os.Getenv("CONCLAVE_HOSTS"); v != "" {
		c.Hosts = splitList(v)
	}
}

// Validate reports configuration mistakes as sentences an operator can act on.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("the data directory is empty; set --data or CONCLAVE_DATA")
	}
	if err := c.ValidateDatabase(); err != nil {
		return err
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
	if c.PINMinLength != 0 && (c.PINMinLength < 4 || c.PINMinLength > 32) {
		return fmt.Errorf("--pin-min-length must be between 4 and 32")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.MaxParticipants < 0 || c.MaxParticipants > MaxParticipantsLimit {
		return fmt.Errorf("--max-participants must be between 1 and %d (0 for the default, 100)", MaxParticipantsLimit)
	}
	if err := c.validateTURN(); err != nil {
		return err
	}
	if c.DebugListen != "" && !loopbackAddr(c.DebugListen) {
		return fmt.Errorf("--debug-listen %q must be a loopback address such as 127.0.0.1:6060: it serves profiles without authentication", c.DebugListen)
	}
	if c.SIPRelayIP != "" && net.ParseIP(c.SIPRelayIP) == nil {
		return fmt.Errorf("--sip-relay-ip %q is not an IP address", c.SIPRelayIP)
	}
	if _, _, err := c.SIPRelayRange(); err != nil {
		return err
	}
	if d := strings.ToLower(c.SIPDigest); d != "" && d != "sha-256" && d != "md5" {
		return fmt.Errorf("--sip-digest %q must be sha-256, md5 or empty", c.SIPDigest)
	}
	return c.Auth.validate(c.Listen)
}

// SIPRelayRange parses SIPRelayPorts; 0, 0 means ephemeral ports.
func (c *Config) SIPRelayRange() (lo, hi int, err error) {
	if c.SIPRelayPorts == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(c.SIPRelayPorts, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || hi < lo+3 {
		return 0, 0, fmt.Errorf("--sip-relay-ports %q must be a range such as 40000-40999 between 1024 and 65535", c.SIPRelayPorts)
	}
	return lo, hi, nil
}

// registerTURN adds the flags of the embedded TURN server, which
// `conclave serve` and `conclave node run` share (docs/admin.md, "Media
// through firewalls").
func registerTURN(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.TURNUDP, "turn-udp", env("CONCLAVE_TURN_UDP", c.TURNUDP), "UDP address of the embedded TURN server, empty to disable (env CONCLAVE_TURN_UDP)")
	fs.StringVar(&c.TURNTCP, "turn-tcp", env("CONCLAVE_TURN_TCP", c.TURNTCP), "TCP address of the embedded TURN server, empty to disable (env CONCLAVE_TURN_TCP)")
	fs.BoolVar(&c.TURNTLS, "turn-tls", envBool("CONCLAVE_TURN_TLS", c.TURNTLS), "offer TURN over TLS on the HTTPS port (env CONCLAVE_TURN_TLS)")
	fs.StringVar(&c.TURNRelayIP, "turn-relay-ip", env("CONCLAVE_TURN_RELAY_IP", c.TURNRelayIP), "address TURN relay sockets bind to; default: loopback, or the --media-udp address when it names one (env CONCLAVE_TURN_RELAY_IP)")
	fs.DurationVar(&c.TURNTTL, "turn-ttl", envDuration("CONCLAVE_TURN_TTL", c.TURNTTL), "how long the TURN credentials given at join can open allocations, 1m to 1h (env CONCLAVE_TURN_TTL)")
	fs.Int64Var(&c.TURNMaxBitrate, "turn-max-bitrate", int64(envInt("CONCLAVE_TURN_MAX_BITRATE", int(c.TURNMaxBitrate))), "most one TURN allocation relays each way, in bit/s (env CONCLAVE_TURN_MAX_BITRATE)")
	fs.BoolVar(&c.AlwaysRelay, "always-relay", envBool("CONCLAVE_ALWAYS_RELAY", c.AlwaysRelay), "clients send all media through the TURN server, never directly (env CONCLAVE_ALWAYS_RELAY)")
}

// validateTURN checks the TURN settings.
func (c *Config) validateTURN() error {
	for _, a := range []struct{ flag, v string }{{"--turn-udp", c.TURNUDP}, {"--turn-tcp", c.TURNTCP}} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			return fmt.Errorf("%s %q is not host:port, e.g. :3478", a.flag, a.v)
		}
	}
	if c.TURNRelayIP != "" && net.ParseIP(c.TURNRelayIP) == nil {
		return fmt.Errorf("--turn-relay-ip %q is not an IP address", c.TURNRelayIP)
	}
	if c.TURNTTL < time.Minute || c.TURNTTL > time.Hour {
		return fmt.Errorf("--turn-ttl %v must be between 1m and 1h: TURN credentials are short-lived", c.TURNTTL)
	}
	if c.TURNMaxBitrate < 500_000 {
		return fmt.Errorf("--turn-max-bitrate %d is below 500000 bit/s, too little for one video", c.TURNMaxBitrate)
	}
	if c.AlwaysRelay && !c.TURNEnabled() {
		return fmt.Errorf("--always-relay needs the TURN server: set --turn-udp, --turn-tcp or --turn-tls")
	}
	return nil
}

// TURNEnabled reports whether the embedded TURN server runs.
func (c *Config) TURNEnabled() bool { return c.TURNUDP != "" || c.TURNTCP != "" || c.TURNTLS }

// MaxParticipantsLimit is the highest --max-participants accepted.
const MaxParticipantsLimit = 10000

// loopbackAddr reports whether addr is host:port with a loopback IP
// address or localhost as host.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Level returns the configured log level (info if invalid).
func (c *Config) Level() slog.Level {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return lvl
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envBool(name string, def bool) bool {
	if v, ok := os.LookupEnv(name); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return def
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
