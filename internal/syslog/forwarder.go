package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/clock"
	"conclave/internal/pki"
	"conclave/internal/store"
)

// Server is one syslog receiver.
type Server struct {
	// Name identifies it in alarms, logs and the cursor file's name.
	Name string
	// Address is host:port.
	Address string
	// ServerName is checked in its certificate (default: Address's host).
	ServerName string
	// Roots verify its certificate; nil means the system roots.
	Roots *x509.CertPool
	// ClientCert is presented when the server asks for one; nil for none.
	ClientCert *tls.Certificate
}

// Config configures a Forwarder.
type Config struct {
	// Server is the receiver.
	Server Server
	// Store is the audit log read from.
	Store store.Store
	// Dir keeps the cursor file.
	Dir string
	// Hostname is the HOSTNAME of the messages.
	Hostname string
	// Alarms receives the syslog alarm; nil raises none.
	Alarms *alarm.Center
	// Clock times the retries; nil is the system clock.
	Clock clock.Clock
	// Retry is the first wait after a failure, doubled up to MaxRetry
	// (1 s and 30 s when zero).
	Retry, MaxRetry time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Forwarder delivers the audit log to one server, in order, from where
// it stopped. It is safe for concurrent use.
type Forwarder struct {
	cfg    Config
	cursor string

	wake chan struct{}
	done chan struct{}

	mu        sync.Mutex
	delivered int64 // last record delivered
	conn      *tls.Conn
	down      time.Time // since when the server is unreachable; zero if up
	lastErr   string
	sent      uint64
}

// cursorName makes a server name safe as a file name.
func cursorName(name string) string {
	var b strings.Builder
	for _, c := range name {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String() + ".cursor"
}

// New returns a forwarder. A server seen for the first time starts after
// the newest record: it receives what happens from now on.
func New(ctx context.Context, cfg Config) (*Forwarder, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("syslog %s: %w", cfg.Server.Name, err)
	}
	f := &Forwarder{cfg: cfg, cursor: filepath.Join(cfg.Dir, cursorName(cfg.Server.Name)),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	data, err := os.ReadFile(f.cursor)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		last, err := cfg.Store.ListAudit(ctx, store.AuditFilter{Newest: true, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("syslog %s: %w", cfg.Server.Name, err)
		}
		if len(last) > 0 {
			f.delivered = last[0].Seq
		}
		if err := f.saveCursor(f.delivered); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("syslog %s: %w", cfg.Server.Name, err)
	default:
		f.delivered, err = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("syslog %s: the cursor file %s is damaged; remove it to start from the newest record", cfg.Server.Name, f.cursor)
		}
	}
	return f, nil
}

func (f *Forwarder) saveCursor(seq int64) error {
	tmp := f.cursor + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(seq, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.cursor)
}

// Notify wakes the forwarder: new records are in the log (audit.Sink).
func (f *Forwarder) Notify() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Status is what the admin page shows of a forwarder.
type Status struct {
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Up        bool      `json:"up"`
	DownSince time.Time `json:"downSince,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	Delivered int64     `json:"delivered"`
	Sent      uint64    `json:"sent"`
}

// Status reports the forwarder's state.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{Name: f.cfg.Server.Name, Address: f.cfg.Server.Address, Up: f.down.IsZero() && f.conn != nil,
		DownSince: f.down, LastError: f.lastErr, Delivered: f.delivered, Sent: f.sent}
}

// Run delivers until ctx ends.
func (f *Forwarder) Run(ctx context.Context) {
	defer close(f.done)
	defer f.closeConn()
	wait := f.cfg.Retry
	for {
		err := f.deliver(ctx)
		if ctx.Err() != nil {
			return
		}
		var retry <-chan struct{}
		stop := func() bool { return false }
		if err != nil {
			f.failed(err)
			ch := make(chan struct{})
			stop = f.cfg.Clock.AfterFunc(wait, func() { close(ch) })
			retry = ch
			wait = min(wait*2, f.cfg.MaxRetry)
		} else {
			wait = f.cfg.Retry
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-f.wake:
		case <-retry:
		}
		stop()
	}
}

// Done is closed when Run has returned.
func (f *Forwarder) Done() <-chan struct{} { return f.done }

func (f *Forwarder) failed(err error) {
	f.closeConn()
	f.mu.Lock()
	if f.down.IsZero() {
		f.down = f.cfg.Clock.Now().UTC()
	}
	since := f.down
	f.lastErr = err.Error()
	f.mu.Unlock()
	f.cfg.Logger.Warn("syslog server unreachable", "server", f.cfg.Server.Name, "address", f.cfg.Server.Address, "err", err)
	if f.cfg.Alarms != nil {
		f.cfg.Alarms.Raise(alarm.KindSyslog, f.cfg.Server.Name, alarm.Major,
			fmt.Sprintf("Syslog server %s (%s) unreachable since %s: %v. Audit records are kept and will be sent when it is back.",
				f.cfg.Server.Name, f.cfg.Server.Address, since.Format(time.RFC3339), err))
	}
}

func (f *Forwarder) closeConn() {
	f.mu.Lock()
	c := f.conn
	f.conn = nil
	f.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// deliver sends every record after the cursor.
func (f *Forwarder) deliver(ctx context.Context) error {
	for {
		f.mu.Lock()
		after := f.delivered
		f.mu.Unlock()
		recs, err := f.cfg.Store.ListAudit(ctx, store.AuditFilter{AfterSeq: after, Limit: 200})
		if err != nil {
			return fmt.Errorf("read the audit log: %w", err)
		}
		if len(recs) == 0 {
			return nil
		}
		if recs[0].Seq != after+1 && after > 0 {
			f.cfg.Logger.Error("syslog: audit records dropped before delivery (the audit files' size cap was reached while the server was down)",
				"server", f.cfg.Server.Name, "from", after+1, "to", recs[0].Seq-1)
		}
		conn, err := f.connection(ctx)
		if err != nil {
			return err
		}
		var buf []byte
		for _, r := range recs {
			buf = append(buf, Frame(Format(r, f.cfg.Hostname))...)
		}
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(buf); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		last := recs[len(recs)-1].Seq
		if err := f.saveCursor(last); err != nil {
			return fmt.Errorf("save the cursor: %w", err)
		}
		f.mu.Lock()
		f.delivered = last
		f.sent += uint64(len(recs))
		wasDown := !f.down.IsZero()
		f.down, f.lastErr = time.Time{}, ""
		f.mu.Unlock()
		if wasDown {
			f.cfg.Logger.Info("syslog server reachable again", "server", f.cfg.Server.Name)
		}
		if f.cfg.Alarms != nil {
			f.cfg.Alarms.Clear(alarm.KindSyslog, f.cfg.Server.Name)
		}
	}
}

// connection returns the open connection after checking that the server
// has not closed it (a receiver that stopped has sent its close; writing
// into that connection would lose records), or dials a new one.
func (f *Forwarder) connection(ctx context.Context) (*tls.Conn, error) {
	f.mu.Lock()
	c := f.conn
	f.mu.Unlock()
	if c != nil {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var one [1]byte
		_, err := c.Read(one[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.SetReadDeadline(time.Time{})
			return c, nil
		}
		// EOF, an alert or unexpected data: start again.
		f.closeConn()
	}
	srv := f.cfg.Server
	name := srv.ServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(srv.Address)
	}
	tc := pki.ClientTLSConfig(srv.Roots)
	tc.ServerName = name
	if srv.ClientCert != nil {
		cert := *srv.ClientCert
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, err := d.DialContext(dctx, "tcp", srv.Address)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c = nc.(*tls.Conn)
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
	return c, nil
}
