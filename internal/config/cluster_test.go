package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestNodeTURNSettings: `conclave node run` takes the TURN flags of
// `conclave serve`, with the same defaults, and refuses the same bad
// settings with the same sentences.
func TestNodeTURNSettings(t *testing.T) {
	parse := func(register func(*flag.FlagSet, *Config), args ...string) Config {
		t.Helper()
		c := Defaults()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		register(fs, &c)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return c
	}
	type turnSettings struct {
		UDP, TCP, RelayIP string
		TLS, Always       bool
		TTL               time.Duration
		MaxBitrate        int64
	}
	turnOf := func(c Config) turnSettings {
		return turnSettings{c.TURNUDP, c.TURNTCP, c.TURNRelayIP, c.TURNTLS, c.AlwaysRelay, c.TURNTTL, c.TURNMaxBitrate}
	}
	if serve, node := turnOf(parse(Register)), turnOf(parse(RegisterNode)); serve != node {
		t.Errorf("defaults: serve %v, node run %v", serve, node)
	}
	args := []string{"--turn-udp", "10.0.0.5:3479", "--turn-tcp", "", "--turn-tls=false", "--turn-relay-ip", "10.0.0.5",
		"--turn-ttl", "5m", "--turn-max-bitrate", "8000000", "--always-relay"}
	want := turnSettings{"10.0.0.5:3479", "", "10.0.0.5", false, true, 5 * time.Minute, 8_000_000}
	if got := turnOf(parse(RegisterNode, args...)); got != want {
		t.Errorf("node run %v: %+v, want %+v", args, got, want)
	}

	node := func() Config {
		c := Defaults()
		c.DataDir, c.Cluster.NATS = t.TempDir(), "tls://management.example.org:4222"
		return c
	}
	if c := node(); c.ValidateNode() != nil {
		t.Fatalf("a node with the defaults: %v", c.ValidateNode())
	}
	for _, bad := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.TURNUDP = "3478" }, `--turn-udp "3478" is not host:port`},
		{func(c *Config) { c.TURNTCP = "turn.example.org" }, `--turn-tcp "turn.example.org" is not host:port`},
		{func(c *Config) { c.TURNRelayIP = "localhost" }, `--turn-relay-ip "localhost" is not an IP address`},
		{func(c *Config) { c.TURNTTL = 2 * time.Hour }, "--turn-ttl 2h0m0s must be between 1m and 1h"},
		{func(c *Config) { c.TURNMaxBitrate = 1000 }, "--turn-max-bitrate 1000 is below 500000"},
		{func(c *Config) { c.TURNUDP, c.TURNTCP, c.TURNTLS, c.AlwaysRelay = "", "", false, true }, "--always-relay needs the TURN server"},
	} {
		c := node()
		bad.set(&c)
		if err := c.ValidateNode(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("node: %v, want %q", err, bad.want)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("serve: %v, want %q", err, bad.want)
		}
	}
}
