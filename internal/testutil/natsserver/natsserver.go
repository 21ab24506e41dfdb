// Package natsserver runs the real nats-server program for tests of an
// external NATS server (conclave --nats): the binary is built from the
// github.com/nats-io/nats-server/v2 module Conclave depends on, once per
// version and Go toolchain (kept in the temporary directory), and
// started with a configuration file.
package natsserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"conclave/internal/testutil/wait"
)

const module = "github.com/nats-io/nats-server/v2"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of the nats-server program of the module
// version this test binary is built with, building it the first time
// (go build, which reuses the Go build cache).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { binPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build nats-server: %v", buildErr)
	}
	return binPath
}

func build() (string, error) {
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == module {
				version = d.Version
			}
		}
	}
	if version == "" {
		return "", errors.New("this test binary does not depend on " + module)
	}
	path := filepath.Join(os.TempDir(), "conclave-nats-server-"+version+"-"+runtime.Version())
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, module)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", module, err, out)
	}
	return path, os.Rename(tmp, path)
}

// Server is a running nats-server.
type Server struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []string
	done chan struct{}
}

// Start runs nats-server -c conf until the test ends, and waits until
// addr (its client listener, host:port) accepts connections.
func Start(t testing.TB, conf, addr string) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{done: make(chan struct{})}
	started := make(chan error, 1)
	// The parent-death signal follows the thread that started the
	// process: keep that thread for the server's lifetime.
	go func() {
		runtime.LockOSThread()
		defer close(s.done)
		s.cmd = exec.Command(bin, "-c", conf)
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stderr, err := s.cmd.StderrPipe()
		if err != nil {
			started <- err
			return
		}
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.logs = append(s.logs, sc.Text())
			s.mu.Unlock()
		}
		s.cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("nats-server's log:\n%s", s.Log())
		}
	})
	listening := func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	ended := func() bool {
		select {
		case <-s.done:
			return true
		default:
			return false
		}
	}
	if !wait.Within(15*time.Second, func() bool { return ended() || listening() }) || ended() {
		t.Fatalf("nats-server -c %s does not listen on %s:\n%s", conf, addr, s.Log())
	}
	return s
}

// Reload makes the server read its configuration again (what
// nats-server --signal reload does).
func (s *Server) Reload() error { return s.cmd.Process.Signal(syscall.SIGHUP) }

// Log is what the server wrote so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.logs, "\n")
}

// WaitLog waits until a line of the log contains want.
func (s *Server) WaitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	wait.Until(t, timeout, func() bool { return strings.Contains(s.Log(), want) },
		func() string { return fmt.Sprintf("nats-server's log to say %q; it says:\n%s", want, s.Log()) })
}

// Stop kills the server (as a machine that fails would) and waits until
// it has ended.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	<-s.done
}
