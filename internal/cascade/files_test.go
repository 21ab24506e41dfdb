package cascade

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestFileFrames: a request and an answer's head read back as written;
// anything else on a file connection is a clear error.
func TestFileFrames(t *testing.T) {
	id := strings.Repeat("0f", 16)
	b, err := appendFileFrame(nil, frameFileRequest, fileRequest{Meeting: "m1", ID: id})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := readFileFrame(bytes.NewReader(b), frameFileRequest)
	if err != nil {
		t.Fatal(err)
	}
	if q, err := parseFileRequest(payload); err != nil || q.Meeting != "m1" || q.ID != id {
		t.Fatalf("request: %+v %v", q, err)
	}
	b, _ = appendFileFrame(nil, frameFileHead, fileHead{Status: fileOK, Size: 1 << 20})
	payload, err = readFileFrame(bytes.NewReader(b), frameFileHead)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := parseFileHead(payload); err != nil || h.Status != fileOK || h.Size != 1<<20 {
		t.Fatalf("head: %+v %v", h, err)
	}

	for _, c := range []struct {
		name string
		data []byte
		typ  byte
	}{
		{"a link's control frame", appendHeader(nil, frameControl, 2), frameFileRequest},
		{"an answer where a request is due", b, frameFileRequest},
		{"a frame over the limit", appendHeader(nil, frameFileRequest, maxFileFrame+1), frameFileRequest},
	} {
		if _, err := readFileFrame(bytes.NewReader(append(c.data, '{', '}')), c.typ); !errors.Is(err, errFrame) {
			t.Errorf("%s: %v, want a malformed frame", c.name, err)
		}
	}
	if _, err := readFileFrame(bytes.NewReader(appendHeader(nil, frameFileRequest, 10)), frameFileRequest); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a frame cut short: %v", err)
	}
	for _, bad := range []string{
		`{"meeting":"m1","id":"../../etc/passwd"}`,
		`{"meeting":"m1","id":"` + strings.ToUpper(id[:31]) + `"}`,
		`{"meeting":"","id":"` + id + `"}`,
		`{"meeting":"a/b","id":"` + id + `"}`,
		`{"meeting":"` + strings.Repeat("m", 129) + `","id":"` + id + `"}`,
		`[1]`,
		``,
	} {
		if _, err := parseFileRequest([]byte(bad)); !errors.Is(err, errFrame) {
			t.Errorf("request %s: %v, want a malformed frame", bad, err)
		}
	}
	b, _ = appendFileFrame(nil, frameFileBack, fileBack{Token: id})
	payload, err = readFileFrame(bytes.NewReader(b), frameFileBack)
	if tok, perr := parseFileBack(payload); err != nil || perr != nil || tok != id {
		t.Fatalf("connection back: %q %v %v", tok, err, perr)
	}
	for _, bad := range []string{`{"token":"` + strings.ToUpper(id) + `"}`, `{"token":"` + id[:30] + `"}`, `{}`, `"x"`} {
		if _, err := parseFileBack([]byte(bad)); !errors.Is(err, errFrame) {
			t.Errorf("connection back %s: %v, want a malformed frame", bad, err)
		}
	}
	for _, bad := range []string{`{"status":"ok","size":-1}`, `{"status":"maybe"}`, `{}`, `nul`} {
		if _, err := parseFileHead([]byte(bad)); !errors.Is(err, errFrame) {
			t.Errorf("head %s: %v, want a malformed frame", bad, err)
		}
	}
}

// FuzzFileFrames: whatever a node sends on a file connection, reading
// and parsing it never panics, allocates at most one frame's limit, and
// what parses is a request the store can look up safely.
func FuzzFileFrames(f *testing.F) {
	b, _ := appendFileFrame(nil, frameFileRequest, fileRequest{Meeting: "m1", ID: strings.Repeat("ab", 16)})
	f.Add(b)
	b, _ = appendFileFrame(nil, frameFileHead, fileHead{Status: fileOK, Size: 42})
	f.Add(b)
	f.Add([]byte{3, 0, 0, 2, '{', '}'})
	f.Add([]byte{4, 0xff, 0xff, 0xff})
	b, _ = appendFileFrame(nil, frameFileBack, fileBack{Token: strings.Repeat("cd", 16)})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []byte{frameFileRequest, frameFileHead, frameFileBack} {
			payload, err := readFileFrame(bytes.NewReader(data), typ)
			if err != nil {
				continue
			}
			if len(payload) > maxFileFrame {
				t.Fatalf("payload of %d bytes", len(payload))
			}
			if q, err := parseFileRequest(payload); err == nil && (len(q.ID) != 32 || strings.ContainsAny(q.ID+q.Meeting, "/")) {
				t.Fatalf("accepted request %+v", q)
			}
			if h, err := parseFileHead(payload); err == nil && h.Size < 0 {
				t.Fatalf("accepted head %+v", h)
			}
			if tok, err := parseFileBack(payload); err == nil && !validToken(tok) {
				t.Fatalf("accepted token %q", tok)
			}
		}
	})
}
