package secure

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

// LogAPI is what the log monitor asks the server (docs/e2ee.md, section
// 13). HTTPLog implements it; tests may put a malicious one in its place.
type LogAPI interface {
	// Prove returns the latest checkpoint (to = 0) or none, a consistency
	// proof of the tree of size to (or the latest) with the tree of size
	// from, and the inclusion of each record hash.
	Prove(ctx context.Context, from, to int64, records []tlog.Hash) (LogProof, error)
	// Entries returns records start.. of the tree of size size, each with
	// its inclusion proof in that tree.
	Entries(ctx context.Context, start, size int64) ([]LogEntry, error)
}

// LogProof is the answer of LogAPI.Prove.
type LogProof struct {
	Checkpoint  []byte
	Size        int64
	Consistency tlog.TreeProof
	Inclusion   []LogInclusion
}

// LogInclusion is where a record is, -1 if not in the tree.
type LogInclusion struct {
	Index int64
	Proof tlog.RecordProof
}

// LogEntry is a record and its inclusion proof.
type LogEntry struct {
	Record []byte
	Proof  tlog.RecordProof
}

// HTTPLog is the LogAPI of a Conclave server at Base.
type HTTPLog struct {
	Client *http.Client
	Base   string
}

func decodeHashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return nil, errors.New("the log sent a malformed hash")
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// Prove implements LogAPI.
func (h HTTPLog) Prove(ctx context.Context, from, to int64, records []tlog.Hash) (LogProof, error) {
	req := struct {
		From    int64    `json:"from"`
		To      int64    `json:"to"`
		Records []string `json:"records"`
	}{From: from, To: to, Records: []string{}}
	for _, r := range records {
		req.Records = append(req.Records, base64.StdEncoding.EncodeToString(r[:]))
	}
	var out struct {
		Checkpoint  string
		Size        int64
		Consistency []string
		Inclusion   []struct {
			Index int64
			Proof []string
		}
	}
	if _, err := call(ctx, h.Client, "POST", h.Base+"/api/e2ee/log/prove", "", req, &out); err != nil {
		return LogProof{}, fmt.Errorf("ask the log for a proof: %w", err)
	}
	p := LogProof{Checkpoint: []byte(out.Checkpoint), Size: out.Size}
	var err error
	if p.Consistency, err = decodeHashes(out.Consistency); err != nil {
		return LogProof{}, err
	}
	for _, in := range out.Inclusion {
		hs, err := decodeHashes(in.Proof)
		if err != nil {
			return LogProof{}, err
		}
		p.Inclusion = append(p.Inclusion, LogInclusion{Index: in.Index, Proof: hs})
	}
	return p, nil
}

// Entries implements LogAPI.
func (h HTTPLog) Entries(ctx context.Context, start, size int64) ([]LogEntry, error) {
	var out struct {
		Entries []struct {
			Record string
			Proof  []string
		}
	}
	q := url.Values{"start": {strconv.FormatInt(start, 10)}, "size": {strconv.FormatInt(size, 10)}}
	if _, err := call(ctx, h.Client, "GET", h.Base+"/api/e2ee/log/entries?"+q.Encode(), "", nil, &out); err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	var es []LogEntry
	for _, e := range out.Entries {
		rec, err := base64.StdEncoding.DecodeString(e.Record)
		if err != nil {
			return nil, errors.New("the log sent a malformed record")
		}
		hs, err := decodeHashes(e.Proof)
		if err != nil {
			return nil, err
		}
		es = append(es, LogEntry{Record: rec, Proof: hs})
	}
	return es, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
