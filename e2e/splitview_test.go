package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/e2ee"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
)

// forkedLog is a fork of the server's identity log, signed with the log
// key (which the server holds): what a malicious server shows some users.
type forkedLog struct {
	key     *ecdsa.PrivateKey
	mu      sync.Mutex
	records [][]byte
	hashes  []tlog.Hash
}

func (f *forkedLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = f.hashes[x]
	}
	return out, nil
}

func (f *forkedLog) add(t *testing.T, rec []byte) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	hs, err := tlog.StoredHashes(int64(len(f.records)), rec, f)
	if err != nil {
		t.Fatal(err)
	}
	f.records = append(f.records, rec)
	f.hashes = append(f.hashes, hs...)
}

func b64s(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// serve answers the log API (docs/e2ee.md, section 13) from the fork:
// checkpoints with consistency proofs, and records with inclusion proofs.
// It gives no inclusion proofs by record hash (prove's "records"): the
// guests of TestSplitViewInBrowser hold no credential to ask about.
func (f *forkedLog) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int64(len(f.records))
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api/e2ee/log/prove":
		var req struct{ From, To int64 }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out := map[string]any{"inclusion": []any{}, "consistency": []string{}}
		to := req.To
		if to == 0 || to > n {
			s, _ := e2ee.NewLogSigner(f.key)
			h, _ := tlog.TreeHash(n, f)
			cp, _ := e2ee.SignCheckpoint(s, n, h)
			out["checkpoint"], to = string(cp), n
		}
		out["size"] = to
		if req.From > 0 && req.From < to {
			p, _ := tlog.ProveTree(to, req.From, f)
			out["consistency"] = b64s(p)
		}
		json.NewEncoder(w).Encode(out)
	case "/api/e2ee/log/entries":
		start, _ := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		type entry struct {
			Record string   `json:"record"`
			Proof  []string `json:"proof"`
		}
		es := []entry{}
		for i := start; i < size && i < n && len(es) < 256; i++ {
			p, _ := tlog.ProveRecord(size, i, f)
			es = append(es, entry{base64.StdEncoding.EncodeToString(f.records[i]), b64s(p)})
		}
		json.NewEncoder(w).Encode(map[string]any{"entries": es})
	default:
		http.NotFound(w, r)
	}
}

// TestSplitViewInBrowser: Ann's browser reaches the server directly, Vic's
// through a front that answers the identity log API from a fork the server
// keeps for him (signed with its log key): the server, as Vic sees it.
// While the fork holds the same records as the log, they meet and read the
// same meeting code. Then the server logs two credentials and shows Vic only
// the second. In their next meeting each page finds the other's checkpoint
// inconsistent with its own: both say that the server showed different
// versions of the identity log, in the meeting and in the page's banner,
// and neither shows a code, so they cannot read one aloud and agree.
func TestSplitViewInBrowser(t *testing.T) {
	srv := startServer(t, "before", "after")
	ctx := context.Background()
	data, err := os.ReadFile(filepath.Join(srv.DataDir(), "e2ee", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("the log key is not a plain PEM key in tests")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fork := &forkedLog{key: k.(*ecdsa.PrivateKey)}
	recs, err := srv.Store().LogRecords(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		fork.add(t, r)
	}
	target, _ := url.Parse(srv.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/e2ee/log/", fork.serve)
	mux.Handle("/", proxy)
	front := httptest.NewTLSServer(mux)
	t.Cleanup(front.Close)

	b := browser.Start(t)
	ann := join(t, b, srv.URL(), "before", "Ann")
	vic := join(t, b, front.URL, "before", "Vic")
	t.Logf("one log: Ann and Vic read %s", sameCode(t, ann, vic))

	extra, err := srv.Store().CreateUser(ctx, store.User{Username: "extra", DisplayName: "Extra", Role: store.RoleUser, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		d, _ := e2ee.GenerateDeviceKey()
		p, _ := e2ee.MarshalPublicKey(&d.PublicKey)
		c, _, err := srv.Authority().Certify(ctx, extra, p)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			fork.add(t, c) // the fork holds the second, not the first
		}
	}
	// The pages read the log as they open, so both see their side of the fork.
	ann = joinPage(t, ann.Page, srv.URL(), "after", "Ann")
	vic = joinPage(t, vic.Page, front.URL, "after", "Vic")
	const split = `(document.querySelector('#e2ee-warning')?.textContent || '').includes('different versions of the identity log') &&
		(document.querySelector('[data-trust-alert]')?.textContent || '').includes('contradicts another one')`
	for _, p := range []*participant{ann, vic} {
		p.WaitJS(t, p.name+": the split view is shown", split, 20*time.Second)
	}
	for _, p := range []*participant{ann, vic} {
		if s := p.e2ee(); s.Code != "" || s.State != "warning" {
			t.Errorf("%s shows code %q in state %q under a split log", p.name, s.Code, s.State)
		}
	}
}
