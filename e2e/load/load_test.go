// Package load floods the unauthenticated paths of a real conclave
// process on loopback while a meeting goes on, and checks that the
// server's memory stays bounded and the meeting keeps flowing
// (docs/hardening.md, "Load test of the unauthenticated paths").
package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/image/vp8"

	"conclave/internal/client"
	"conclave/internal/procstat"
	"conclave/internal/testutil/wait"
)

// The flood and its bounds.
const (
	logins   = 1000 // sign-ins with made-up usernames
	joins    = 1000 // WebSocket joins with wrong PINs
	sources  = 5    // attacking addresses, 127.0.3.1 ... 127.0.3.5
	workers  = 16   // concurrent attackers in all
	rssBound = 300 << 20
	timeout  = 4 * time.Minute
)

// TestLoadUnauthenticated: 1 000 sign-ins with random usernames and 1 000
// joins with wrong PINs, from five loopback addresses at once, while two
// participants hold a meeting: the server's peak resident memory stays
// under 300 MiB and the meeting's video keeps arriving and decoding.
func TestLoadUnauthenticated(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "conclave")
	if out, err := exec.Command("go", "build", "-o", bin, "conclave/cmd/conclave").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	env := append(os.Environ(), "CONCLAVE_DATA="+data)
	for _, args := range [][]string{
		{"admin", "create-room", "-alias", "board", "-name", "Board"},
		{"admin", "create-room", "-alias", "vault", "-access", "pin", "-host-pin", "246810", "-guest-pin", "135790"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	port := freePort(t)
	base := "https://127.0.0.1:" + strconv.Itoa(port)
	srv := exec.Command(bin, "serve", "--listen", "127.0.0.1:"+strconv.Itoa(port), "--media-udp", "127.0.0.1:0",
		"--media-tcp", "", "--sip-listen", "", "--host", "127.0.0.1", "--log-level", "warn")
	srv.Env = env
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	roots := waitUp(t, base, filepath.Join(data, "tls", "ca.crt"))

	// The meeting: Ann publishes the test video, Bob watches and decodes.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ann, err := client.Dial(ctx, client.Options{URL: base + "/r/board", Name: "Ann", RootCAs: roots, Camera: client.NewTestVideo()})
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Leave()
	var frames, decoded, undecodable atomic.Int64
	bob, err := client.Dial(ctx, client.Options{URL: base + "/r/board", Name: "Bob", RootCAs: roots,
		NewSink: func(client.TrackInfo) (client.FrameSink, error) {
			return &vp8Sink{frames: &frames, decoded: &decoded, bad: &undecodable}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Leave()
	wait.For(t, "Bob to decode Ann's video", 30*time.Second, func() bool { return decoded.Load() > 0 })

	// The flood.
	start := time.Now()
	var sent atomic.Int64
	answers := map[string]int{}
	var mu sync.Mutex
	count := func(a string) {
		mu.Lock()
		answers[a]++
		mu.Unlock()
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				source := fmt.Sprintf("127.0.3.%d", 1+i%sources)
				if i%2 == 0 {
					count("login " + login(base, source, fmt.Sprintf("user-%d-%d", i, time.Now().UnixNano())))
				} else {
					count("join " + join(base, source))
				}
				sent.Add(1)
			}
		}()
	}
	// Watch the meeting and the server's memory while it lasts.
	stalled, peakSeen := watch(t, srv.Process.Pid, &frames, func() bool { return sent.Load() >= logins+joins })
	for i := 0; i < logins+joins; i++ {
		if ctx.Err() != nil {
			t.Fatalf("the flood did not finish in %v", timeout)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	gap := <-stalled

	st, err := procstat.Read(srv.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sign-ins and %d joins from %d addresses in %v; answers %v", logins, joins, sources, elapsed.Round(time.Millisecond), answers)
	t.Logf("server RSS now %d MiB, peak %d MiB (bound %d MiB); longest gap in the meeting's video %v; frames %d, key frames decoded %d",
		st.RSS>>20, max(st.Peak, <-peakSeen)>>20, rssBound>>20, gap.Round(time.Millisecond), frames.Load(), decoded.Load())
	if st.Peak > rssBound {
		t.Errorf("server peak RSS %d MiB, over the bound of %d MiB", st.Peak>>20, rssBound>>20)
	}
	if gap > 2*time.Second {
		t.Errorf("the meeting's video stopped for %v during the flood", gap)
	}
	if undecodable.Load() > 0 {
		t.Errorf("%d key frames did not decode", undecodable.Load())
	}
	for a, n := range answers {
		if !strings.HasSuffix(a, " refused") && !strings.HasSuffix(a, " busy") && !strings.HasSuffix(a, " blocked") && !strings.HasSuffix(a, " bad-credentials") {
			t.Errorf("%d answers %q", n, a)
		}
	}
	if ann.Err() != nil || bob.Err() != nil {
		t.Errorf("the meeting broke: %v, %v", ann.Err(), bob.Err())
	}
}

// watch samples the meeting's frame count and the server's memory every
// 100 ms until done, and then sends the longest time without a new frame
// and the highest resident memory seen.
func watch(t *testing.T, pid int, frames *atomic.Int64, done func() bool) (<-chan time.Duration, <-chan int64) {
	gapc, peakc := make(chan time.Duration, 1), make(chan int64, 1)
	go func() {
		var gap time.Duration
		var peak int64
		last, lastAt := frames.Load(), time.Now()
		for !done() {
			time.Sleep(100 * time.Millisecond)
			gap = max(gap, time.Since(lastAt))
			if n := frames.Load(); n != last {
				last, lastAt = n, time.Now()
			}
			if s, err := procstat.Read(pid); err == nil {
				peak = max(peak, s.RSS)
			}
		}
		gapc <- gap
		peakc <- peak
	}()
	return gapc, peakc
}

// login signs in once from source and names the answer.
func login(base, source, user string) string {
	hc := httpFrom(source)
	body, _ := json.Marshal(map[string]string{"username": user, "password": "Guess-Password-123"})
	resp, err := hc.Post(base+"/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "refused" // connection refused at the door
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	switch e.Error.Code {
	case "address-blocked":
		return "blocked"
	case "":
		return strconv.Itoa(resp.StatusCode)
	}
	return e.Error.Code
}

// join tries the PIN room with a wrong PIN from source and names the
// answer.
func join(base, source string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(base, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: httpFrom(source), HTTPHeader: http.Header{"Origin": {base}}})
	if err != nil {
		return "refused"
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte(`{"v":1,"type":"join","id":"j","room":"vault","name":"Mallory","pin":"000000"}`))
	_, data, err := c.Read(ctx)
	if err != nil {
		return "refused"
	}
	if bytes.Contains(data, []byte(`"room-unavailable"`)) {
		return "refused"
	}
	return string(data)
}

func httpFrom(source string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
}

// vp8Sink counts the frames of a video track and decodes its key frames.
type vp8Sink struct {
	frames, decoded, bad *atomic.Int64
	dec                  *vp8.Decoder
}

func (s *vp8Sink) WriteFrame(f client.RemoteFrame) error {
	s.frames.Add(1)
	if !f.KeyFrame {
		return nil
	}
	if s.dec == nil {
		s.dec = vp8.NewDecoder()
	}
	s.dec.Init(bytes.NewReader(f.Data), len(f.Data))
	if _, err := s.dec.DecodeFrameHeader(); err != nil {
		s.bad.Add(1)
		return nil
	}
	if _, err := s.dec.DecodeFrame(); err != nil {
		s.bad.Add(1)
		return nil
	}
	s.decoded.Add(1)
	return nil
}

func (s *vp8Sink) Close() error { return nil }

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitUp waits for the node's health check and returns its CA pool.
func waitUp(t *testing.T, base, caFile string) *x509.CertPool {
	var roots *x509.CertPool
	wait.For(t, "the server to start", 30*time.Second, func() bool {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return false
		}
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return roots
}
