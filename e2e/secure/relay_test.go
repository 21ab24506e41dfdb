package secure

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/e2ee"
	"conclave/internal/server"
	"conclave/internal/signal"
	"conclave/internal/testutil/wait"
)

// relayRoom is Alice and Bob joined directly, and Vic through a malicious
// relay, all certified by the organisation.
type relayRoom struct {
	alice, bob, vic *member
	px              *proxy
}

func newRelayRoom(t *testing.T, srv *testServer, room string, rewrite func(m *signal.Message) []*signal.Message, vicOpts joinOpts) relayRoom {
	t.Helper()
	orgKey, name := srv.org(t)
	video := func() client.FrameSource { return &repeatSource{frame: tinyKeyFrame(), codec: client.CodecVP8} }
	r := relayRoom{px: newProxy(t, srv)}
	r.px.setRewrite(rewrite)
	r.alice = join(t, srv, room, "Alice", joinOpts{video: video(), id: srv.issue(t, room+"-alice"), orgKey: orgKey, orgName: name})
	r.bob = join(t, srv, room, "Bob", joinOpts{video: video(), id: srv.issue(t, room+"-bob"), orgKey: orgKey, orgName: name})
	vicOpts.url, vicOpts.roots = r.px.URL(), r.px.roots
	vicOpts.video = video()
	vicOpts.id, vicOpts.orgKey, vicOpts.orgName = srv.issue(t, room+"-vic"), orgKey, name
	r.vic = join(t, srv, room, "Vic", vicOpts)
	return r
}

func pass(m *signal.Message) []*signal.Message { return []*signal.Message{m} }

func mustECDHKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func decodePayload(t *testing.T, p string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRelaySubstitutesKeys: a relay that replaces Alice's announced ECDH
// key on its way to Vic is caught. Keeping Alice's signature, the
// announcement fails verification; re-signing it with another device key
// (a man in the middle), Vic lists an "Alice" that is not certified, with
// another fingerprint and a different meeting code than Alice and Bob,
// and never verified, since Alice's real key messages do not open.
func TestRelaySubstitutesKeys(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "swap", "mitm")

	t.Run("keep signature", func(t *testing.T) {
		fake := mustECDHKey(t)
		r := newRelayRoom(t, srv, "swap", func(m *signal.Message) []*signal.Message {
			if m.Type == signal.TypeAnnounce {
				raw := decodePayload(t, m.Payload)
				a, err := e2ee.ParseAnnouncement(raw)
				if err != nil || a.DisplayName != "Alice" {
					return pass(m)
				}
				m.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(raw, a.ECDHPublicKey.Bytes(), fake.PublicKey().Bytes(), 1))
			}
			return pass(m)
		}, joinOpts{})
		aliceID := r.alice.Self().ID
		// Alice joined before Vic: her announcement reaches Vic in the
		// batch after Vic's welcome, through the relay.
		wait.For(t, "Vic to refuse Alice's announcement", 10*time.Second, func() bool { return r.vic.warned("signature") })
		// Vic's list lacks Alice: its commitment names another view, so
		// no code is agreed and Alice and Bob are told.
		wait.For(t, "Alice and Bob to see that Vic's list differs", 20*time.Second, func() bool {
			return len(r.alice.sec.Participants()) == 3 && len(r.bob.sec.Participants()) == 3 &&
				r.alice.warned("DIFFERENT LIST") && r.bob.warned("DIFFERENT LIST")
		})
		if _, listed := r.vic.sec.Participant(aliceID); listed {
			t.Error("Vic lists Alice after a failed signature")
		}
		if !codesApart(r.vic, r.alice) || !codesApart(r.vic, r.bob) {
			t.Error("Vic's meeting code matches Alice's")
		}
		time.Sleep(time.Second)
		if st := r.vic.e2eeStats(aliceID); st.Decrypted != 0 || st.Unverified == 0 {
			t.Errorf("Vic's counts of Alice: %+v, want nothing decrypted, frames dropped", st)
		}
	})

	t.Run("re-signed", func(t *testing.T) {
		mallory, _ := e2ee.GenerateDeviceKey()
		fake := mustECDHKey(t)
		r := newRelayRoom(t, srv, "mitm", func(m *signal.Message) []*signal.Message {
			if m.Type == signal.TypeAnnounce {
				a, err := e2ee.ParseAnnouncement(decodePayload(t, m.Payload))
				if err != nil || a.DisplayName != "Alice" {
					return pass(m)
				}
				forged := a.Announcement
				forged.ECDHPublicKey = fake.PublicKey()
				forged.Credential, forged.UserID = nil, "" // Alice's credential names her device key
				p, err := e2ee.SignAnnouncement(mallory, forged)
				if err != nil {
					t.Errorf("relay: %v", err)
					return pass(m)
				}
				m.Payload = base64.StdEncoding.EncodeToString(p)
			}
			return pass(m)
		}, joinOpts{})
		aliceID := r.alice.Self().ID
		vicID := r.vic.Self().ID
		wait.For(t, "Vic to list the forged Alice, Alice and Bob to see that Vic's list differs", 20*time.Second, func() bool {
			_, ok := r.vic.sec.Participant(aliceID)
			return ok && len(r.alice.sec.Participants()) == 3 && len(r.bob.sec.Participants()) == 3 &&
				r.alice.warned("DIFFERENT LIST") && r.bob.warned("DIFFERENT LIST")
		})
		real, _ := r.bob.sec.Participant(aliceID)
		forged, _ := r.vic.sec.Participant(aliceID)
		if !real.Certified || forged.Certified || forged.Fingerprint == real.Fingerprint {
			t.Errorf("Bob sees Alice as %+v, Vic as %+v: want certified vs not, different fingerprints", real, forged)
		}
		if !codesApart(r.vic, r.alice) || !codesApart(r.vic, r.bob) {
			t.Errorf("codes: Vic %q, Alice %q, Bob %q: want Vic apart", r.vic.sec.MeetingCode(), r.alice.sec.MeetingCode(), r.bob.sec.MeetingCode())
		}
		wait.For(t, "Vic to find that Alice's key messages do not open", 10*time.Second, func() bool {
			return r.vic.warned("does not open")
		})
		// The man in the middle does get Vic's key (that is what the code
		// comparison catches), and Alice cannot open what Vic sealed for
		// the forged key.
		wait.For(t, "Vic's key message to the forged Alice", 10*time.Second, func() bool { return len(r.px.keysSentTo(aliceID)) > 0 })
		ch, err := e2ee.NewChannel(r.px.meetingID(), aliceID, fake, vicID, ephemeral(t, r.vic).PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.Open(r.px.keysSentTo(aliceID)[0]); err != nil {
			t.Errorf("the relay cannot open Vic's key message sealed to its key: %v", err)
		}
		time.Sleep(time.Second)
		if r.vic.verified(aliceID) || r.alice.verified(vicID) {
			t.Error("Vic and Alice verified each other through a man in the middle")
		}
		if st := r.vic.e2eeStats(aliceID); st.Decrypted != 0 {
			t.Errorf("Vic decrypted Alice through a substituted key: %+v", st)
		}
	})
}

// ephemeral returns m's ECDH key for the current meeting.
func ephemeral(t *testing.T, m *member) *ecdh.PrivateKey {
	t.Helper()
	es := m.keyEvents(secure.Ephemeral)
	if len(es) == 0 {
		t.Fatalf("%s has no ECDH key", m.name)
	}
	return es[len(es)-1].ECDH
}

// TestRelayInjectsParticipants: a relay injects participants into Vic's
// view. A ghost with a valid signature (an uncertified device) is listed
// as not certified and changes Vic's meeting code, not Alice's and Bob's,
// who never see it; Vic gives it a ratcheted key, which does not open
// anything Vic sent before (the documented limit: people must look at the
// list and compare codes), and a Vic that requires certification gives it
// nothing. Ghosts with a forged credential, for another meeting, or relayed
// under another participant's id are refused with a warning and get
// nothing.
func TestRelayInjectsParticipants(t *testing.T) {
	tp := &tap{}
	srv := startServer(t, server.Options{Tap: tp}, nil, "ghost")
	r := newRelayRoom(t, srv, "ghost", pass, joinOpts{})
	strictPx := newProxy(t, srv)
	orgKey, name := srv.org(t)
	val := join(t, srv, "ghost", "Val", joinOpts{url: strictPx.URL(), roots: strictPx.roots, strict: true,
		id: srv.issue(t, "val"), orgKey: orgKey, orgName: name})
	waitVerified(t, r.alice, r.bob, r.vic, val)
	vicID := r.vic.Self().ID
	waitDecrypted(t, r.alice, r.vic, 10)
	injected := time.Now()
	meeting := r.px.meetingID()

	ghostDevice, _ := e2ee.GenerateDeviceKey()
	ghostECDH := mustECDHKey(t)
	// announce injects a, signed by device (nil: the ghost's device).
	announce := func(px *proxy, from string, a e2ee.Announcement, device *ecdsa.PrivateKey) {
		t.Helper()
		a.ECDHPublicKey, a.Timestamp = ghostECDH.PublicKey(), time.Now()
		if a.SenderIndex == 0 {
			a.SenderIndex = 4242
		}
		if device == nil {
			device = ghostDevice
		}
		p, err := e2ee.SignAnnouncement(device, a)
		if err != nil {
			t.Fatal(err)
		}
		px.inject(&signal.Message{Type: signal.TypeAnnounce, From: from, Payload: base64.StdEncoding.EncodeToString(p)})
	}
	ghost := e2ee.Announcement{MeetingID: meeting, ParticipantID: "ghost-1", DisplayName: "Alice"}
	announce(r.px, "ghost-1", ghost, nil)
	announce(strictPx, "ghost-1", ghost, nil)

	wait.For(t, "Vic and Val to list the ghost", 10*time.Second, func() bool {
		_, a := r.vic.sec.Participant("ghost-1")
		_, b := val.sec.Participant("ghost-1")
		return a && b
	})
	for _, m := range []*member{r.vic, val} {
		if p, _ := m.sec.Participant("ghost-1"); p.Certified || p.Verified {
			t.Errorf("%s sees the ghost as %+v", m.name, p)
		}
		if !codesApart(m, r.alice) || !codesApart(m, r.bob) {
			t.Errorf("%s's meeting code (%q) still matches Alice's with the ghost", m.name, m.sec.MeetingCode())
		}
	}
	wait.For(t, "Alice and Bob to see that Vic's and Val's lists differ", 20*time.Second, func() bool {
		return r.alice.warned("DIFFERENT LIST") && r.bob.warned("DIFFERENT LIST")
	})
	for _, m := range []*member{r.alice, r.bob} {
		if _, ok := m.sec.Participant("ghost-1"); ok {
			t.Errorf("%s lists the ghost", m.name)
		}
	}

	// Vic's key to the ghost: a ratchet step taken for it, useless for
	// anything Vic sent before.
	wait.For(t, "Vic's key message to the ghost", 10*time.Second, func() bool { return len(r.px.keysSentTo("ghost-1")) > 0 })
	ch, err := e2ee.NewChannel(meeting, "ghost-1", ghostECDH, vicID, ephemeral(t, r.vic).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	k, err := ch.Open(r.px.keysSentTo("ghost-1")[0])
	if err != nil {
		t.Fatalf("the ghost cannot open Vic's key message: %v", err)
	}
	var before []wireFrame
	for _, f := range tp.vp8Frames(vicID) {
		if f.at.Before(injected) {
			before = append(before, f)
		}
	}
	if len(before) < 10 {
		t.Fatalf("%d frames of Vic captured before the ghost", len(before))
	}
	undecryptable(t, "the ghost", []e2ee.SenderKey{k}, before)

	// Forged ghosts: refused, warned about, given nothing.
	fakeCA, _ := e2ee.GenerateDeviceKey()
	forgedDevice, _ := e2ee.GenerateDeviceKey()
	cred, err := e2ee.IssueCredential(fakeCA, e2ee.CredentialFields{OrgID: orgName, UserID: "1", Account: "admin", DisplayName: "Admin",
		DevicePublicKey: &forgedDevice.PublicKey, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), Serial: 1})
	if err != nil {
		t.Fatal(err)
	}
	announce(r.px, "ghost-2", e2ee.Announcement{MeetingID: meeting, ParticipantID: "ghost-2", UserID: "1", DisplayName: "Admin", Credential: cred}, forgedDevice)
	announce(r.px, "ghost-3", e2ee.Announcement{MeetingID: "an-earlier-meeting", ParticipantID: "ghost-3", DisplayName: "Ghost"}, nil)
	announce(r.px, "ghost-5", e2ee.Announcement{MeetingID: meeting, ParticipantID: "ghost-4", DisplayName: "Ghost"}, nil)
	wait.For(t, "Vic's warnings", 10*time.Second, func() bool {
		return r.vic.warned("participant ghost-2: announcement credential") && r.vic.warned("participant ghost-3: e2ee: announcement for meeting") &&
			r.vic.warned("relayed as participant ghost-5 but made by ghost-4")
	})
	time.Sleep(500 * time.Millisecond)
	for _, id := range []string{"ghost-2", "ghost-3", "ghost-4", "ghost-5"} {
		if _, ok := r.vic.sec.Participant(id); ok {
			t.Errorf("Vic lists %s", id)
		}
		if n := len(r.px.keysSentTo(id)); n != 0 {
			t.Errorf("Vic sent %d key messages to %s", n, id)
		}
	}
	if n := len(strictPx.keysSentTo("ghost-1")); n != 0 {
		t.Errorf("Val, who requires certification, sent %d key messages to the ghost", n)
	}
	t.Logf("warnings shown to Vic: %q", r.vic.warnings())
}

// TestRelayDropsAndReplaysKeys: a relay drops every key message to Vic.
// Vic decrypts nothing and records nothing (frames without a key are
// dropped, never passed on), and asks for the keys (key requests, which
// the senders answer: the answers are dropped too). When the relay lets
// key messages through again, the next request brings the keys and Vic
// decrypts again. Key messages the relay then replays are refused and
// counted, and change nothing.
func TestRelayDropsAndReplaysKeys(t *testing.T) {
	srv := startServer(t, server.Options{}, nil, "drop")
	var (
		mu        sync.Mutex
		drop      = true
		dropped   int
		delivered []*signal.Message
	)
	r := newRelayRoom(t, srv, "drop", func(m *signal.Message) []*signal.Message {
		if m.Type != signal.TypeKey || string(decodePayload(t, m.Payload)) == keyRequest {
			return pass(m)
		}
		mu.Lock()
		defer mu.Unlock()
		if drop {
			dropped++
			return nil
		}
		c := *m
		delivered = append(delivered, &c)
		return pass(m)
	}, joinOpts{record: true})
	aliceID, bobID := r.alice.Self().ID, r.bob.Self().ID
	wait.For(t, "Vic to ask Alice and Bob for their keys", 15*time.Second, func() bool {
		return r.vic.e2eeStats(aliceID).KeyRequestsSent > 0 && r.vic.e2eeStats(bobID).KeyRequestsSent > 0 &&
			r.alice.e2eeStats(r.vic.Self().ID).KeyRequestsReceived > 0
	})
	for _, id := range []string{aliceID, bobID} {
		st := r.vic.e2eeStats(id)
		if st.Decrypted != 0 || st.NoKey == 0 || r.vic.verified(id) {
			t.Errorf("Vic's counts of %s without keys: %+v", id, st)
		}
		if files, _ := filepath.Glob(filepath.Join(r.vic.dir, "*"+id+"*")); len(files) != 0 {
			t.Errorf("Vic recorded %v without keys", files)
		}
	}
	if r.alice.sec.MeetingCode() != r.vic.sec.MeetingCode() {
		t.Error("dropping key messages changed the meeting code")
	}

	mu.Lock()
	drop = false
	t.Logf("dropped %d key messages (first keys and answers to key requests)", dropped)
	mu.Unlock()
	resumed := time.Now()
	waitDecrypted(t, r.vic, r.alice, 5)
	waitDecrypted(t, r.vic, r.bob, 5)
	t.Logf("Vic decrypts again %v after key messages flow again", time.Since(resumed).Round(10*time.Millisecond))
	if !r.vic.verified(aliceID) || !r.vic.verified(bobID) {
		t.Error("Vic did not verify Alice and Bob after recovering")
	}

	mu.Lock()
	replays := append([]*signal.Message(nil), delivered...)
	mu.Unlock()
	for _, m := range replays {
		r.px.inject(m)
	}
	wait.For(t, "Vic to refuse the replays", 10*time.Second, func() bool {
		return r.vic.e2eeStats(aliceID).Replays+r.vic.e2eeStats(bobID).Replays == uint64(len(replays))
	})
	if !r.vic.warned("replayed key message") {
		t.Error("no warning about replays")
	}
	waitDecrypted(t, r.vic, r.alice, 5)
	t.Logf("%d replayed key messages refused", len(replays))
}

// keyRequest is the key request payload (docs/e2ee.md addition).
const keyRequest = "CKRQ\x01"
