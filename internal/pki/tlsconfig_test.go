package pki

import (
	"crypto/fips140"
	"crypto/tls"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
)

// startTLSServer serves handshakes with ServerTLSConfig on 127.0.0.1 until
// the test ends and returns its address.
func startTLSServer(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(cert))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte("ok"))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestServerTLSPolicy(t *testing.T) {
	m := ensure(t, Options{Dir: t.TempDir(), Hosts: []string{"localhost", "127.0.0.1"}})
	addr := startTLSServer(t, m.Certificate)
	pool := mustPool(t, m)

	tests := []struct {
		name    string
		config  func() *tls.Config
		wantErr string // substring of the client's error; "" means success
		version uint16
		noFIPS  bool // the client cannot make this offer in FIPS 140-3 mode
	}{
		{
			name: "TLS 1.1 refused",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
			},
			wantErr: "remote error: tls: protocol version not supported",
			noFIPS:  true,
		},
		{
			name: "TLS 1.2 CBC suite refused",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
			},
			wantErr: "remote error: tls: handshake failure",
		},
		{
			name: "TLS 1.2 static RSA suite refused",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}
			},
			wantErr: "remote error: tls: handshake failure",
		},
		{
			name: "TLS 1.2 ChaCha20 suite refused",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}
			},
			wantErr: "remote error: tls: handshake failure",
		},
		{
			name: "TLS 1.3 with only P-521 refused",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13,
					CurvePreferences: []tls.CurveID{tls.CurveP521}}
			},
			wantErr: "remote error: tls: handshake failure",
		},
		{
			name: "TLS 1.2 ECDHE-ECDSA-AES128-GCM accepted",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, NextProtos: []string{"h2"}}
			},
			version: tls.VersionTLS12,
		},
		{
			name: "TLS 1.3 accepted",
			config: func() *tls.Config {
				return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}}
			},
			version: tls.VersionTLS13,
		},
		{
			name: "ClientTLSConfig by IP address",
			config: func() *tls.Config {
				c := ClientTLSConfig(pool)
				c.ServerName = "127.0.0.1"
				return c
			},
			version: tls.VersionTLS13,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.noFIPS && fips140.Enabled() {
				t.Skip("crypto/tls clients cannot offer this in FIPS 140-3 mode")
			}
			conn, err := tls.Dial("tcp", addr, tt.config())
			if tt.wantErr != "" {
				if err == nil {
					conn.Close()
					t.Fatalf("handshake succeeded, want %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("handshake error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			st := conn.ConnectionState()
			if st.Version != tt.version {
				t.Errorf("version = %s, want %s", tls.VersionName(st.Version), tls.VersionName(tt.version))
			}
			if !slices.Contains(curves(), st.CurveID) {
				t.Errorf("key exchange group %v is outside the policy", st.CurveID)
			}
			if st.Version == tls.VersionTLS12 && !slices.Contains(cipherSuites(), st.CipherSuite) {
				t.Errorf("suite %s is outside the policy", tls.CipherSuiteName(st.CipherSuite))
			}
			if st.Version == tls.VersionTLS13 && st.CipherSuite == tls.TLS_CHACHA20_POLY1305_SHA256 {
				t.Logf("note: TLS 1.3 negotiated %s (crypto/tls does not let servers restrict TLS 1.3 suites)", tls.CipherSuiteName(st.CipherSuite))
			}
			if len(tt.config().NextProtos) > 0 && st.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN = %q, want h2", st.NegotiatedProtocol)
			}
			buf := make([]byte, 2)
			if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ok" {
				t.Errorf("read = %q, %v", buf, err)
			}
		})
	}
}

func TestServerTLSConfigFields(t *testing.T) {
	c := ServerTLSConfig(tls.Certificate{})
	if c.MinVersion != tls.VersionTLS12 || c.MaxVersion != tls.VersionTLS13 {
		t.Errorf("versions %s..%s", tls.VersionName(c.MinVersion), tls.VersionName(c.MaxVersion))
	}
	for _, id := range c.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !strings.Contains(name, "_GCM_") {
			t.Errorf("suite %s is not ECDHE with AES-GCM", name)
		}
	}
	if !slices.Equal(c.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %q", c.NextProtos)
	}
	// Each call returns its own slices.
	c.CipherSuites[0] = 0
	if ServerTLSConfig(tls.Certificate{}).CipherSuites[0] == 0 {
		t.Error("configs share their cipher suite slice")
	}
}

// TestHardening16HTTPSGroupsAndTickets (docs/hardening.md, finding 16,
// HTTPS part): the HTTPS listener offers P-256 and P-384 only (a client
// with only X25519 is refused; one that prefers X25519 gets P-256), and
// issues no session tickets, so no ticket key outlives a connection.
func TestHardening16HTTPSGroupsAndTickets(t *testing.T) {
	m := ensure(t, Options{Dir: t.TempDir(), Hosts: []string{"localhost", "127.0.0.1"}})
	addr := startTLSServer(t, m.Certificate)
	pool := mustPool(t, m)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: v, MaxVersion: v,
			CurvePreferences: []tls.CurveID{tls.X25519}})
		if err == nil {
			c.Close()
			t.Errorf("%s: a client offering only X25519 was served", tls.VersionName(v))
		}
		c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: v, MaxVersion: v,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}})
		if err != nil {
			t.Fatalf("%s: X25519 then P-256: %v", tls.VersionName(v), err)
		}
		if g := c.ConnectionState().CurveID; g != tls.CurveP256 {
			t.Errorf("%s: negotiated group %v, want P-256", tls.VersionName(v), g)
		}
		c.Close()

		// Resumption needs a ticket; a client with a session cache gets
		// none and does a full handshake the second time.
		cache := tls.NewLRUClientSessionCache(4)
		for i := 0; i < 2; i++ {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: v, MaxVersion: v,
				ClientSessionCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2)
			io.ReadFull(c, buf) // TLS 1.3 tickets arrive after the handshake
			if c.ConnectionState().DidResume {
				t.Errorf("%s: connection %d resumed a session", tls.VersionName(v), i+1)
			}
			c.Close()
		}
		if _, ok := cache.Get("localhost"); ok {
			t.Errorf("%s: the server issued a session ticket", tls.VersionName(v))
		}
	}
}
