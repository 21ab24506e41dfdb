package loadtest

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"conclave/internal/pki"
	"conclave/internal/store"
)

// LocalOptions start a server for the load test.
type LocalOptions struct {
	// Exe is the conclave binary to run as `conclave serve`.
	Exe string
	// Rooms are created (open) before it starts.
	Rooms []string
	// MaxParticipants is passed as --max-participants.
	MaxParticipants int
	// Args are more serve flags.
	Args []string
	// Log receives the server's standard error (its log).
	Log io.Writer
}

// LocalServer is a `conclave serve` process on loopback, in its own
// temporary data directory, with its debug listener on, so that its CPU
// time and memory can be read from /proc and its profiles fetched.
type LocalServer struct {
	// URL is the base of its web client, https://127.0.0.1:port.
	URL string
	// Roots trust its certificate.
	Roots *x509.CertPool
	// Debug is its debug listener.
	Debug *DebugServer
	// PID is its process id.
	PID int

	cmd    *exec.Cmd
	dir    string
	exited chan struct{}
	err    error // why it exited, once exited is closed
}

// localStartTimeout bounds the server's start.
const localStartTimeout = 60 * time.Second

// StartLocal starts the server and waits until it answers.
func StartLocal(ctx context.Context, o LocalOptions) (*LocalServer, error) {
	dir, err := os.MkdirTemp("", "conclave-loadtest-")
	if err != nil {
		return nil, fmt.Errorf("local server: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if err := createRooms(ctx, dir, o.Rooms); err != nil {
		return nil, err
	}
	args := localServeArgs(dir, o)
	cmd := exec.Command(o.Exe, args...)
	cmd.Env = withoutConclaveEnv(os.Environ())
	cmd.Stderr = o.Log
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	setDeathSignal(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("local server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("local server: start %s: %w", o.Exe, err)
	}
	s := &LocalServer{PID: cmd.Process.Pid, cmd: cmd, dir: dir, exited: make(chan struct{})}
	addrs := make(chan [2]string, 1)
	go s.readOutput(out, addrs)
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()

	var web, debug string
	select {
	case a := <-addrs:
		web, debug = a[0], a[1]
	case <-s.exited:
		return nil, fmt.Errorf("local server exited at start (%v); its log says why", s.err)
	case <-time.After(localStartTimeout):
		s.stop()
		return nil, errors.New("local server: no address printed within a minute")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	s.URL = web
	if s.Debug, err = NewDebugServer(debug); err != nil {
		s.stop()
		return nil, err
	}
	pem, err := os.ReadFile(filepath.Join(dir, "tls", pki.CACertFile))
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("local server: %w", err)
	}
	s.Roots = x509.NewCertPool()
	s.Roots.AppendCertsFromPEM(pem)
	if err := s.waitHealthy(ctx); err != nil {
		s.stop()
		return nil, err
	}
	ok = true
	return s, nil
}

// createRooms makes open rooms in a fresh data directory.
func createRooms(ctx context.Context, dir string, rooms []string) error {
	st, err := store.OpenSQLite(filepath.Join(dir, "conclave.db"))
	if err != nil {
		return fmt.Errorf("local server: %w", err)
	}
	defer st.Close()
	for _, alias := range rooms {
		if _, err := st.CreateRoom(ctx, store.Room{Alias: alias, DisplayName: "Load test " + alias}); err != nil {
			return fmt.Errorf("local server: create room %s: %w", alias, err)
		}
	}
	return nil
}

// withoutConclaveEnv drops CONCLAVE_* variables, which would otherwise
// configure the server in ways the load test does not expect.
func withoutConclaveEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "CONCLAVE_") {
			out = append(out, kv)
		}
	}
	return out
}

// readOutput finds the web client's and the debug listener's addresses in
// what serve prints, then drains the rest.
func (s *LocalServer) readOutput(r io.Reader, addrs chan<- [2]string) {
	sc := bufio.NewScanner(r)
	var web, debug string
	sent := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "Web" && f[1] == "client:":
			web = strings.TrimRight(f[2], "/")
		case len(f) >= 2 && f[0] == "Debug:":
			debug = strings.TrimSuffix(f[1], "/metrics")
		}
		if !sent && web != "" && debug != "" {
			addrs <- [2]string{web, debug}
			sent = true
		}
	}
	io.Copy(io.Discard, r)
}

func (s *LocalServer) waitHealthy(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(s.Roots)}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(localStartTimeout)
	for {
		resp, err := hc.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("local server at %s does not answer: %v", s.URL, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.exited:
			return fmt.Errorf("local server exited (%v); its log says why", s.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops the server (SIGTERM, then SIGKILL after 10 s) and removes
// its data directory.
func (s *LocalServer) Close() error {
	err := s.stop()
	return errors.Join(err, os.RemoveAll(s.dir))
}

func (s *LocalServer) stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("local server did not stop within 10 s; killed")
	}
}

// localServeArgs is the command line of the local server. Every
// participant of the load comes from 127.0.0.1, so the per-address
// connection cap (128 by default, against floods) is lifted: with it, a
// run of more than 127 participants lost its 129th WebSocket (an EOF in
// the handshake).
func localServeArgs(dir string, o LocalOptions) []string {
	args := []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--media-udp", "127.0.0.1:0", "--media-tcp", "",
		"--turn-udp", "127.0.0.1:0", "--turn-tcp", "127.0.0.1:0",
		"--host", "127.0.0.1", "--debug-listen", "127.0.0.1:0", "--log-level", "warn",
		"--max-conns-per-address", "-1"}
	if o.MaxParticipants > 0 {
		args = append(args, "--max-participants", strconv.Itoa(o.MaxParticipants))
	}
	return append(args, o.Args...)
}
