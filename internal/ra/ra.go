// Package ra is the registration authority of the organisation's E2EE
// certificate authority: it keeps the CA key (used for nothing else) in the
// data directory, issues compact device credentials (docs/e2ee.md, section
// 7) to signed-in users who prove they hold the device key, revokes them,
// and keeps the transparency log of both (section 13), whose checkpoints
// it signs with a key of its own.
package ra

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"conclave/internal/clock"
	"conclave/internal/e2ee"
	"conclave/internal/secrets"
	"conclave/internal/store"
)

// CredentialLifetime is how long a device credential is valid. Credentials
// are renewed at login; revocation goes through the log.
const CredentialLifetime = 7 * 24 * time.Hour

// Key file names inside <data>/e2ee: the CA key, and the log key that
// signs checkpoints.
const (
	keyFile    = "org-ca.key"
	logKeyFile = "log.key"
)

// challengeTTL is how long a proof-of-possession challenge may be used.
const challengeTTL = 5 * time.Minute

// Authority issues credentials under the organisation's E2EE CA key and
// keeps the E2EE transparency log (docs/e2ee.md, sections 7 and 13): every
// credential and revocation is appended to the log in the store, and the
// Authority serves signed checkpoints and proofs over it.
type Authority struct {
	key    *ecdsa.PrivateKey
	logKey *ecdsa.PrivateKey
	signer note.Signer
	vkey   string
	store  store.Store
	orgID  string
	name   string
	clock  clock.Clock

	mu         sync.Mutex
	onRevoke   func(*e2ee.Revocation)
	log        memLog
	checkpoint []byte // signed note of the latest tree
	cpSize     int64
	challenges map[string]challenge // by base64 challenge
}

type challenge struct {
	session string
	expires time.Time
}

// Open loads the CA and log keys from <dataDir>/e2ee, creating them on
// first use, and reads the log from st. orgID identifies the organisation
// in credentials; name is shown to users ("certified by <name>"). An empty
// orgID (the admin CLI) means the one the server last used, kept in
// <dataDir>/e2ee/org-id.
func Open(dataDir, orgID, name string, st store.Store, clk clock.Clock) (*Authority, error) {
	return OpenSealed(dataDir, orgID, name, st, clk, nil)
}

// OpenSealed is Open with the CA and log keys sealed under the master key
// by box (package secrets) when it creates them; a clear key is read as it
// is (secrets.SealDir seals e2ee/*.key at start).
func OpenSealed(dataDir, orgID, name string, st store.Store, clk clock.Clock, box *secrets.Box) (*Authority, error) {
	dir := filepath.Join(dataDir, "e2ee")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create E2EE CA directory: %w", err)
	}
	orgID, err := storedOrgID(filepath.Join(dir, orgIDFile), orgID)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = orgID
	}
	key, err := loadOrCreate(filepath.Join(dir, keyFile), box)
	if err != nil {
		return nil, err
	}
	logKey, err := loadOrCreate(filepath.Join(dir, logKeyFile), box)
	if err != nil {
		return nil, err
	}
	signer, err := e2ee.NewLogSigner(logKey)
	if err != nil {
		return nil, err
	}
	vkey, err := e2ee.LogVerifierKey(&logKey.PublicKey)
	if err != nil {
		return nil, err
	}
	a := &Authority{key: key, logKey: logKey, signer: signer, vkey: vkey, store: st, orgID: orgID, name: name, clock: clock.Or(clk),
		challenges: map[string]challenge{}, log: newMemLog()}
	if err := a.Sync(context.Background()); err != nil {
		return nil, err
	}
	return a, nil
}

// orgIDFile keeps the organisation id of the credentials, for the CLI.
const orgIDFile = "org-id"

func storedOrgID(path, orgID string) (string, error) {
	if orgID == "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("the organisation id is unknown (%v): start the server once first", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == orgID {
		return orgID, nil
	}
	if err := os.WriteFile(path, []byte(orgID+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the organisation id: %w", err)
	}
	return orgID, nil
}

func loadOrCreate(path string, box *secrets.Box) (*ecdsa.PrivateKey, error) {
	key, err := loadKey(path, box)
	if errors.Is(err, os.ErrNotExist) {
		key, err = createKey(path, box)
	}
	return key, err
}

func loadKey(path string, box *secrets.Box) (*ecdsa.PrivateKey, error) {
	data, err := box.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("E2EE CA key %s is not a PEM private key; restore it from a backup (replacing it makes every client warn that the organisation key changed)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse E2EE CA key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("E2EE CA key %s is not an ECDSA P-256 key", path)
	}
	return ek, nil
}

func createKey(path string, box *secrets.Box) (*ecdsa.PrivateKey, error) {
	k, err := e2ee.GenerateDeviceKey()
	if err != nil {
		return nil, fmt.Errorf("generate E2EE CA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode E2EE CA key: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write E2EE CA key: %w", err)
	}
	_, werr := f.Write(box.Seal(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("write E2EE CA key: %w", werr)
	}
	return k, nil
}

// OrgID identifies the organisation in credentials.
func (a *Authority) OrgID() string { return a.orgID }

// Name is the organisation's display name.
func (a *Authority) Name() string { return a.name }

// PublicKey is the CA's public key as a 65-byte uncompressed point, what
// clients pin.
func (a *Authority) PublicKey() []byte {
	b, _ := e2ee.MarshalPublicKey(&a.key.PublicKey)
	return b
}

// LogVerifierKey is the log's verifier key, what clients pin next to the
// CA key.
func (a *Authority) LogVerifierKey() string { return a.vkey }

// Challenge returns a fresh proof-of-possession challenge for a session.
func (a *Authority) Challenge(session string) []byte {
	c := make([]byte, e2ee.ChallengeLen)
	rand.Read(c)
	now := a.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.challenges {
		if now.After(v.expires) {
			delete(a.challenges, k)
		}
	}
	a.challenges[base64.StdEncoding.EncodeToString(c)] = challenge{session: session, expires: now.Add(challengeTTL)}
	return c
}

// ErrProof is returned when a credential request's proof of possession
// does not hold: unknown, expired or reused challenge, or a bad signature.
var ErrProof = errors.New("the device did not prove that it holds its key; reload and try again")

// ErrRevoked is returned when asked to certify a device key revoked for
// that account.
var ErrRevoked = errors.New("this device was revoked for this account; it cannot be certified again (make a new device key)")

// IssueWithProof certifies devicePublicKey for u once the device proved it
// holds the key: sig is its signature of the proof-of-possession message
// over a challenge this Authority gave to the same session.
func (a *Authority) IssueWithProof(ctx context.Context, session string, u store.User, devicePublicKey, chal, sig []byte) ([]byte, time.Time, error) {
	key := base64.StdEncoding.EncodeToString(chal)
	a.mu.Lock()
	c, ok := a.challenges[key]
	delete(a.challenges, key)
	a.mu.Unlock()
	if !ok || c.session != session || a.clock.Now().After(c.expires) {
		return nil, time.Time{}, ErrProof
	}
	if err := e2ee.VerifyPossession(devicePublicKey, a.orgID, u.Username, chal, sig); err != nil {
		return nil, time.Time{}, ErrProof
	}
	return a.Certify(ctx, u, devicePublicKey)
}

// Certify certifies a device public key (65-byte uncompressed point) for
// u and appends the credential to the log. It does not ask for a proof of
// possession: IssueWithProof does, for requests from users; Certify is for
// callers that vouch for the key themselves (tests playing a rogue server).
func (a *Authority) Certify(ctx context.Context, u store.User, devicePublicKey []byte) ([]byte, time.Time, error) {
	pub, err := e2ee.ParsePublicKey(devicePublicKey)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("the device public key is not an uncompressed P-256 point: %w", err)
	}
	if err := a.Sync(ctx); err != nil {
		return nil, time.Time{}, err
	}
	a.mu.Lock()
	revoked := a.log.revoked[revocationKey(UserID(u), devicePublicKey)]
	a.mu.Unlock()
	if revoked {
		return nil, time.Time{}, ErrRevoked
	}
	now := a.clock.Now().UTC()
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, time.Time{}, err
	}
	notAfter := now.Add(CredentialLifetime)
	cred, err := e2ee.IssueCredential(a.key, e2ee.CredentialFields{
		OrgID:           a.orgID,
		UserID:          UserID(u),
		Account:         u.Username,
		DisplayName:     u.DisplayName,
		DevicePublicKey: pub,
		NotBefore:       now.Add(-5 * time.Minute),
		NotAfter:        notAfter,
		Serial:          binary.BigEndian.Uint64(serial[:]),
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("issue credential: %w", err)
	}
	if _, err := a.store.AppendLogRecord(ctx, cred); err != nil {
		return nil, time.Time{}, fmt.Errorf("log the credential: %w", err)
	}
	if err := a.Sync(ctx); err != nil {
		return nil, time.Time{}, err
	}
	return cred, notAfter, nil
}

// Revoke appends a revocation of one device key of u to the log.
func (a *Authority) Revoke(ctx context.Context, u store.User, devicePublicKey []byte, reason string) error {
	pub, err := e2ee.ParsePublicKey(devicePublicKey)
	if err != nil {
		return fmt.Errorf("the device public key is not an uncompressed P-256 point: %w", err)
	}
	if err := a.Sync(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	done := a.log.revoked[revocationKey(UserID(u), devicePublicKey)]
	a.mu.Unlock()
	if done {
		return nil
	}
	rev, err := e2ee.IssueRevocation(a.key, e2ee.RevocationFields{OrgID: a.orgID, UserID: UserID(u), DevicePublicKey: pub,
		RevokedAt: a.clock.Now(), Reason: reason})
	if err != nil {
		return err
	}
	if _, err := a.store.AppendLogRecord(ctx, rev); err != nil {
		return fmt.Errorf("log the revocation: %w", err)
	}
	return a.Sync(ctx)
}

// RevokeUser revokes every device certified for u; it returns how many.
func (a *Authority) RevokeUser(ctx context.Context, u store.User, reason string) (int, error) {
	n := 0
	devs, err := a.Devices(ctx, u)
	if err != nil {
		return 0, err
	}
	for _, d := range devs {
		if d.Revoked {
			continue
		}
		if err := a.Revoke(ctx, u, d.PublicKey, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Device is a device key certified for a user, as the log tells.
type Device struct {
	PublicKey      []byte
	Fingerprint    string
	FirstCertified time.Time // not before of its first credential
	LastNotAfter   time.Time
	Credentials    int
	Revoked        bool
	RevokedAt      time.Time
}

// Devices lists the device keys the log certified for u, oldest first.
func (a *Authority) Devices(ctx context.Context, u store.User) ([]Device, error) {
	if err := a.Sync(ctx); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	uid := UserID(u)
	var out []Device
	idx := map[string]int{}
	for n := range a.log.tree.Size() {
		rec := a.log.tree.Record(n)
		switch e2ee.KindOf(rec) {
		case e2ee.RecordCredential:
			c, err := e2ee.ParseCredential(rec)
			if err != nil || c.UserID != uid || c.OrgID != a.orgID {
				continue
			}
			pub, _ := e2ee.MarshalPublicKey(c.DevicePublicKey)
			i, ok := idx[string(pub)]
			if !ok {
				fp, _ := e2ee.Fingerprint(c.DevicePublicKey)
				out = append(out, Device{PublicKey: pub, Fingerprint: fp, FirstCertified: c.NotBefore})
				i = len(out) - 1
				idx[string(pub)] = i
			}
			out[i].Credentials++
			if c.NotAfter.After(out[i].LastNotAfter) {
				out[i].LastNotAfter = c.NotAfter
			}
		case e2ee.RecordRevocation:
			r, err := e2ee.ParseRevocation(rec)
			if err != nil || r.UserID != uid {
				continue
			}
			pub, _ := e2ee.MarshalPublicKey(r.DevicePublicKey)
			if i, ok := idx[string(pub)]; ok {
				out[i].Revoked, out[i].RevokedAt = true, r.RevokedAt
			}
		}
	}
	return out, nil
}

// UserID is the user id a credential and an announcement carry for u: its
// numeric account id, stable across renames.
func UserID(u store.User) string { return strconv.FormatInt(u.ID, 10) }

// SameFingerprint compares two fingerprints, ignoring case and spaces, so
// that an administrator may type "00d9789d..." for "00D9 789D ...".
func SameFingerprint(a, b string) bool {
	norm := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, " ", "")) }
	return a != "" && norm(a) == norm(b)
}
