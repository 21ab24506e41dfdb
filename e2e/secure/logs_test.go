package secure

import (
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/server"
	"conclave/internal/testutil/wait"
)

// TestNoKeysInLogs: a meeting with joins, media, a leave and its rotation,
// with the server and every client logging at debug level, leaves no key
// in any log: no sender key (any version, own or received), no SFrame key
// derived from one, no ephemeral ECDH key, no pairwise key, no device key,
// in hex or base64.
func TestNoKeysInLogs(t *testing.T) {
	var serverLog, clientLog syncBuffer
	srv := startServer(t, server.Options{}, &serverLog, "board")
	video := func() client.FrameSource { return &repeatSource{frame: tinyKeyFrame(), codec: client.CodecVP8} }
	var ms []*member
	var devices []identity
	for _, name := range []string{"Alice", "Bob", "Carol"} {
		id := srv.issue(t, strings.ToLower(name))
		devices = append(devices, id)
		orgKey, org := srv.org(t)
		ms = append(ms, join(t, srv, "board", name, joinOpts{video: video(), log: &clientLog, id: id, orgKey: orgKey, orgName: org}))
	}
	waitVerified(t, ms...)
	for _, at := range ms[:2] {
		for _, from := range ms {
			if at != from {
				waitDecrypted(t, at, from, 5)
			}
		}
	}
	if err := ms[2].Leave(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the rotation", 10*time.Second, func() bool { return decryptedGeneration(ms[0], ms[1].Self().ID, 1) })
	meeting := ms[0].sec.MeetingID()
	for _, m := range ms[:2] {
		m.Leave()
	}

	// Every secret the test can reach.
	var secrets [][]byte
	var ephs []*ecdhKeyOf
	for _, m := range ms {
		for _, e := range m.keyEvents(secure.OwnKey) {
			secrets = append(secrets, senderSecrets(t, e.Key)...)
		}
		for _, e := range m.keyEvents(secure.PeerKey) {
			secrets = append(secrets, senderSecrets(t, e.Key)...)
		}
		for _, e := range m.keyEvents(secure.Ephemeral) {
			secrets = append(secrets, e.ECDH.Bytes())
			ephs = append(ephs, &ecdhKeyOf{m, e})
		}
	}
	for i, a := range ephs {
		for _, b := range ephs[i+1:] {
			send, recv, err := e2ee.PairwiseKeys(meeting, a.e.ECDH, b.e.ECDH.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, send[:], recv[:])
		}
	}
	for _, d := range devices {
		b, err := d.device.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, b)
	}
	logs := map[string]string{"server": serverLog.String(), "clients": clientLog.String()}
	for name, text := range logs {
		if len(text) < 10000 {
			t.Fatalf("the %s log has only %d bytes: is debug logging on?", name, len(text))
		}
		for _, s := range secrets {
			for _, enc := range encodings(s) {
				if strings.Contains(text, enc) {
					t.Fatalf("the %s log holds a key (%q)", name, enc)
				}
			}
		}
	}
	t.Logf("%d secrets, %d encodings each, absent from %d bytes of server log and %d bytes of client logs",
		len(secrets), len(encodings(secrets[0])), len(logs["server"]), len(logs["clients"]))
}

type ecdhKeyOf struct {
	m *member
	e secure.KeyEvent
}

// senderSecrets returns a sender key and the SFrame key and salt derived
// from it.
func senderSecrets(t *testing.T, k e2ee.SenderKey) [][]byte {
	t.Helper()
	sf, err := e2ee.DeriveSFrameKey(k.Key[:], k.KID())
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{k.Key[:], sf.Key[:], sf.Salt[:]}
}

// encodings are the forms a secret could take in a log: hex (both cases),
// base64 (standard, URL, with and without padding), and Go's %v of a byte
// slice (decimal numbers).
func encodings(b []byte) []string {
	out := []string{hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b))}
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out = append(out, e.EncodeToString(b))
	}
	dec := make([]string, 12)
	for i, c := range b[:12] {
		dec[i] = strconv.Itoa(int(c))
	}
	return append(out, strings.Join(dec, " "))
}
