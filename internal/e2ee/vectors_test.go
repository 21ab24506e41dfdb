package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// go test -run TestVectors -update rewrites testdata/vectors.json from the
// fixed inputs below. Signatures (randomised) are kept when they still
// verify; the RFC 9605 section is copied, never generated.
var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

const vectorsPath = "testdata/vectors.json"

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type vectorFile struct {
	Description  string              `json:"description"`
	RFC9605      rfcVectors          `json:"rfc9605"`
	Keys         vecKeys             `json:"keys"`
	Media        []vecMedia          `json:"media"`
	Ratchet      vecRatchet          `json:"ratchet"`
	Credentials  []vecCredential     `json:"credentials"`
	Announcement []vecAnnouncement   `json:"announcements"`
	Possession   vecPossession       `json:"possession"`
	Revocations  []vecRevocation     `json:"revocations"`
	Log          vecLog              `json:"log"`
	Rounds       vecRounds           `json:"rounds"`
	Names        []vecName           `json:"names"`
	Lookalikes   []vecLookalike      `json:"lookalikes"`
	Pairwise     vecPairwise         `json:"pairwise"`
	Chat         []vecChat           `json:"chat"`
	File         vecFile             `json:"file"`
	Fingerprints []vecFingerprint    `json:"fingerprints"`
	Schedule     vecSchedule         `json:"schedule"`
	Extra        map[string]hexBytes `json:"extra,omitempty"`
}

// vecSchedule is the key schedule's timings (docs/e2ee.md, sections 6 and
// 9): the contract of the Go session (internal/client/secure) and the
// browser (web/static/js/e2ee), whose tests compare their constants with
// it. It is copied by -update, never generated. Where the two differ by
// design, each has its own entry.
type vecSchedule struct {
	Description string `json:"description"`
	// A leave's rotation waits this long, so that leaves that come
	// together cost one.
	RotationDebounceMs int `json:"rotationDebounceMs"`
	// A rotated key is used this long after it is sent.
	SwitchDelayMs int `json:"switchDelayMs"`
	// Frames of a newer key generation wait this long for its key.
	KeyWaitMs int `json:"keyWaitMs"`
	// Older keys stay this long once a newer one decrypted.
	RetentionMs int `json:"retentionMs"`
	// Ratchet steps a receiver derives on its own.
	MaxRatchetAhead int `json:"maxRatchetAhead"`
	// A key request is answered at most this often per requester.
	KeyRequestAnswerIntervalMs int `json:"keyRequestAnswerIntervalMs"`
	// A listed participant may go this long without a verified
	// announcement before it shows as not end-to-end.
	AnnounceGraceMs int `json:"announceGraceMs"`
	// A commit to another participant list is reported after this long.
	ViewGraceMs int `json:"viewGraceMs"`
	// A member commits to its view once it has been quiet this long, and
	// at most roundMaxWaitMs after the first change it has not committed
	// to; its commits are bounded by a token bucket (docs/e2ee.md,
	// section 14, rule 1).
	RoundQuietMs        int     `json:"roundQuietMs"`
	RoundMaxWaitMs      int     `json:"roundMaxWaitMs"`
	CommitRatePerSecond float64 `json:"commitRatePerSecond"`
	CommitBurst         int     `json:"commitBurst"`
	// Frames fail for lack of a key this long before a key request, and
	// requests repeat this often: the browser and the native client.
	KeyRequestAfterMs  vecPerClient `json:"keyRequestAfterMs"`
	KeyRequestRepeatMs vecPerClient `json:"keyRequestRepeatMs"`
}

// vecPerClient is a timing that each implementation sets on its own.
type vecPerClient struct {
	Browser int `json:"browser"`
	Native  int `json:"native"`
}

type rfcVectors struct {
	Source string      `json:"source"`
	Header []rfcHeader `json:"header"`
	SFrame []rfcSFrame `json:"sframe"`
}

type rfcHeader struct {
	KID    string   `json:"kid"`
	CTR    string   `json:"ctr"`
	Header hexBytes `json:"header"`
}

type rfcSFrame struct {
	CipherSuite     string   `json:"cipher_suite"`
	KID             string   `json:"kid"`
	CTR             string   `json:"ctr"`
	BaseKey         hexBytes `json:"base_key"`
	SFrameKeyLabel  hexBytes `json:"sframe_key_label"`
	SFrameSaltLabel hexBytes `json:"sframe_salt_label"`
	SFrameSecret    hexBytes `json:"sframe_secret"`
	SFrameKey       hexBytes `json:"sframe_key"`
	SFrameSalt      hexBytes `json:"sframe_salt"`
	Metadata        hexBytes `json:"metadata"`
	Nonce           hexBytes `json:"nonce"`
	AAD             hexBytes `json:"aad"`
	PT              hexBytes `json:"pt"`
	CT              hexBytes `json:"ct"`
}

type vecKeyPair struct {
	Name    string   `json:"name"`
	Private hexBytes `json:"private"` // P-256 scalar d, 32 bytes
	Public  hexBytes `json:"public"`  // uncompressed point
}

type vecKeys struct {
	CA      vecKeyPair   `json:"ca"`
	Devices []vecKeyPair `json:"devices"`
	ECDH    []vecKeyPair `json:"ecdh"`
}

type vecSenderKey struct {
	Index      uint16   `json:"index"`
	Generation uint8    `json:"generation"`
	Step       uint8    `json:"step"`
	Key        hexBytes `json:"key"`
}

type vecMedia struct {
	Name        string       `json:"name"`
	Codec       string       `json:"codec"`
	SenderKey   vecSenderKey `json:"sender_key"`
	KID         uint64       `json:"kid"`
	CTR         uint64       `json:"ctr"`
	SFrameKey   hexBytes     `json:"sframe_key"`
	SFrameSalt  hexBytes     `json:"sframe_salt"`
	ClearPrefix int          `json:"clear_prefix"`
	Frame       hexBytes     `json:"frame"`
	Encrypted   hexBytes     `json:"encrypted"`
}

type vecRatchetStep struct {
	Step    uint8    `json:"step"`
	Key     hexBytes `json:"key"`
	ChatKey hexBytes `json:"chat_key"`
}

type vecRatchet struct {
	Index      uint16           `json:"index"`
	Generation uint8            `json:"generation"`
	Steps      []vecRatchetStep `json:"steps"`
}

type vecCredential struct {
	Name        string   `json:"name"`
	OrgID       string   `json:"org_id"`
	UserID      string   `json:"user_id"`
	Account     string   `json:"account"`
	DisplayName string   `json:"display_name"`
	Device      string   `json:"device"`
	NotBefore   int64    `json:"not_before"`
	NotAfter    int64    `json:"not_after"`
	Serial      uint64   `json:"serial"`
	Body        hexBytes `json:"body"`
	Signature   hexBytes `json:"signature"`
	Credential  hexBytes `json:"credential"`
}

type vecAnnouncement struct {
	Name          string   `json:"name"`
	MeetingID     string   `json:"meeting_id"`
	ParticipantID string   `json:"participant_id"`
	UserID        string   `json:"user_id"`
	DisplayName   string   `json:"display_name"`
	ECDH          string   `json:"ecdh"`
	Device        string   `json:"device"`
	Credential    string   `json:"credential"` // name in credentials, or ""
	SenderIndex   uint16   `json:"sender_index"`
	TimestampMS   int64    `json:"timestamp_ms"`
	Certified     bool     `json:"certified"`
	Body          hexBytes `json:"body"`
	Signature     hexBytes `json:"signature"`
	Announcement  hexBytes `json:"announcement"`
}

type vecKeyMessage struct {
	From      string       `json:"from"`
	To        string       `json:"to"`
	Seq       uint64       `json:"seq"`
	SenderKey vecSenderKey `json:"sender_key"`
	Payload   hexBytes     `json:"payload"`
}

type vecPairwise struct {
	MeetingID    string          `json:"meeting_id"`
	A            string          `json:"a"` // participant id; ECDH key "alice"
	B            string          `json:"b"` // participant id; ECDH key "bob"
	ECDHA        string          `json:"ecdh_a"`
	ECDHB        string          `json:"ecdh_b"`
	SharedSecret hexBytes        `json:"shared_secret"`
	KeyAToB      hexBytes        `json:"key_a_to_b"`
	KeyBToA      hexBytes        `json:"key_b_to_a"`
	Messages     []vecKeyMessage `json:"messages"`
}

type vecFileDesc struct {
	ID       hexBytes `json:"id"`
	Name     string   `json:"name"`
	Size     uint64   `json:"size"`
	MimeType string   `json:"mime_type"`
	Key      hexBytes `json:"key"`
	SHA256   hexBytes `json:"sha256"`
}

type vecChat struct {
	Name          string       `json:"name"`
	MeetingID     string       `json:"meeting_id"`
	ParticipantID string       `json:"participant_id"`
	Device        string       `json:"device"`
	SenderKey     vecSenderKey `json:"sender_key"`
	ChatKey       hexBytes     `json:"chat_key"`
	Seq           uint64       `json:"seq"`
	TimestampMS   int64        `json:"timestamp_ms"`
	Kind          uint8        `json:"kind"`
	Text          string       `json:"text,omitempty"`
	File          *vecFileDesc `json:"file,omitempty"`
	Signed        hexBytes     `json:"signed"`
	Signature     hexBytes     `json:"signature"`
	Payload       hexBytes     `json:"payload"`
}

type vecChunk struct {
	Index     uint64   `json:"index"`
	Last      bool     `json:"last"`
	Plaintext hexBytes `json:"plaintext"`
	Sealed    hexBytes `json:"sealed"`
}

type vecFile struct {
	Key        hexBytes   `json:"key"`
	ID         hexBytes   `json:"id"`
	ChunkSize  int        `json:"chunk_size"`
	Chunks     []vecChunk `json:"chunks"`
	Length     int        `json:"pattern_length"` // plaintext byte i = i mod 251
	BlobLength int        `json:"pattern_blob_length"`
	BlobSHA256 hexBytes   `json:"pattern_blob_sha256"`
	SHA256     hexBytes   `json:"pattern_sha256"`
}

type vecFingerprint struct {
	Public      hexBytes `json:"public"`
	Fingerprint string   `json:"fingerprint"`
}

// The RFC 9605 appendix C vector for AES_256_GCM_SHA512_128, pinned here
// so that -update cannot change it.
const rfcSFrameCT = "990123456794f509d36e9beacb0e261d99c7d1e972f1fed787d4049f17ca21353c1cc24d56ceabced279"

const (
	vecMeeting = "mtg-7f3a9c"
	vecNow     = 1767225600 // 2026-01-01T00:00:00Z
)

func seedScalar(name string) []byte {
	h := sha256.Sum256([]byte("conclave e2ee test vector key " + name))
	return h[:]
}

func seqBytes(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func filePattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

type vecEnv struct {
	ca      *ecdsa.PrivateKey
	devices map[string]*ecdsa.PrivateKey
	ecdhs   map[string]*ecdh.PrivateKey
	creds   map[string][]byte
	anns    map[string]*VerifiedAnnouncement
}

func ecdsaFromScalar(d []byte) *ecdsa.PrivateKey {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		panic(err)
	}
	return k
}

func keyPair(name string, priv *ecdsa.PrivateKey) vecKeyPair {
	d, _ := priv.Bytes()
	p, _ := priv.PublicKey.Bytes()
	return vecKeyPair{Name: name, Private: d, Public: p}
}

// reuseSig returns old when it is a valid signature of msg by priv, else a
// fresh one.
func reuseSig(t testing.TB, priv *ecdsa.PrivateKey, msg, old []byte) []byte {
	if old != nil && Verify(&priv.PublicKey, msg, old) {
		return old
	}
	sig, err := Sign(priv, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func vsk(k SenderKey) vecSenderKey {
	return vecSenderKey{Index: k.Index, Generation: k.Generation, Step: k.Step, Key: append([]byte(nil), k.Key[:]...)}
}

func (v vecSenderKey) key() SenderKey {
	k := SenderKey{Index: v.Index, Generation: v.Generation, Step: v.Step}
	copy(k.Key[:], v.Key)
	return k
}

// buildVectors computes every vector from the fixed inputs. old supplies
// the RFC section and signatures to keep.
func buildVectors(t testing.TB, old *vectorFile) *vectorFile {
	t.Helper()
	v := &vectorFile{
		Description: "Conclave E2EE test vectors, shared by internal/e2ee (Go) and web/static/js/e2ee (JavaScript). " +
			"Bytes are hex. Private keys are P-256 scalars. See docs/e2ee.md. Regenerate with: go test ./internal/e2ee -run TestVectors -update",
		RFC9605:  old.RFC9605,
		Schedule: old.Schedule,
	}
	env := &vecEnv{devices: map[string]*ecdsa.PrivateKey{}, ecdhs: map[string]*ecdh.PrivateKey{}, creds: map[string][]byte{}, anns: map[string]*VerifiedAnnouncement{}}

	// Keys.
	env.ca = ecdsaFromScalar(seedScalar("ca"))
	v.Keys.CA = keyPair("ca", env.ca)
	for _, name := range []string{"alice", "bob", "guest"} {
		env.devices[name] = ecdsaFromScalar(seedScalar("device " + name))
		v.Keys.Devices = append(v.Keys.Devices, keyPair(name, env.devices[name]))
		e, err := ecdh.P256().NewPrivateKey(seedScalar("ecdh " + name))
		if err != nil {
			t.Fatal(err)
		}
		env.ecdhs[name] = e
		v.Keys.ECDH = append(v.Keys.ECDH, vecKeyPair{Name: name, Private: e.Bytes(), Public: e.PublicKey().Bytes()})
	}

	// Media frames.
	k0 := SenderKey{Index: 3}
	copy(k0.Key[:], seqBytes(32, 0))
	k1 := SenderKey{Index: 0x0102, Generation: 2, Step: 5}
	copy(k1.Key[:], seqBytes(32, 0xa0))
	vp8Key := append(mustHex("9019009d012a8002e001"), seqBytes(24, 0x40)...)
	vp8Delta := append(mustHex("31"), seqBytes(30, 0x60)...)
	vp9 := append(mustHex("820049834200"), seqBytes(20, 0x80)...)
	opus := append(mustHex("fc"), seqBytes(40, 0x10)...)
	media := []struct {
		name  string
		codec Codec
		key   SenderKey
		ctr   uint64
		frame []byte
	}{
		{"vp8 key frame", CodecVP8, k0, 0, vp8Key},
		{"vp8 delta frame", CodecVP8, k0, 1, vp8Delta},
		{"vp9 frame", CodecVP9, k0, 8, vp9},
		{"opus frame", CodecOpus, k1, 300, opus},
		{"opus empty frame", CodecOpus, k1, 0x1234567, nil},
	}
	for _, m := range media {
		s, err := NewSender(m.key)
		if err != nil {
			t.Fatal(err)
		}
		s.ctr = m.ctr
		enc, err := s.EncryptFrame(m.codec, m.frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := m.codec.ClearPrefix(m.frame)
		v.Media = append(v.Media, vecMedia{
			Name: m.name, Codec: m.codec.String(), SenderKey: vsk(m.key), KID: m.key.KID(), CTR: m.ctr,
			SFrameKey: s.sf.Key[:], SFrameSalt: s.sf.Salt[:], ClearPrefix: n, Frame: hexBytes(append([]byte{}, m.frame...)), Encrypted: enc,
		})
	}

	// Ratchet.
	v.Ratchet = vecRatchet{Index: k0.Index, Generation: k0.Generation}
	k := k0
	for i := range 4 {
		if i > 0 {
			var err error
			if k, err = k.Ratchet(); err != nil {
				t.Fatal(err)
			}
		}
		ck, _ := k.ChatKey()
		v.Ratchet.Steps = append(v.Ratchet.Steps, vecRatchetStep{Step: k.Step, Key: append([]byte(nil), k.Key[:]...), ChatKey: ck[:]})
	}

	// Credentials.
	oldCred := map[string]vecCredential{}
	for _, c := range old.Credentials {
		oldCred[c.Name] = c
	}
	for _, c := range []vecCredential{
		{Name: "alice", OrgID: "example.org", UserID: "u-1001", Account: "alice", DisplayName: "Alice Martin", Device: "alice", Serial: 0x1001},
		{Name: "bob", OrgID: "example.org", UserID: "u-1002", Account: "bob.odegard", DisplayName: "Bob Ødegård", Device: "bob", Serial: 0x1002},
	} {
		c.NotBefore, c.NotAfter = vecNow-86400, vecNow+30*86400
		f := CredentialFields{OrgID: c.OrgID, UserID: c.UserID, Account: c.Account, DisplayName: c.DisplayName, DevicePublicKey: &env.devices[c.Device].PublicKey,
			NotBefore: time.Unix(c.NotBefore, 0), NotAfter: time.Unix(c.NotAfter, 0), Serial: c.Serial}
		body, err := EncodeCredentialBody(f)
		if err != nil {
			t.Fatal(err)
		}
		c.Body = body
		c.Signature = reuseSig(t, env.ca, body, oldCred[c.Name].Signature)
		c.Credential = append(append([]byte{}, body...), c.Signature...)
		env.creds[c.Name] = c.Credential
		v.Credentials = append(v.Credentials, c)
	}

	// Announcements.
	oldAnn := map[string]vecAnnouncement{}
	for _, a := range old.Announcement {
		oldAnn[a.Name] = a
	}
	for _, a := range []vecAnnouncement{
		{Name: "alice", ParticipantID: "p-alice", UserID: "u-1001", DisplayName: "Alice Martin", ECDH: "alice", Device: "alice", Credential: "alice", SenderIndex: 3, TimestampMS: vecNow*1000 + 123},
		{Name: "bob", ParticipantID: "p-bob", UserID: "u-1002", DisplayName: "Bob Ødegård", ECDH: "bob", Device: "bob", Credential: "bob", SenderIndex: 0x0102, TimestampMS: vecNow*1000 + 4567},
		{Name: "guest", ParticipantID: "p-guest", DisplayName: "Visitor", ECDH: "guest", Device: "guest", SenderIndex: 77, TimestampMS: vecNow*1000 + 9999},
	} {
		a.MeetingID = vecMeeting
		a.Certified = a.Credential != ""
		ann := Announcement{MeetingID: a.MeetingID, ParticipantID: a.ParticipantID, UserID: a.UserID, DisplayName: a.DisplayName,
			ECDHPublicKey: env.ecdhs[a.ECDH].PublicKey(), DevicePublicKey: &env.devices[a.Device].PublicKey,
			Credential: env.creds[a.Credential], SenderIndex: a.SenderIndex, Timestamp: time.UnixMilli(a.TimestampMS)}
		body, err := EncodeAnnouncementBody(ann)
		if err != nil {
			t.Fatal(err)
		}
		a.Body = body
		a.Signature = reuseSig(t, env.devices[a.Device], body, oldAnn[a.Name].Signature)
		a.Announcement = append(append([]byte{}, body...), a.Signature...)
		va, err := VerifyAnnouncement(a.Announcement, VerifyOptions{MeetingID: vecMeeting, OrgKey: &env.ca.PublicKey, Now: time.Unix(vecNow, 0)})
		if err != nil {
			t.Fatalf("announcement %s: %v", a.Name, err)
		}
		env.anns[a.Name] = va
		v.Announcement = append(v.Announcement, a)
	}
	buildTrustVectors(t, env, old, v)

	// Pairwise channel between alice and bob, and key messages.
	pa, pb := env.ecdhs["alice"], env.ecdhs["bob"]
	secret, _ := pa.ECDH(pb.PublicKey())
	ab, ba, err := PairwiseKeys(vecMeeting, pa, pb.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	v.Pairwise = vecPairwise{MeetingID: vecMeeting, A: "p-alice", B: "p-bob", ECDHA: "alice", ECDHB: "bob", SharedSecret: secret, KeyAToB: ab[:], KeyBToA: ba[:]}
	chA, _ := NewChannel(vecMeeting, "p-alice", pa, "p-bob", pb.PublicKey())
	chB, _ := NewChannel(vecMeeting, "p-bob", pb, "p-alice", pa.PublicKey())
	kr, _ := k0.Ratchet()
	for _, m := range []struct {
		ch   *Channel
		from string
		to   string
		seq  uint64
		key  SenderKey
	}{
		{chA, "p-alice", "p-bob", 1, k0},
		{chA, "p-alice", "p-bob", 2, kr},
		{chB, "p-bob", "p-alice", 1, k1},
	} {
		v.Pairwise.Messages = append(v.Pairwise.Messages, vecKeyMessage{From: m.from, To: m.to, Seq: m.seq, SenderKey: vsk(m.key), Payload: m.ch.sealSeq(m.seq, m.key)})
	}

	// Chat.
	oldChat := map[string]vecChat{}
	for _, c := range old.Chat {
		oldChat[c.Name] = c
	}
	fd := &FileDescriptor{Name: "minutes.pdf", Size: 131172, MimeType: "application/pdf"}
	copy(fd.ID[:], seqBytes(16, 0xf0))
	copy(fd.Key[:], seqBytes(32, 0x20))
	fd.SHA256 = sha256.Sum256(filePattern(131172))
	for _, c := range []struct {
		name string
		pid  string
		dev  string
		key  SenderKey
		seq  uint64
		ts   int64
		msg  ChatMessage
	}{
		{"text", "p-alice", "alice", k0, 1, vecNow*1000 + 5000, ChatMessage{Kind: ChatText, Text: "Bonjour à tous 👋"}},
		{"file", "p-bob", "bob", k1, 7, vecNow*1000 + 6000, ChatMessage{Kind: ChatFile, File: fd}},
	} {
		m := c.msg
		m.SenderIndex, m.Generation, m.Step, m.Seq, m.Timestamp = c.key.Index, c.key.Generation, c.key.Step, c.seq, time.UnixMilli(c.ts)
		body, err := m.body()
		if err != nil {
			t.Fatal(err)
		}
		signed := chatSigned(vecMeeting, c.pid, chatHeader(&m), c.ts, m.Kind, body)
		sig := reuseSig(t, env.devices[c.dev], signed, oldChat[c.name].Signature)
		payload, err := sealChat(vecMeeting, c.pid, c.key, m, func([]byte) ([]byte, error) { return sig, nil })
		if err != nil {
			t.Fatal(err)
		}
		ck, _ := c.key.ChatKey()
		vc := vecChat{Name: c.name, MeetingID: vecMeeting, ParticipantID: c.pid, Device: c.dev, SenderKey: vsk(c.key), ChatKey: ck[:],
			Seq: c.seq, TimestampMS: c.ts, Kind: uint8(m.Kind), Text: m.Text, Signed: signed, Signature: sig, Payload: payload}
		if m.File != nil {
			vc.File = &vecFileDesc{ID: m.File.ID[:], Name: m.File.Name, Size: m.File.Size, MimeType: m.File.MimeType, Key: m.File.Key[:], SHA256: m.File.SHA256[:]}
		}
		v.Chat = append(v.Chat, vc)
	}

	// File chunks.
	fc, err := NewFileCipher(fd.Key, fd.ID)
	if err != nil {
		t.Fatal(err)
	}
	v.File = vecFile{Key: fd.Key[:], ID: fd.ID[:], ChunkSize: FileChunkSize, Length: int(fd.Size), SHA256: fd.SHA256[:]}
	for _, c := range []struct {
		index uint64
		last  bool
		pt    []byte
	}{{0, false, []byte("first chunk")}, {1, true, []byte("last")}, {0, true, nil}} {
		v.File.Chunks = append(v.File.Chunks, vecChunk{Index: c.index, Last: c.last, Plaintext: hexBytes(append([]byte{}, c.pt...)), Sealed: fc.SealChunk(nil, c.index, c.last, c.pt)})
	}
	blob := fc.sealAll(filePattern(int(fd.Size)))
	bs := sha256.Sum256(blob)
	v.File.BlobLength, v.File.BlobSHA256 = len(blob), bs[:]

	// Fingerprints.
	for _, name := range []string{"alice", "bob", "guest"} {
		p, _ := env.devices[name].PublicKey.Bytes()
		fp, _ := Fingerprint(&env.devices[name].PublicKey)
		v.Fingerprints = append(v.Fingerprints, vecFingerprint{Public: p, Fingerprint: fp})
	}
	return v
}

func marshalVectors(v *vectorFile) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

func loadVectors(t testing.TB) (*vectorFile, []byte) {
	t.Helper()
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return &v, raw
}

func parseU64(t testing.TB, s string) uint64 {
	t.Helper()
	x, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestVectors recomputes every vector from its inputs and compares with
// the file byte for byte, then checks the decoding direction of each.
func TestVectors(t *testing.T) {
	file, raw := loadVectors(t)
	if len(file.RFC9605.SFrame) != 1 || hex.EncodeToString(file.RFC9605.SFrame[0].CT) != rfcSFrameCT || len(file.RFC9605.Header) != 289 {
		t.Fatal("the RFC 9605 section of the vectors file was changed")
	}
	built := buildVectors(t, file)
	got := marshalVectors(built)
	if *update {
		if err := os.WriteFile(vectorsPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, raw) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(raw), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("vectors differ at line %d:\n file: %s\n  got: %s", i+1, wl[i], gl[i])
			}
		}
		t.Fatalf("vectors differ in length: file %d lines, got %d", len(wl), len(gl))
	}

	t.Run("schedule", func(t *testing.T) {
		// The rest of the schedule is the session's (internal/client/secure).
		if s := file.Schedule; s.MaxRatchetAhead != MaxRatchetAhead || time.Duration(s.RetentionMs)*time.Millisecond != DefaultRetention {
			t.Errorf("schedule: %d steps ahead, %d ms retention; the keys here: %d, %v", s.MaxRatchetAhead, s.RetentionMs, MaxRatchetAhead, DefaultRetention)
		}
		if s := file.Schedule; time.Duration(s.RoundQuietMs)*time.Millisecond != RoundQuiet || time.Duration(s.RoundMaxWaitMs)*time.Millisecond != RoundMaxWait ||
			s.CommitRatePerSecond != CommitRate || s.CommitBurst != CommitBurst {
			t.Errorf("schedule: rounds %d ms quiet, %d ms at most, %v commits/s, %d at once; the rounds here: %v, %v, %v, %d",
				s.RoundQuietMs, s.RoundMaxWaitMs, s.CommitRatePerSecond, s.CommitBurst, RoundQuiet, RoundMaxWait, CommitRate, CommitBurst)
		}
	})
	t.Run("rfc9605 header", func(t *testing.T) {
		for _, h := range file.RFC9605.Header {
			kid, ctr := parseU64(t, h.KID), parseU64(t, h.CTR)
			if enc := AppendHeader(nil, kid, ctr); !bytes.Equal(enc, h.Header) {
				t.Errorf("header(%#x, %#x) = %x, want %x", kid, ctr, enc, h.Header)
			}
			k2, c2, n, err := ParseHeader(append(append([]byte{}, h.Header...), 0xaa, 0xbb))
			if err != nil || k2 != kid || c2 != ctr || n != len(h.Header) {
				t.Errorf("parse %x = %#x %#x %d %v", h.Header, k2, c2, n, err)
			}
		}
	})
	t.Run("rfc9605 sframe", func(t *testing.T) {
		s := file.RFC9605.SFrame[0]
		kid, ctr := parseU64(t, s.KID), parseU64(t, s.CTR)
		if got := sframeLabel(labelSFrameKey, kid); got != string(s.SFrameKeyLabel) {
			t.Errorf("key label %x", got)
		}
		if got := sframeLabel(labelSFrameSalt, kid); got != string(s.SFrameSaltLabel) {
			t.Errorf("salt label %x", got)
		}
		secret, _ := hkdf.Extract(sha512.New, []byte(s.BaseKey), nil)
		if !bytes.Equal(secret, s.SFrameSecret) {
			t.Errorf("sframe_secret %x", secret)
		}
		k, err := DeriveSFrameKey(s.BaseKey, kid)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.Key[:], s.SFrameKey) || !bytes.Equal(k.Salt[:], s.SFrameSalt) {
			t.Errorf("key %x salt %x", k.Key, k.Salt)
		}
		if n := k.nonce(ctr); !bytes.Equal(n[:], s.Nonce) {
			t.Errorf("nonce %x", n)
		}
		if ct := k.Seal(nil, ctr, s.Metadata, s.PT); !bytes.Equal(ct, s.CT) {
			t.Errorf("ct %x", ct)
		}
		if pt, err := k.Open(nil, s.Metadata, s.CT); err != nil || !bytes.Equal(pt, s.PT) {
			t.Errorf("open: %x %v", pt, err)
		}
		_, _, n, _ := ParseHeader(s.CT)
		if aad := append(append([]byte{}, s.CT[:n]...), s.Metadata...); !bytes.Equal(aad, s.AAD) {
			t.Errorf("aad %x", aad)
		}
	})
	t.Run("media decrypt", func(t *testing.T) {
		for _, m := range file.Media {
			c := map[string]Codec{"vp8": CodecVP8, "vp9": CodecVP9, "opus": CodecOpus}[m.Codec]
			r := NewReceiver(m.SenderKey.Index, KeyRingConfig{})
			if err := r.AddKey(m.SenderKey.key()); err != nil {
				t.Fatal(err)
			}
			pt, err := r.DecryptFrame(c, m.Encrypted, nil)
			if err != nil || !bytes.Equal(pt, m.Frame) {
				t.Errorf("%s: %x %v", m.Name, pt, err)
			}
		}
	})
	t.Run("credentials", func(t *testing.T) {
		ca, _ := ParsePublicKey(file.Keys.CA.Public)
		for _, c := range file.Credentials {
			if _, err := VerifyCredential(ca, c.Credential, time.Unix(vecNow, 0)); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
			if _, err := VerifyCredential(ca, c.Credential, time.Unix(c.NotAfter+1, 0)); err != ErrExpired {
				t.Errorf("%s after expiry: %v", c.Name, err)
			}
		}
	})
	t.Run("key messages", func(t *testing.T) {
		pa, _ := ecdh.P256().NewPrivateKey(file.Keys.ECDH[0].Private)
		pb, _ := ecdh.P256().NewPrivateKey(file.Keys.ECDH[1].Private)
		chA, _ := NewChannel(vecMeeting, "p-alice", pa, "p-bob", pb.PublicKey())
		chB, _ := NewChannel(vecMeeting, "p-bob", pb, "p-alice", pa.PublicKey())
		for _, m := range file.Pairwise.Messages {
			ch := chB
			if m.To == "p-alice" {
				ch = chA
			}
			k, err := ch.Open(m.Payload)
			if err != nil || k != m.SenderKey.key() {
				t.Errorf("%s->%s seq %d: %v", m.From, m.To, m.Seq, err)
			}
		}
	})
	t.Run("chat", func(t *testing.T) {
		for _, c := range file.Chat {
			r := NewReceiver(c.SenderKey.Index, KeyRingConfig{})
			r.AddKey(c.SenderKey.key())
			var dev *ecdsa.PublicKey
			for _, d := range file.Keys.Devices {
				if d.Name == c.Device {
					dev, _ = ParsePublicKey(d.Public)
				}
			}
			m, err := r.OpenChat(c.MeetingID, c.ParticipantID, dev, c.Payload)
			if err != nil || m.Seq != c.Seq || m.Text != c.Text || m.Timestamp.UnixMilli() != c.TimestampMS {
				t.Errorf("%s: %+v %v", c.Name, m, err)
			}
		}
	})
	t.Run("file chunks", func(t *testing.T) {
		var key [32]byte
		var id [16]byte
		copy(key[:], file.File.Key)
		copy(id[:], file.File.ID)
		fc, _ := NewFileCipher(key, id)
		for _, c := range file.File.Chunks {
			pt, err := fc.OpenChunk(nil, c.Index, c.Last, c.Sealed)
			if err != nil || !bytes.Equal(pt, c.Plaintext) {
				t.Errorf("chunk %d: %v", c.Index, err)
			}
			if _, err := fc.OpenChunk(nil, c.Index, !c.Last, c.Sealed); err == nil {
				t.Errorf("chunk %d opened with the wrong last flag", c.Index)
			}
		}
	})
}

func ExampleSplitKID() {
	fmt.Println(SplitKID(SenderKey{Index: 0x0102, Generation: 2, Step: 5}.KID()))
	// Output: 258 2 5 true
}
