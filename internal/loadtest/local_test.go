package loadtest

import (
	"flag"
	"io"
	"testing"

	"conclave/internal/config"
)

// TestLocalServerUncapped: the local server's command line is one that
// `conclave serve` accepts, and it lifts the per-address connection cap,
// since all of the load's participants share 127.0.0.1 (with the cap, the
// 129th participant's WebSocket was closed in its handshake).
func TestLocalServerUncapped(t *testing.T) {
	args := localServeArgs(t.TempDir(), LocalOptions{MaxParticipants: 400})
	if args[0] != "serve" {
		t.Fatalf("command %q, want serve", args[0])
	}
	cfg := config.Defaults()
	fs := flag.NewFlagSet("conclave serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config.Register(fs, &cfg)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("conclave serve refuses the local server's flags %q: %v", args[1:], err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("left over arguments %q", fs.Args())
	}
	if cfg.MaxConnsPerAddress >= 0 {
		t.Fatalf("per-address connection cap %d: the load's %d participants all come from 127.0.0.1", cfg.MaxConnsPerAddress, 400)
	}
}
