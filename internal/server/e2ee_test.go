package server_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"conclave/internal/auth"
	"conclave/internal/e2ee"
	"conclave/internal/ra"
	"conclave/internal/signal"
	"conclave/internal/store"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

// TestCredential: a signed-in user gets a credential only for a device key
// it proves it holds (a signature over a single-use challenge of its own
// session); the credential binds the account and is in the E2EE log, with
// an inclusion proof against the signed checkpoint the server publishes.
func TestCredential(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	hash, _ := auth.HashPassword("Correct-Horse-42")
	if _, err := srv.Store().CreateUser(context.Background(), store.User{Username: "ann", DisplayName: "Ann",
		PasswordHash: hash, Role: store.RoleUser, Enabled: true, PasswordChangedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c := newAPIClient(t, srv)
	st, org, _ := c.do("GET", "/api/e2ee/org", nil, false)
	orgKey, err := base64.StdEncoding.DecodeString(org["publicKey"].(string))
	if st != 200 || err != nil || len(orgKey) != 65 {
		t.Fatalf("org: %d %v", st, org)
	}
	orgID := org["orgId"].(string)
	verifier, err := e2ee.LogVerifier(org["logKey"].(string))
	if err != nil {
		t.Fatalf("log key %q: %v", org["logKey"], err)
	}
	device, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&device.PublicKey)
	b64 := base64.StdEncoding.EncodeToString
	if st, _, _ := c.do("POST", "/api/e2ee/challenge", map[string]string{}, false); st != http.StatusUnauthorized {
		t.Fatalf("challenge without session: %d", st)
	}
	st, body, _ := c.do("POST", "/api/login", map[string]string{"username": "ann", "password": "Correct-Horse-42"}, false)
	if st != 200 {
		t.Fatalf("login: %d %v", st, body)
	}
	c.csrf = body["csrf"].(string)
	challenge := func() []byte {
		t.Helper()
		st, body, _ := c.do("POST", "/api/e2ee/challenge", map[string]string{}, true)
		ch, err := base64.StdEncoding.DecodeString(fmt.Sprint(body["challenge"]))
		if st != 200 || err != nil || len(ch) != 32 {
			t.Fatalf("challenge: %d %v", st, body)
		}
		return ch
	}
	request := func(key []byte, ch []byte, sig []byte) (int, map[string]any) {
		st, body, _ := c.do("POST", "/api/e2ee/credential", map[string]string{"devicePublicKey": b64(key), "challenge": b64(ch), "signature": b64(sig)}, true)
		return st, body
	}
	// No proof, a proof by another key, a proof for another account, a
	// challenge the server never gave: all refused.
	if st, body, _ := c.do("POST", "/api/e2ee/credential", map[string]string{"devicePublicKey": b64(pub)}, true); st != http.StatusBadRequest || errCode(body) != "proof-required" {
		t.Fatalf("credential without proof: %d %v", st, body)
	}
	other, _ := e2ee.GenerateDeviceKey()
	ch := challenge()
	sig, _ := e2ee.ProvePossession(other, orgID, "ann", ch)
	if st, body := request(pub, ch, sig); st != http.StatusForbidden || errCode(body) != "bad-proof" {
		t.Fatalf("proof by another key: %d %v", st, body)
	}
	ch = challenge()
	sig, _ = e2ee.ProvePossession(device, orgID, "bob", ch)
	if st, body := request(pub, ch, sig); st != http.StatusForbidden {
		t.Fatalf("proof for another account: %d %v", st, body)
	}
	made := make([]byte, 32)
	sig, _ = e2ee.ProvePossession(device, orgID, "ann", made)
	if st, body := request(pub, made, sig); st != http.StatusForbidden {
		t.Fatalf("proof over a made-up challenge: %d %v", st, body)
	}
	// The real thing, then the same challenge again.
	ch = challenge()
	sig, _ = e2ee.ProvePossession(device, orgID, "ann", ch)
	st, body = request(pub, ch, sig)
	if st != 200 {
		t.Fatalf("credential: %d %v", st, body)
	}
	if st, body := request(pub, ch, sig); st != http.StatusForbidden {
		t.Fatalf("a challenge used twice: %d %v", st, body)
	}
	raw, _ := base64.StdEncoding.DecodeString(body["credential"].(string))
	ca, _ := e2ee.ParsePublicKey(orgKey)
	cred, err := e2ee.VerifyCredential(ca, raw, time.Now())
	if err != nil {
		t.Fatalf("credential does not verify against the published org key: %v", err)
	}
	if !cred.DevicePublicKey.Equal(&device.PublicKey) || cred.DisplayName != "Ann" || cred.Account != "ann" || cred.UserID == "" {
		t.Errorf("credential binds %+v, want Ann's device key and account", cred.CredentialFields)
	}
	// It is in the log.
	rh := e2ee.RecordHash(raw)
	st, proof, _ := c.do("POST", "/api/e2ee/log/prove", map[string]any{"from": 0, "to": 0, "records": []string{b64(rh[:])}}, false)
	if st != 200 {
		t.Fatalf("prove: %d %v", st, proof)
	}
	cp, err := e2ee.OpenCheckpoint([]byte(proof["checkpoint"].(string)), verifier)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	inc := proof["inclusion"].([]any)[0].(map[string]any)
	var hs []tlog.Hash
	for _, x := range inc["proof"].([]any) {
		b, _ := base64.StdEncoding.DecodeString(x.(string))
		var h tlog.Hash
		copy(h[:], b)
		hs = append(hs, h)
	}
	if err := e2ee.VerifyInclusion(cp, int64(inc["index"].(float64)), raw, hs); err != nil {
		t.Errorf("the credential is not in the log: %v", err)
	}
	bad := map[string]string{"devicePublicKey": b64([]byte("not a key")), "challenge": b64(challenge()), "signature": b64(make([]byte, 64))}
	if st, body, _ := c.do("POST", "/api/e2ee/credential", bad, true); st != http.StatusForbidden && st != http.StatusBadRequest {
		t.Fatalf("bad key: %d %v", st, body)
	}
}

// TestRevokeDevice: an administrator revokes a device through the API; the
// revocation is in the log, the server sends the device's participants
// away at once, refuses its announcements, and never certifies that key
// for the account again.
func TestRevokeDevice(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{}, "r")
	ctx := context.Background()
	ann, err := srv.Store().CreateUser(ctx, store.User{Username: "ann", DisplayName: "Ann", Role: store.RoleUser, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	device, _ := e2ee.GenerateDeviceKey()
	pub, _ := e2ee.MarshalPublicKey(&device.PublicKey)
	cred, _, err := srv.Authority().Certify(ctx, ann, pub)
	if err != nil {
		t.Fatal(err)
	}
	w := dial(t, srv)
	welcome := w.join("r", "Ann")
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	payload, err := e2ee.SignAnnouncement(device, e2ee.Announcement{MeetingID: welcome.Meeting, ParticipantID: welcome.Self.ID,
		UserID: ra.UserID(ann), DisplayName: "Ann", ECDHPublicKey: eph.PublicKey(), Credential: cred, SenderIndex: 1, Timestamp: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	w.sendRaw(fmt.Sprintf(`{"v":1,"type":"announce","payload":%q}`, base64.StdEncoding.EncodeToString(payload)))
	bob := dial(t, srv)
	bob.join("r", "Bob")
	if m := bob.next(signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeNotice); m.Type != signal.TypeAnnounce {
		t.Fatalf("Bob got %s, want Ann's announcement", m.Type)
	}

	addUser(t, srv, "root", store.RoleAdmin, time.Now(), false)
	admin := signIn(t, srv, "root")
	fp, _ := e2ee.Fingerprint(&device.PublicKey)
	st, body, _ := admin.do("GET", "/api/users/ann/devices", nil, false)
	if st != 200 || !strings.Contains(fmt.Sprint(body), fp) {
		t.Fatalf("devices: %d %v", st, body)
	}
	before := srv.Authority().Size()
	if st, body, _ := admin.do("POST", "/api/users/ann/devices/revoke", map[string]string{"fingerprint": strings.ToLower(fp), "reason": "lost laptop"}, true); st != 200 {
		t.Fatalf("revoke: %d %v", st, body)
	}
	if srv.Authority().Size() != before+1 {
		t.Errorf("the log did not grow by the revocation")
	}
	m := w.next(signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeNotice, signal.TypeAnnounce)
	if m.Type != signal.TypeBye || m.Reason != "revoked" {
		t.Fatalf("the revoked device got %s %q, want bye revoked", m.Type, m.Reason)
	}
	if _, _, err := srv.Authority().Certify(ctx, ann, pub); err == nil {
		t.Error("a revoked device key was certified again")
	}
	// Coming back with the revoked key: sent away on its announcement.
	w2 := dial(t, srv)
	welcome = w2.join("r", "Ann again")
	payload, _ = e2ee.SignAnnouncement(device, e2ee.Announcement{MeetingID: welcome.Meeting, ParticipantID: welcome.Self.ID,
		DisplayName: "Ann", ECDHPublicKey: eph.PublicKey(), SenderIndex: 1, Timestamp: time.Now()})
	w2.sendRaw(fmt.Sprintf(`{"v":1,"type":"announce","payload":%q}`, base64.StdEncoding.EncodeToString(payload)))
	if m := w2.next(signal.TypeRoomState, signal.TypeParticipantJoined, signal.TypeParticipantUpdated, signal.TypeNotice, signal.TypeAnnounce); m.Type != signal.TypeBye || m.Reason != "revoked" {
		t.Fatalf("the revoked device announcing again got %s %q", m.Type, m.Reason)
	}
}

func fileRequest(t *testing.T, srv *testserver.Server, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	return fileRequestTo(t, srv.URL(), method, path, token, body)
}

// fileRequestTo is fileRequest to the node at base.
func fileRequestTo(t *testing.T, base, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
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
