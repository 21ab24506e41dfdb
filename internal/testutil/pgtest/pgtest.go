// Package pgtest runs Debian's PostgreSQL server for tests: one server per
// test process, started on first use with a fresh cluster under a
// temporary directory and listening only on a Unix socket there, and one
// new database per caller. scripts/test installs the Debian package
// postgresql; a test fails, never skips, when it is missing.
//
// A package that uses it stops the server at the end with
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and the server also dies with the test process (it is started with a
// parent-death signal), so that a killed test leaves no postgres behind.
package pgtest

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// superuser is the role initdb makes; tests connect as it.
const superuser = "conclave"

// server is the process-wide PostgreSQL.
type server struct {
	dir     string // cluster, socket and log live here
	sockDir string
	cmd     *exec.Cmd
	exited  chan struct{}
	admin   *sql.DB // connected to the "postgres" database
}

var (
	once    sync.Once
	shared  *server
	failure error
	nextDB  atomic.Int64
)

// Main runs the tests and then stops the server, if one was started.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the process-wide server and removes its files.
func Stop() {
	if shared == nil {
		return
	}
	shared.admin.Close()
	shared.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-shared.exited:
	case <-time.After(10 * time.Second):
		shared.cmd.Process.Kill()
		<-shared.exited
	}
	os.RemoveAll(shared.dir)
	shared = nil
}

// binDir finds Debian's PostgreSQL programs (the newest version
// installed).
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); scripts/test installs the Debian package postgresql")
}

// credential returns the user to run PostgreSQL as: itself refuses to
// run as root, so root runs it as the postgres account Debian's package
// makes.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres account (the Debian package postgresql makes it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func start() (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "conclave-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &server{dir: dir, sockDir: dir, exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", superuser, "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}

	// The server is started from a goroutine locked to its thread, which
	// never ends: the parent-death signal fires when the starting thread
	// exits, and only then is the test process gone.
	started := make(chan error, 1)
	ready := make(chan struct{})
	var logs strings.Builder
	var logMu sync.Mutex
	go func() {
		runtime.LockOSThread()
		s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
			"-k", s.sockDir, "-c", "listen_addresses=",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200", "-c", "shared_buffers=32MB")
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
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
		go func() {
			sc := bufio.NewScanner(stderr)
			once := sync.Once{}
			for sc.Scan() {
				line := sc.Text()
				logMu.Lock()
				logs.WriteString(line + "\n")
				logMu.Unlock()
				if strings.Contains(line, "database system is ready to accept connections") {
					once.Do(func() { close(ready) })
				}
			}
			io.Copy(io.Discard, stderr)
		}()
		s.cmd.Wait()
		close(s.exited)
		select {} // keep the thread, see above
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	select {
	case <-ready:
	case <-s.exited:
		logMu.Lock()
		defer logMu.Unlock()
		return nil, fmt.Errorf("postgres exited at start:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		logMu.Lock()
		defer logMu.Unlock()
		return nil, fmt.Errorf("postgres did not get ready within 60 s:\n%s", logs.String())
	}
	s.admin, err = sql.Open("pgx", s.url("postgres"))
	if err != nil {
		return nil, err
	}
	if err := s.admin.PingContext(context.Background()); err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	ok = true
	return s, nil
}

// url is the connection URL of database name on the server's socket.
func (s *server) url(name string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&sslmode=disable", superuser, name, s.sockDir)
}

// ensure starts the process-wide server on first use.
func ensure(t testing.TB) *server {
	t.Helper()
	once.Do(func() { shared, failure = start() })
	if failure != nil {
		t.Fatalf("PostgreSQL for the test: %v", failure)
	}
	return shared
}

// NewDatabase creates an empty database for the calling test and returns
// its connection URL (a postgres:// URL on a Unix socket, which processes
// in other network namespaces reach too). The database is dropped when
// the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := ensure(t)
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), nextDB.Add(1))
	ctx := context.Background()
	if _, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if shared == nil {
			return
		}
		if _, err := shared.admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return s.url(name)
}
