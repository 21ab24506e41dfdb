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
	// HashMemory bounds the memory Argon2 password and PIN checks use at
	// once, in bytes; 0 means 128 MiB (docs/hardening.md).
	HashMemory int64
	// MaxConnsPerAddress bounds the open HTTPS connections of one client
	// address (an IPv6 /64 counts as one); 0 means 128, negative no limit.
	MaxConnsPerAddress int
}

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
}

// Register adds every serve flag to fs, with defaults taken from c and the
// environment.
func Register(fs *flag.FlagSet, c *Config) {
	RegisterDataDir(fs, c)
	fs.StringVar(&c.Listen, "listen", env("CONCLAVE_LISTEN", c.Listen), "HTTPS listen address (env CONCLAVE_LISTEN)")
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
	fs.StringVar(&c.TURNUDP, "turn-udp", env("CONCLAVE_TURN_UDP", c.TURNUDP), "UDP address of the embedded TURN server, empty to disable (env CONCLAVE_TURN_UDP)")
	fs.StringVar(&c.TURNTCP, "turn-tcp", env("CONCLAVE_TURN_TCP", c.TURNTCP), "TCP address of the embedded TURN server, empty to disable (env CONCLAVE_TURN_TCP)")
	fs.BoolVar(&c.TURNTLS, "turn-tls", envBool("CONCLAVE_TURN_TLS", c.TURNTLS), "offer TURN over TLS on the HTTPS port (env CONCLAVE_TURN_TLS)")
	fs.StringVar(&c.TURNRelayIP, "turn-relay-ip", env("CONCLAVE_TURN_RELAY_IP", c.TURNRelayIP), "address TURN relay sockets bind to; default: loopback, or the --media-udp address when it names one (env CONCLAVE_TURN_RELAY_IP)")
	fs.DurationVar(&c.TURNTTL, "turn-ttl", envDuration("CONCLAVE_TURN_TTL", c.TURNTTL), "how long the TURN credentials given at join can open allocations, 1m to 1h (env CONCLAVE_TURN_TTL)")
	fs.Int64Var(&c.TURNMaxBitrate, "turn-max-bitrate", int64(envInt("CONCLAVE_TURN_MAX_BITRATE", int(c.TURNMaxBitrate))), "most one TURN allocation relays each way, in bit/s (env CONCLAVE_TURN_MAX_BITRATE)")
	fs.BoolVar(&c.AlwaysRelay, "always-relay", envBool("CONCLAVE_ALWAYS_RELAY", c.AlwaysRelay), "clients send all media through the TURN server, never directly (env CONCLAVE_ALWAYS_RELAY)")
	fs.Int64Var(&c.HashMemory, "hash-memory", int64(envInt("CONCLAVE_HASH_MEMORY", int(c.HashMemory))), "memory Argon2 password and PIN checks may use at once, in bytes (env CONCLAVE_HASH_MEMORY; default 128 MiB)")
	fs.IntVar(&c.MaxConnsPerAddress, "max-conns-per-address", envInt("CONCLAVE_MAX_CONNS_PER_ADDRESS", c.MaxConnsPerAddress), "open HTTPS connections one client address may hold (env CONCLAVE_MAX_CONNS_PER_ADDRESS; default 128, negative: no limit)")
	fs.StringVar(&c.DebugListen, "debug-listen", env("CONCLAVE_DEBUG_LISTEN", c.DebugListen), "loopback address serving process metrics and Go profiles without authentication, e.g. 127.0.0.1:6060; empty disables (env CONCLAVE_DEBUG_LISTEN)")
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
	return nil
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

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
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
