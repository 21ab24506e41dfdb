package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/e2ee"
	"conclave/internal/store"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

// TestCredential: a signed-in user gets a credential that binds its device
// key and verifies against the organisation key the server publishes;
// without a session or CSRF token there is none.
func TestCredential(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	hash, _ := auth.HashPassword("Correct-Horse-42")
	u, err := srv.Store().CreateUser(context.Background(), store.User{Username: "ann", DisplayName: "Ann",
		PasswordHash: hash, Role: store.RoleUser, Enabled: true, PasswordChangedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	c := newAPIClient(t, srv)
	st, org, _ := c.do("GET", "/api/e2ee/org", nil, false)
	orgKey, err := base64.StdEncoding.DecodeString(org["publicKey"].(string))
	if st != 200 || err != nil || len(orgKey) != 65 {
		t.Fatalf("org: %d %v", st, org)
	}
	device, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&device.PublicKey)
	req := map[string]string{"devicePublicKey": base64.StdEncoding.EncodeToString(pub)}
	if st, _, _ := c.do("POST", "/api/e2ee/credential", req, false); st != http.StatusUnauthorized {
		t.Fatalf("credential without session: %d", st)
	}
	st, body, _ := c.do("POST", "/api/login", map[string]string{"username": "ann", "password": "Correct-Horse-42"}, false)
	if st != 200 {
		t.Fatalf("login: %d %v", st, body)
	}
	c.csrf = body["csrf"].(string)
	if st, _, _ := c.do("POST", "/api/e2ee/credential", req, false); st != http.StatusForbidden {
		t.Fatalf("credential without CSRF token: %d", st)
	}
	st, body, _ = c.do("POST", "/api/e2ee/credential", req, true)
	if st != 200 {
		t.Fatalf("credential: %d %v", st, body)
	}
	raw, _ := base64.StdEncoding.DecodeString(body["credential"].(string))
	ca, _ := e2ee.ParsePublicKey(orgKey)
	cred, err := e2ee.VerifyCredential(ca, raw, time.Now())
	if err != nil {
		t.Fatalf("credential does not verify against the published org key: %v", err)
	}
	if !cred.DevicePublicKey.Equal(&device.PublicKey) || cred.DisplayName != "Ann" || cred.UserID == "" {
		t.Errorf("credential binds %+v, want Ann's device key", cred.CredentialFields)
	}
	_ = u
	bad := map[string]string{"devicePublicKey": base64.StdEncoding.EncodeToString([]byte("not a key"))}
	if st, body, _ := c.do("POST", "/api/e2ee/credential", bad, true); st != http.StatusBadRequest || errCode(body) != "invalid-key" {
		t.Fatalf("bad key: %d %v", st, body)
	}
}

func fileRequest(t *testing.T, srv *testserver.Server, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL()+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("X-Conclave-Upload", token)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// TestFiles: members of a meeting exchange opaque blobs; nobody outside it
// can fetch them; they vanish when the meeting ends.
func TestFiles(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{}, "a", "b")
	alice, bob, eve := dial(t, srv), dial(t, srv), dial(t, srv)
	aw := alice.join("a", "Alice")
	bw := bob.join("a", "Bob")
	ew := eve.join("b", "Eve")
	if aw.Meeting == "" || aw.Meeting != bw.Meeting || aw.Meeting == ew.Meeting || aw.UploadToken == "" {
		t.Fatalf("meeting ids: a=%q/%q b=%q, upload token %q", aw.Meeting, bw.Meeting, ew.Meeting, aw.UploadToken)
	}
	blob := bytes.Repeat([]byte{0x5A}, 300_000)
	if st, _ := fileRequest(t, srv, "POST", "/api/files", "", blob); st != http.StatusUnauthorized {
		t.Fatalf("upload without token: %d", st)
	}
	st, data := fileRequest(t, srv, "POST", "/api/files", aw.UploadToken, blob)
	var up struct{ ID string }
	if st != http.StatusCreated || json.Unmarshal(data, &up) != nil || up.ID == "" {
		t.Fatalf("upload: %d %s", st, data)
	}
	if st, got := fileRequest(t, srv, "GET", "/api/files/"+up.ID, bw.UploadToken, nil); st != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("Bob's download: %d, %d bytes", st, len(got))
	}
	if st, _ := fileRequest(t, srv, "GET", "/api/files/"+up.ID, ew.UploadToken, nil); st != http.StatusNotFound {
		t.Fatalf("Eve (other room) downloaded: %d", st)
	}
	huge := make([]byte, 101<<20)
	if st, data := fileRequest(t, srv, "POST", "/api/files", aw.UploadToken, huge); st != http.StatusRequestEntityTooLarge || !strings.Contains(string(data), "too-large") {
		t.Fatalf("oversized upload: %d %s", st, data)
	}
	alice.sendRaw(`{"v":1,"type":"leave"}`)
	bob.sendRaw(`{"v":1,"type":"leave"}`)
	// The meeting ended: its blobs are gone, for everyone.
	wait.Until(t, 5*time.Second, func() bool { return srv.FileBytes() == 0 }, func() string {
		return fmt.Sprintf("the blobs to go after the meeting ended (%d bytes stored)", srv.FileBytes())
	})
}
