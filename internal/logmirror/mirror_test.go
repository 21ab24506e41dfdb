package logmirror_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/logmirror"
	"conclave/internal/logtree"
	"conclave/internal/ra"
	"conclave/internal/web"
)

// testLog is a log as a management node (honest or not) serves it: a
// tree and the key that signs its checkpoints.
type testLog struct {
	tree    *logtree.Tree
	signer  note.Signer
	entries *logtree.Tree // answers Entries from another tree when set (a liar)
	note    []byte
}

func newLog(t *testing.T, signer note.Signer, recs ...string) *testLog {
	t.Helper()
	l := &testLog{tree: logtree.New(), signer: signer}
	for _, r := range recs {
		l.tree.Append([]byte(r))
	}
	root, err := l.tree.Root()
	if err != nil {
		t.Fatal(err)
	}
	if l.note, err = e2ee.SignCheckpoint(signer, l.tree.Size(), root); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *testLog) Checkpoint() ([]byte, error) { return l.note, nil }

func (l *testLog) Prove(from, to int64, records []tlog.Hash) (ra.Proof, error) {
	p, err := l.tree.Prove(from, to, records)
	if to == 0 {
		p.Checkpoint = l.note
	}
	return p, err
}

func (l *testLog) Entries(start, size int64) ([]ra.Entry, error) {
	if l.entries != nil {
		return l.entries.Entries(start, size)
	}
	return l.tree.Entries(start, size)
}

func signer(t *testing.T) (note.Signer, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e2ee.NewLogSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e2ee.LogVerifierKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// upstream is an HTTPS management node whose log the test swaps.
type upstream struct {
	src atomic.Pointer[testLog]
	srv *httptest.Server
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.LogHandler(u.src.Load(), slog.New(slog.DiscardHandler)).ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) api() secure.LogAPI {
	return secure.HTTPLog{Client: u.srv.Client(), Base: u.srv.URL}
}

// lines is a log handler's output, safe for concurrent use.
type lines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func recs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("record %d", i))
	}
	return out
}

// get answers a request with h and returns status and body.
func get(h http.Handler, method, target, body string) (int, string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

// TestMirrorRefusesTamperedLog: the copy adopts an honest log and its
// growth, and refuses (with an error line, serving the last log it
// verified) a checkpoint under another key, a rolled back log, another
// tree of the same size, a forked longer one and records that do not
// make the signed tree; it comes back from disk after a restart.
func TestMirrorRefusesTamperedLog(t *testing.T) {
	ctx := context.Background()
	s, vkey := signer(t)
	other, _ := signer(t)
	up := newUpstream(t)
	var out lines
	logger := slog.New(slog.NewTextHandler(&out, nil))
	dir := t.TempDir()
	m, err := logmirror.Open(dir, vkey, logger)
	if err != nil {
		t.Fatal(err)
	}
	if m.Ready() {
		t.Fatal("an empty copy is ready")
	}

	honest5 := newLog(t, s, recs(5)...)
	up.src.Store(honest5)
	if err := m.Sync(ctx, up.api(), vkey); err != nil {
		t.Fatal(err)
	}
	if cp, _ := m.Checkpoint(); !bytes.Equal(cp, honest5.note) || m.Size() != 5 {
		t.Fatalf("copy after the first sync: %d records, %q", m.Size(), cp)
	}

	forked := recs(7)
	forked[2] = "forged record"
	sameSize := recs(5)
	sameSize[4] = "forged record"
	lie := recs(7)
	lie[6] = "forged record"
	liar := newLog(t, s, recs(7)...)
	liar.entries = newLog(t, s, lie...).tree
	for _, c := range []struct {
		name string
		log  *testLog
		want string
	}{
		{"checkpoint signed by another key", newLog(t, other, recs(7)...), "does not verify with the log key"},
		{"rolled back", newLog(t, s, recs(3)...), "smaller than this node's copy"},
		{"another tree of the same size", newLog(t, s, sameSize...), "forked or rewritten"},
		{"forked longer log", newLog(t, s, forked...), "forked or rewritten"},
		{"records that do not make the signed tree", liar, "do not make the tree its checkpoint signs"},
	} {
		up.src.Store(c.log)
		err := m.Sync(ctx, up.api(), vkey)
		if !errors.Is(err, logmirror.ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
		if !strings.Contains(out.String(), "level=ERROR") || !strings.Contains(out.String(), c.want) {
			t.Errorf("%s: no error line saying %q in\n%s", c.name, c.want, out.String())
		}
		if cp, _ := m.Checkpoint(); !bytes.Equal(cp, honest5.note) || m.Size() != 5 {
			t.Errorf("%s: the copy changed to %d records", c.name, m.Size())
		}
		if !m.Refused() || m.Down() {
			t.Errorf("%s: refused %v, down %v", c.name, m.Refused(), m.Down())
		}
		if _, body := get(web.LogHandler(m, logger), "GET", "/api/e2ee/log/entries?start=0&size=5", ""); strings.Contains(body, "Zm9yZ2Vk") {
			t.Errorf("%s: a forged record is served", c.name)
		}
	}

	honest7 := newLog(t, s, recs(7)...)
	up.src.Store(honest7)
	if err := m.Sync(ctx, up.api(), vkey); err != nil {
		t.Fatal(err)
	}
	same := func(m *logmirror.Mirror) {
		t.Helper()
		mine, theirs := web.LogHandler(m, logger), web.LogHandler(honest7, logger)
		for _, r := range []struct{ method, target, body string }{
			{"GET", "/api/e2ee/log/checkpoint", ""},
			{"POST", "/api/e2ee/log/prove", `{"from":5,"to":0,"records":["` + b64hash("record 6") + `","` + b64hash("absent") + `"]}`},
			{"POST", "/api/e2ee/log/prove", `{"from":2,"to":6,"records":[]}`},
			{"GET", "/api/e2ee/log/entries?start=3&size=7", ""},
			{"GET", "/api/e2ee/log/entries?start=3&size=9", ""},
		} {
			st1, b1 := get(mine, r.method, r.target, r.body)
			st2, b2 := get(theirs, r.method, r.target, r.body)
			if st1 != st2 || b1 != b2 {
				t.Errorf("%s %s: copy %d %s, management %d %s", r.method, r.target, st1, b1, st2, b2)
			}
		}
	}
	same(m)
	if m.Refused() || m.Down() {
		t.Errorf("after the honest log: refused %v, down %v", m.Refused(), m.Down())
	}

	// The management node goes away: the copy says so, and keeps its log.
	up.srv.Close()
	if err := m.Sync(ctx, up.api(), vkey); !errors.Is(err, logmirror.ErrUnreachable) || !m.Down() || m.Refused() {
		t.Errorf("upstream closed: %v, down %v, refused %v", err, m.Down(), m.Refused())
	}
	same(m)

	// A restarted node has its copy.
	again, err := logmirror.Open(dir, vkey, logger)
	if err != nil {
		t.Fatal(err)
	}
	same(again)
}

func b64hash(rec string) string {
	h := tlog.RecordHash([]byte(rec))
	return encode(h[:])
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
