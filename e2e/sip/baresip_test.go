package sip_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// phone is one baresip instance driven over its ctrl_tcp socket.
type phone struct {
	t      *testing.T
	name   string
	dir    string
	sink   string
	cmd    *exec.Cmd
	conn   net.Conn
	log    *bytes.Buffer
	logMu  *sync.Mutex
	events chan map[string]any
	resp   chan map[string]any
}

// phoneConfig says how to configure a baresip instance.
type phoneConfig struct {
	name     string
	aor      string // sip:alice@conclave.test
	proxy    string // 127.0.0.1:port of the SIP edge
	certPEM  []byte // certificate and clear key, as `conclave device export` writes
	caPEM    []byte // the server's TLS CA
	toneHz   float64
	mediaEnc string // dtls_srtp, srtp-mand, or "" (plain RTP)
	codecs   string // PCMU
	authPass string // the digest secret, when the server asks for it
}

// startPhone runs baresip with its own config directory until the test
// ends.
func startPhone(t *testing.T, pc phoneConfig) *phone {
	t.Helper()
	dir := t.TempDir()
	sink := filepath.Join(dir, "sink")
	if err := os.MkdirAll(sink, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := write("cert.pem", pc.certPEM)
	ca := write("ca.pem", pc.caPEM)
	// baresip's aufile plays the file at the codec's rate and channels:
	// G.711 is 8 kHz mono, Opus 48 kHz stereo.
	srate, channels := 8000, 1
	if strings.Contains(strings.ToLower(pc.codecs), "opus") {
		srate, channels = 48000, 2
	}
	tone := write("tone.wav", toneWAV(pc.toneHz, srate, channels, 30*time.Second))
	ctrlPort := freeTCPPort(t)
	codecs := pc.codecs
	if codecs == "" {
		codecs = "PCMU"
	}
	config := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
sip_certificate %s
sip_cafile %s
sip_trans_def tls
audio_player alsa,null
audio_source aufile,%s
audio_alert alsa,null
audio_srate %d
audio_channels %d
rtp_tos 0
rtcp_mux no
jitter_buffer_delay 1-10
module_path /usr/lib/baresip/modules
module g711.so
module opus.so
module aufile.so
module alsa.so
module sndfile.so
module srtp.so
module dtls_srtp.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:%d
snd_path %s
`, freeTCPPort(t), cert, ca, tone, srate, channels, ctrlPort, sink)
	write("config", []byte(config))
	pass := pc.authPass
	if pass == "" {
		pass = "unused"
	}
	acct := fmt.Sprintf(`<%s;transport=tls>;outbound="sip:%s;transport=tls";regint=600;answermode=auto;audio_codecs=%s;auth_pass=%s`,
		pc.aor, pc.proxy, codecs, pass)
	if pc.mediaEnc != "" {
		acct += ";mediaenc=" + pc.mediaEnc
	}
	// The account is created over the control socket once the test
	// listens to it (uanew below), so that no registration event is lost.
	write("accounts", []byte("\n"))
	p := &phone{t: t, name: pc.name, dir: dir, sink: sink, log: &bytes.Buffer{}, logMu: &sync.Mutex{},
		events: make(chan map[string]any, 64), resp: make(chan map[string]any, 8)}
	p.cmd = exec.Command("baresip", "-f", dir, "-v", "-4", "-n", "127.0.0.1")
	w := &lockedWriter{mu: p.logMu, b: p.log}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.Stdin = nil
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start baresip: %v", err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("baresip %s log:\n%s", p.name, p.Log())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ctrlPort))
		if err == nil {
			p.conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s control socket: %v\n%s", p.name, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond) // waiting for another process to listen
	}
	go p.read()
	if r := p.command("uanew", acct); r["ok"] != true {
		t.Fatalf("baresip %s: uanew: %v\n%s", p.name, r, p.Log())
	}
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Log returns what baresip printed so far.
func (p *phone) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	// Drop the call status line baresip redraws many times a second.
	return statusLine.ReplaceAllString(p.log.String(), "")
}

var statusLine = regexp.MustCompile(`\[\d+:\d\d:\d\d\] audio=[^\n]*?\(bit/s\)\s*`)

// read decodes ctrl_tcp's netstrings: events and command responses.
func (p *phone) read() {
	r := bufio.NewReader(p.conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			close(p.events)
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
		if err != nil || n > 1<<20 {
			close(p.events)
			return
		}
		buf := make([]byte, n+1)
		if _, err := io.ReadFull(r, buf); err != nil {
			close(p.events)
			return
		}
		var m map[string]any
		if json.Unmarshal(buf[:n], &m) != nil {
			continue
		}
		if m["response"] == true {
			p.resp <- m
			continue
		}
		p.events <- m
	}
}

// command sends a ctrl_tcp command and returns its response.
func (p *phone) command(cmd, params string) map[string]any {
	p.t.Helper()
	b, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": cmd})
	fmt.Fprintf(p.conn, "%d:%s,", len(b), b)
	select {
	case r := <-p.resp:
		return r
	case <-time.After(10 * time.Second):
		p.t.Fatalf("baresip %s: no response to %s", p.name, cmd)
		return nil
	}
}

// waitEvent waits for an event of one of types and returns it.
func (p *phone) waitEvent(timeout time.Duration, types ...string) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				p.t.Fatalf("baresip %s exited while waiting for %v\n%s", p.name, types, p.Log())
			}
			typ, _ := ev["type"].(string)
			for _, want := range types {
				if typ == want {
					return ev
				}
			}
		case <-deadline:
			p.t.Fatalf("baresip %s: no %v within %s\n%s", p.name, types, timeout, p.Log())
			return nil
		}
	}
}

// waitEvents waits until an event of each of types has come, in any
// order.
func (p *phone) waitEvents(timeout time.Duration, types ...string) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	missing := map[string]bool{}
	for _, typ := range types {
		missing[typ] = true
	}
	for len(missing) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			p.t.Fatalf("baresip %s: no %v within %s\n%s", p.name, missing, timeout, p.Log())
		}
		var want []string
		for typ := range missing {
			want = append(want, typ)
		}
		ev := p.waitEvent(left, want...)
		delete(missing, ev["type"].(string))
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// toneWAV makes an S16LE WAV file of a sine tone, the same on every
// channel.
func toneWAV(hz float64, rate, channels int, d time.Duration) []byte {
	n := int(d.Seconds() * float64(rate))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+2*n*channels))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, uint32(16))
	binary.Write(&b, le, uint16(1))
	binary.Write(&b, le, uint16(channels))
	binary.Write(&b, le, uint32(rate))
	binary.Write(&b, le, uint32(rate*2*channels))
	binary.Write(&b, le, uint16(2*channels))
	binary.Write(&b, le, uint16(16))
	b.WriteString("data")
	binary.Write(&b, le, uint32(2*n*channels))
	for i := range n {
		v := int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/float64(rate)))
		for range channels {
			binary.Write(&b, le, v)
		}
	}
	return b.Bytes()
}

// wavSamples reads the 16-bit PCM samples of a WAV file (the data chunk).
func wavSamples(t *testing.T, path string) ([]int16, int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 12 || string(data[:4]) != "RIFF" {
		t.Fatalf("%s is not a WAV file", path)
	}
	rate := 0
	for off := 12; off+8 <= len(data); {
		id := string(data[off : off+4])
		size := int(binary.LittleEndian.Uint32(data[off+4:]))
		body := data[off+8 : min(off+8+size, len(data))]
		switch id {
		case "fmt ":
			rate = int(binary.LittleEndian.Uint32(body[4:]))
		case "data":
			s := make([]int16, len(body)/2)
			for i := range s {
				s[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return s, rate
		}
		off += 8 + size + size%2
	}
	t.Fatalf("%s has no data chunk", path)
	return nil, 0
}

// toneEnergy is the share of the signal's energy at hz (Goertzel), in
// [0, 1], and the signal's RMS.
func toneEnergy(s []int16, rate int, hz float64) (share, rms float64) {
	if len(s) == 0 {
		return 0, 0
	}
	k := 2 * math.Cos(2*math.Pi*hz/float64(rate))
	var s1, s2, total float64
	for _, v := range s {
		x := float64(v)
		s0 := x + k*s1 - s2
		s2, s1 = s1, s0
		total += x * x
	}
	power := s1*s1 + s2*s2 - k*s1*s2
	n := float64(len(s))
	rms = math.Sqrt(total / n)
	if total == 0 {
		return 0, 0
	}
	// A pure tone of amplitude A gives power (A*n/2)^2 and total A^2*n/2.
	return power / (total * n / 2), rms
}

// receivedAudio finds the decoded-audio dump sndfile wrote for the call.
func (p *phone) receivedAudio() string {
	p.t.Helper()
	m, _ := filepath.Glob(filepath.Join(p.sink, "dump-*-dec.wav"))
	if len(m) == 0 {
		p.t.Fatalf("baresip %s wrote no received-audio dump in %s\n%s", p.name, p.sink, p.Log())
	}
	return m[len(m)-1]
}

// exportPEM returns the certificate and clear key in one PEM file, as
// `conclave device export` writes it for baresip.
func exportPEM(t *testing.T, certPEM []byte, keyDER []byte) []byte {
	t.Helper()
	if _, err := x509.ParsePKCS8PrivateKey(keyDER); err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{}, certPEM...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
}

var _ = context.Background

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
