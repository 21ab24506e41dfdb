package e2ee

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Vectors of the structures of docs/e2ee.md sections 7 and 13-15: proof of
// possession, revocations, the log (records, tree, checkpoint, proofs), the
// verification round and the names.

type vecPossession struct {
	OrgID     string   `json:"org_id"`
	Account   string   `json:"account"`
	Device    string   `json:"device"`
	Challenge hexBytes `json:"challenge"`
	Message   hexBytes `json:"message"`
	Signature hexBytes `json:"signature"`
}

type vecRevocation struct {
	Name       string   `json:"name"`
	OrgID      string   `json:"org_id"`
	UserID     string   `json:"user_id"`
	Device     string   `json:"device"`
	RevokedAt  int64    `json:"revoked_at"`
	Reason     string   `json:"reason"`
	Body       hexBytes `json:"body"`
	Signature  hexBytes `json:"signature"`
	Revocation hexBytes `json:"revocation"`
}

type vecInclusion struct {
	Index int64      `json:"index"`
	Proof []hexBytes `json:"proof"`
}

type vecConsistency struct {
	From     int64      `json:"from"`
	FromHash hexBytes   `json:"from_hash"`
	Proof    []hexBytes `json:"proof"`
}

type vecLog struct {
	Key          vecKeyPair       `json:"key"`
	SPKI         hexBytes         `json:"spki"`
	KeyID        uint32           `json:"key_id"`
	Origin       string           `json:"origin"`
	VerifierKey  string           `json:"verifier_key"`
	Records      []hexBytes       `json:"records"`
	RecordHashes []hexBytes       `json:"record_hashes"`
	Size         int64            `json:"size"`
	RootHash     hexBytes         `json:"root_hash"`
	Checkpoint   string           `json:"checkpoint"`
	Inclusion    []vecInclusion   `json:"inclusion"`
	Consistency  []vecConsistency `json:"consistency"`
}

type vecCommit struct {
	Participant string   `json:"participant"` // announcement name
	Round       uint32   `json:"round"`
	Nonce       hexBytes `json:"nonce"`
	NonceHash   hexBytes `json:"nonce_hash"`
	Body        hexBytes `json:"body"`
	Signature   hexBytes `json:"signature"`
	Commit      hexBytes `json:"commit"`
	Reveal      hexBytes `json:"reveal"`
}

type vecView struct {
	Announcements []string `json:"announcements"`
	View          hexBytes `json:"view"`
}

type vecCode struct {
	Digits int    `json:"digits"`
	Code   string `json:"code"`
}

type vecRounds struct {
	Views   []vecView   `json:"views"`
	Commits []vecCommit `json:"commits"` // alice and bob, view of both, checkpoint of the log section
	Codes   []vecCode   `json:"codes"`
}

type vecName struct {
	Name     string `json:"name"`
	Clean    string `json:"clean"`
	Skeleton string `json:"skeleton"`
}

// vecLookalike is a chosen name against another name or account: whether
// it looks like it (LooksLike, with and without within) and whether it
// writes it out as an account (ClaimsAccount).
type vecLookalike struct {
	Chosen        string `json:"chosen"`
	Other         string `json:"other"`
	LooksLike     bool   `json:"looksLike"`
	Within        bool   `json:"within"`
	ClaimsAccount bool   `json:"claimsAccount"`
}

// lookalikeCases are the inputs of the lookalikes section.
var lookalikeCases = [][2]string{
	{"Alice Martin (CEO)", "Alice Martin"}, {"Alice Martin (@alice)", "alice"}, {"Alice (@alicex)", "alice"},
	{"Dr. Аlice Martin", "Alice Martin"}, {"Alice-Martin ✓", "Alice Martin"}, {"Al Smith", "Al"},
	{"Bob Marley", "Bob"}, {"Alicemartin", "Alice Martin"}, {"Martin", "Alice Martin"}, {"Ꮇartin Alice", "Martin Alice"},
	{"Alice  Martin", "alice martin"}, {"", "Alice"}, {"Alice", ""}, {"@bob.stone", "bob.stone"}, {"x@bob", "bob"},
	{"Alice Martin‮", "Alice Martin"}, {"ᴀlice ʟee", "Alice Lee"}, {"Ali", "Alice"},
}

// nameCases are the inputs of the names section: one per look-alike entry
// and the cases of docs/e2ee.md section 15.
func nameCases() []string {
	cases := []string{"Alice", "ALICE", "Аlice", "A\u200dlice", "Alice\u202e", "\u202eecilA", "Álïce", "aIice", "AIice",
		"Bob  Smith ", "ΟΣ", "İstanbul", "rnary", "vvendy", "Ｂｏｂ", "Bob\u00ad", "\u3164Bob", "Зоя", "Ĳssel", "ﬁona",
		"Alice Martin (CEO)", "Alice Martin (СЕО)", "0scar", "Bi11", "Ｉ|ona", "Ελένη", "Дмитрий", "Jürgen", "a\u0301"}
	keys := make([]rune, 0, len(confusables))
	for r := range confusables {
		keys = append(keys, r)
	}
	slices.Sort(keys)
	for _, r := range keys {
		cases = append(cases, "x"+string(r)+"x")
	}
	return cases
}

// treeOf computes the stored hashes of records.
func treeOf(t testing.TB, records [][]byte) ([]tlog.Hash, tlog.HashReader) {
	t.Helper()
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, rec := range records {
		h, err := tlog.StoredHashes(int64(i), rec, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h...)
	}
	return hashes, r
}

func hexList(hs []tlog.Hash) []hexBytes {
	out := []hexBytes{}
	for _, h := range hs {
		out = append(out, hexBytes(append([]byte{}, h[:]...)))
	}
	return out
}

func buildTrustVectors(t testing.TB, env *vecEnv, old, v *vectorFile) {
	t.Helper()
	// Proof of possession.
	alicePub, _ := MarshalPublicKey(&env.devices["alice"].PublicKey)
	pp := vecPossession{OrgID: "example.org", Account: "alice", Device: "alice", Challenge: seqBytes(32, 0x70)}
	pp.Message, _ = PossessionMessage(pp.OrgID, pp.Account, alicePub, pp.Challenge)
	pp.Signature = reuseSig(t, env.devices["alice"], pp.Message, old.Possession.Signature)
	v.Possession = pp

	// Revocation of bob's device.
	oldRev := map[string]vecRevocation{}
	for _, r := range old.Revocations {
		oldRev[r.Name] = r
	}
	rv := vecRevocation{Name: "bob", OrgID: "example.org", UserID: "u-1002", Device: "bob", RevokedAt: vecNow + 3600, Reason: "lost laptop"}
	raw, err := IssueRevocation(env.ca, RevocationFields{OrgID: rv.OrgID, UserID: rv.UserID, DevicePublicKey: &env.devices["bob"].PublicKey,
		RevokedAt: time.Unix(rv.RevokedAt, 0), Reason: rv.Reason})
	if err != nil {
		t.Fatal(err)
	}
	rv.Body = raw[:len(raw)-SignatureLen]
	rv.Signature = reuseSig(t, env.ca, rv.Body, oldRev[rv.Name].Signature)
	rv.Revocation = append(append([]byte{}, rv.Body...), rv.Signature...)
	v.Revocations = append(v.Revocations, rv)

	// Log: alice's and bob's credentials, two renewals of alice's, bob's revocation.
	logKey := ecdsaFromScalar(seedScalar("log"))
	lg := vecLog{Key: keyPair("log", logKey)}
	lg.KeyID, lg.SPKI, _ = LogKeyID(&logKey.PublicKey)
	lg.Origin, _ = LogOrigin(&logKey.PublicKey)
	lg.VerifierKey, _ = LogVerifierKey(&logKey.PublicKey)
	records := [][]byte{env.creds["alice"], env.creds["bob"]}
	for i, serial := range []uint64{0x2001, 0x2002} {
		f := CredentialFields{OrgID: "example.org", UserID: "u-1001", Account: "alice", DisplayName: "Alice Martin", DevicePublicKey: &env.devices["alice"].PublicKey,
			NotBefore: time.Unix(vecNow+int64(i+1)*86400, 0), NotAfter: time.Unix(vecNow+int64(i+31)*86400, 0), Serial: serial}
		body, _ := EncodeCredentialBody(f)
		var oldSig []byte
		if len(old.Log.Records) > 2+i {
			oldSig = old.Log.Records[2+i][len(old.Log.Records[2+i])-SignatureLen:]
		}
		records = append(records, append(body, reuseSig(t, env.ca, body, oldSig)...))
	}
	records = append(records, rv.Revocation)
	hashes, hr := treeOf(t, records)
	_ = hashes
	for _, r := range records {
		lg.Records = append(lg.Records, hexBytes(r))
		h := RecordHash(r)
		lg.RecordHashes = append(lg.RecordHashes, hexBytes(h[:]))
	}
	lg.Size = int64(len(records))
	root, err := tlog.TreeHash(lg.Size, hr)
	if err != nil {
		t.Fatal(err)
	}
	lg.RootHash = root[:]
	verifier, err := LogVerifier(lg.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := OpenCheckpoint([]byte(old.Log.Checkpoint), verifier)
	if err != nil || cp.Size != lg.Size || cp.Hash != root {
		signer, _ := NewLogSigner(logKey)
		note, err := SignCheckpoint(signer, lg.Size, root)
		if err != nil {
			t.Fatal(err)
		}
		cp, _ = OpenCheckpoint(note, verifier)
	}
	lg.Checkpoint = string(cp.Note)
	for i := range records {
		p, err := tlog.ProveRecord(lg.Size, int64(i), hr)
		if err != nil {
			t.Fatal(err)
		}
		lg.Inclusion = append(lg.Inclusion, vecInclusion{Index: int64(i), Proof: hexList(p)})
	}
	for _, from := range []int64{1, 2, 3, 4} {
		p, err := tlog.ProveTree(lg.Size, from, hr)
		if err != nil {
			t.Fatal(err)
		}
		fh, _ := tlog.TreeHash(from, hr)
		lg.Consistency = append(lg.Consistency, vecConsistency{From: from, FromHash: fh[:], Proof: hexList(p)})
	}
	v.Log = lg

	// Rounds: alice and bob, both holding the checkpoint above.
	var both []*VerifiedAnnouncement
	for _, set := range [][]string{{"alice", "bob"}, {"guest", "alice", "bob"}, {"alice"}} {
		var list []*VerifiedAnnouncement
		for _, n := range set {
			list = append(list, env.anns[n])
		}
		if len(set) == 2 {
			both = list
		}
		vh := ViewHash(list)
		v.Rounds.Views = append(v.Rounds.Views, vecView{Announcements: set, View: vh[:]})
	}
	view := ViewHash(both)
	oldCommit := map[string]vecCommit{}
	for _, c := range old.Rounds.Commits {
		oldCommit[c.Participant] = c
	}
	var nonces []RoundNonce
	for i, name := range []string{"alice", "bob"} {
		a := env.anns[name]
		c := vecCommit{Participant: name, Round: uint32(1 + i), Nonce: seqBytes(32, byte(0x30+0x40*i))}
		nh := NonceHash(vecMeeting, a.ParticipantID, c.Round, c.Nonce)
		c.NonceHash = nh[:]
		cm := Commit{MeetingID: vecMeeting, ParticipantID: a.ParticipantID, Round: c.Round, View: view, Checkpoint: cp.Note, NonceHash: nh}
		body, err := encodeCommitBody(&cm)
		if err != nil {
			t.Fatal(err)
		}
		c.Body = body
		c.Signature = reuseSig(t, env.devices[name], body, oldCommit[name].Signature)
		c.Commit = append(append([]byte{}, body...), c.Signature...)
		c.Reveal, _ = EncodeReveal(Reveal{MeetingID: vecMeeting, ParticipantID: a.ParticipantID, Round: c.Round, Nonce: c.Nonce})
		v.Rounds.Commits = append(v.Rounds.Commits, c)
		nonces = append(nonces, RoundNonce{ParticipantID: a.ParticipantID, Nonce: c.Nonce})
	}
	for _, d := range []int{12, 7} {
		v.Rounds.Codes = append(v.Rounds.Codes, vecCode{Digits: d, Code: MeetingCodeV2(view, cp, nonces, d)})
	}

	for _, n := range nameCases() {
		v.Names = append(v.Names, vecName{Name: n, Clean: CleanName(n), Skeleton: Skeleton(n)})
	}
	for _, c := range lookalikeCases {
		v.Lookalikes = append(v.Lookalikes, vecLookalike{Chosen: c[0], Other: c[1], LooksLike: LooksLike(c[0], c[1], false),
			Within: LooksLike(c[0], c[1], true), ClaimsAccount: ClaimsAccount(c[0], c[1])})
	}
}

// TestTrustVectors checks the decoding direction of the trust sections.
func TestTrustVectors(t *testing.T) {
	file, _ := loadVectors(t)
	ca, _ := ParsePublicKey(file.Keys.CA.Public)
	var alice, bob *VerifiedAnnouncement
	for _, a := range file.Announcement {
		va, err := VerifyAnnouncement(a.Announcement, VerifyOptions{MeetingID: vecMeeting, OrgKey: ca, Now: time.Unix(vecNow, 0)})
		if err != nil {
			t.Fatal(err)
		}
		switch a.Name {
		case "alice":
			alice = va
		case "bob":
			bob = va
		}
	}
	pp := file.Possession
	alicePub, _ := MarshalPublicKey(alice.DevicePublicKey)
	if err := VerifyPossession(alicePub, pp.OrgID, pp.Account, pp.Challenge, pp.Signature); err != nil {
		t.Errorf("possession: %v", err)
	}
	if err := VerifyPossession(alicePub, pp.OrgID, "mallory", pp.Challenge, pp.Signature); err == nil {
		t.Error("a proof of possession verified for another account")
	}
	for _, r := range file.Revocations {
		got, err := VerifyRevocation(ca, r.Revocation)
		if err != nil || got.Reason != r.Reason || got.UserID != r.UserID {
			t.Errorf("revocation %s: %+v %v", r.Name, got, err)
		}
	}
	lg := file.Log
	verifier, err := LogVerifier(lg.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := OpenCheckpoint([]byte(lg.Checkpoint), verifier)
	if err != nil || cp.Size != lg.Size || !bytes.Equal(cp.Hash[:], lg.RootHash) {
		t.Fatalf("checkpoint: %+v %v", cp, err)
	}
	toHashes := func(l []hexBytes) []tlog.Hash {
		out := make([]tlog.Hash, len(l))
		for i, h := range l {
			copy(out[i][:], h)
		}
		return out
	}
	for _, inc := range lg.Inclusion {
		if err := VerifyInclusion(cp, inc.Index, lg.Records[inc.Index], toHashes(inc.Proof)); err != nil {
			t.Errorf("inclusion %d: %v", inc.Index, err)
		}
		if err := VerifyInclusion(cp, inc.Index, append([]byte{}, lg.Records[(inc.Index+1)%lg.Size]...), toHashes(inc.Proof)); err == nil {
			t.Errorf("inclusion %d holds for another record", inc.Index)
		}
	}
	for _, c := range lg.Consistency {
		older := Checkpoint{Origin: cp.Origin, Size: c.From}
		copy(older.Hash[:], c.FromHash)
		if err := VerifyConsistency(older, cp, toHashes(c.Proof)); err != nil {
			t.Errorf("consistency %d: %v", c.From, err)
		}
		older.Hash[0] ^= 1
		if err := VerifyConsistency(older, cp, toHashes(c.Proof)); err == nil {
			t.Errorf("consistency %d holds for another older tree", c.From)
		}
	}
	// Rounds, as each member's RoundState sees them.
	both := []*VerifiedAnnouncement{alice, bob}
	if vh := ViewHash(both); !bytes.Equal(vh[:], file.Rounds.Views[0].View) {
		t.Errorf("view hash %x", vh)
	}
	ca2, bc := file.Rounds.Commits[0], file.Rounds.Commits[1]
	for _, c := range []struct {
		vc vecCommit
		a  *VerifiedAnnouncement
	}{{ca2, alice}, {bc, bob}} {
		cm, err := VerifyCommit(c.vc.Commit, c.a)
		if err != nil {
			t.Fatalf("commit of %s: %v", c.vc.Participant, err)
		}
		rv, err := ParseReveal(c.vc.Reveal)
		if err != nil || !rv.Opens(cm) {
			t.Errorf("reveal of %s: %v", c.vc.Participant, err)
		}
	}
	nonces := []RoundNonce{{alice.ParticipantID, ca2.Nonce}, {bob.ParticipantID, bc.Nonce}}
	for _, c := range file.Rounds.Codes {
		if got := MeetingCodeV2(ViewHash(both), cp, nonces, c.Digits); got != c.Code {
			t.Errorf("code of %d digits %q, want %q", c.Digits, got, c.Code)
		}
	}
	for _, n := range file.Names {
		if c, s := CleanName(n.Name), Skeleton(n.Name); c != n.Clean || s != n.Skeleton {
			t.Errorf("%q: clean %q skeleton %q, want %q %q", n.Name, c, s, n.Clean, n.Skeleton)
		}
	}
	for _, c := range file.Lookalikes {
		if LooksLike(c.Chosen, c.Other, false) != c.LooksLike || LooksLike(c.Chosen, c.Other, true) != c.Within || ClaimsAccount(c.Chosen, c.Other) != c.ClaimsAccount {
			t.Errorf("lookalike %+v", c)
		}
	}
	// What the cases are for (docs/e2ee.md, section 15).
	want := map[[2]string][3]bool{
		{"Alice Martin (CEO)", "Alice Martin"}:  {false, true, false},
		{"Alice Martin (@alice)", "alice"}:      {false, true, true},
		{"Alice (@alicex)", "alice"}:            {false, true, false},
		{"Al Smith", "Al"}:                      {false, false, false},
		{"Alice-Martin \u2713", "Alice Martin"}: {true, true, false},
		{"\u13b7artin Alice", "Martin Alice"}:   {true, true, false},
		{"\u1d00lice \u029fee", "Alice Lee"}:    {true, true, false},
		{"Martin", "Alice Martin"}:              {false, false, false},
	}
	for k, w := range want {
		if got := [3]bool{LooksLike(k[0], k[1], false), LooksLike(k[0], k[1], true), ClaimsAccount(k[0], k[1])}; got != w {
			t.Errorf("%q against %q: looks like %v, within %v, claims %v; want %v", k[0], k[1], got[0], got[1], got[2], w)
		}
	}
}
