package ticket

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/secrets"
	"conclave/internal/testutil/fakeclock"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func claims() Claims {
	return Claims{Room: "staff", Meeting: "m1", Node: "node-a", Role: RoleHost,
		Account: Account{ID: 7, Username: "olga", Name: "Olga"}}
}

func reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// resign replaces a ticket's payload and signs it with key: a ticket
// someone made with a key of their own.
func resign(t *testing.T, key *ecdsa.PrivateKey, payload string) string {
	t.Helper()
	sig, err := key.Sign(rand.Reader, digest([]byte(payload)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestVerify: a ticket is accepted once, for its room on its node, within
// its life; every other use is refused with its own reason, and a
// refused ticket that was never accepted is not used up.
func TestVerify(t *testing.T) {
	start := time.Date(2026, 12, 5, 23, 0, 0, 0, time.UTC)
	clk := fakeclock.New(start)
	key := newKey(t)
	iss, err := NewIssuer(key, clk)
	if err != nil {
		t.Fatal(err)
	}
	pub := iss.PublicKey()
	v := NewVerifier("node-a", func() []byte { return pub }, clk)
	tk, err := iss.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}

	// Another room, another node: refused, and not used up.
	if _, err := v.Verify(tk, "lounge"); reason(err) != ReasonOtherRoom {
		t.Errorf("another room: %v", err)
	}
	other := NewVerifier("node-b", func() []byte { return pub }, clk)
	if _, err := other.Verify(tk, "staff"); reason(err) != ReasonOtherNode {
		t.Errorf("another node: %v", err)
	}
	// A key of someone else's: forged.
	stranger := newKey(t)
	sv := NewVerifier("node-a", func() []byte { s, _ := NewIssuer(stranger, clk); return s.PublicKey() }, clk)
	if _, err := sv.Verify(tk, "staff"); reason(err) != ReasonForged {
		t.Errorf("verified with another key: %v", err)
	}
	// No key yet (a node that never reached the management node).
	if _, err := NewVerifier("node-a", func() []byte { return nil }, clk).Verify(tk, "staff"); reason(err) != ReasonNoKey {
		t.Errorf("without a key: %v", err)
	}

	c, err := v.Verify(tk, "STAFF")
	if err != nil {
		t.Fatalf("a valid ticket: %v", err)
	}
	if c.Account != (Account{ID: 7, Username: "olga", Name: "Olga"}) || c.Role != RoleHost || c.Meeting != "m1" {
		t.Errorf("claims: %+v", c)
	}
	if _, err := v.Verify(tk, "staff"); reason(err) != ReasonReplayed {
		t.Errorf("used twice: %v", err)
	}

	// The payload changed (a guest making itself host), signature kept.
	p64, _, _ := strings.Cut(strings.TrimPrefix(tk, Prefix), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(p64)
	fresh, _ := iss.Issue(Claims{Room: "staff", Node: "node-a", Role: RoleGuest, Account: Account{ID: 9, Username: "eve"}})
	fp64, fs64, _ := strings.Cut(strings.TrimPrefix(fresh, Prefix), ".")
	fpayload, _ := base64.RawURLEncoding.DecodeString(fp64)
	promoted := strings.Replace(string(fpayload), `"role":"guest"`, `"role":"host"`, 1)
	if _, err := v.Verify(Prefix+base64.RawURLEncoding.EncodeToString([]byte(promoted))+"."+fs64, "staff"); reason(err) != ReasonForged {
		t.Errorf("a promoted guest: %v", err)
	}
	// Another ticket's signature on this payload.
	if _, err := v.Verify(Prefix+p64+"."+fs64, "staff"); reason(err) != ReasonForged {
		t.Errorf("a borrowed signature: %v", err)
	}
	// Signed by a stranger's key.
	if _, err := v.Verify(resign(t, stranger, string(payload)), "staff"); reason(err) != ReasonForged {
		t.Errorf("signed by a stranger: %v", err)
	}

	// Life: valid until TTL+Skew, then expired.
	late, _ := iss.Issue(claims())
	clk.Set(start.Add(TTL + Skew))
	if _, err := v.Verify(late, "staff"); reason(err) != ReasonExpired {
		t.Errorf("after its life: %v", err)
	}
	clk.Set(start.Add(TTL + Skew - time.Second))
	if _, err := v.Verify(late, "staff"); err != nil {
		t.Errorf("within its life and the skew: %v", err)
	}
	// Issued in the future (beyond the skew), or before the node started.
	future, _ := NewIssuer(key, fakeclock.New(clk.Now().Add(Skew+2*time.Second)))
	tf, _ := future.Issue(claims())
	if _, err := v.Verify(tf, "staff"); reason(err) != ReasonNotYetValid {
		t.Errorf("from the future: %v", err)
	}
	old, _ := iss.Issue(claims())
	restarted := NewVerifier("node-a", func() []byte { return pub }, fakeclock.New(clk.Now().Add(2*time.Second)))
	if _, err := restarted.Verify(old, "staff"); reason(err) != ReasonNotYetValid {
		t.Errorf("issued before the node started: %v", err)
	}

	// Used ids are forgotten once their ticket is dead.
	clk.Set(start.Add(10 * time.Minute))
	tk2, _ := iss.Issue(claims())
	if _, err := v.Verify(tk2, "staff"); err != nil {
		t.Fatal(err)
	}
	if n := len(v.seen); n != 1 {
		t.Errorf("%d ids remembered, want only the live one", n)
	}
}

// TestParseRefuses: malformed tickets are refused before any signature
// check.
func TestParseRefuses(t *testing.T) {
	iss, _ := NewIssuer(newKey(t), nil)
	good, _ := iss.Issue(claims())
	p64, s64, _ := strings.Cut(strings.TrimPrefix(good, Prefix), ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	valid := `{"room":"staff","node":"node-a","account":{"id":7,"username":"olga"},"role":"host","iat":1,"exp":61,"jti":"AAAAAAAAAAAAAAAAAAAAAA"}`
	if _, _, _, err := Parse(Prefix + enc(valid) + "." + s64); err != nil {
		t.Fatalf("the reference payload: %v", err)
	}
	for name, text := range map[string]string{
		"empty":          "",
		"no prefix":      p64 + "." + s64,
		"other version":  "ct2." + p64 + "." + s64,
		"no signature":   Prefix + p64,
		"empty sig":      Prefix + p64 + ".",
		"padding":        Prefix + p64 + "=." + s64,
		"too long":       Prefix + p64 + "." + s64 + strings.Repeat("A", MaxLen),
		"not JSON":       Prefix + enc("hello") + "." + s64,
		"two objects":    Prefix + enc(valid+valid) + "." + s64,
		"unknown field":  Prefix + enc(strings.Replace(valid, `"role"`, `"admin":true,"role"`, 1)) + "." + s64,
		"other role":     Prefix + enc(strings.Replace(valid, `"host"`, `"admin"`, 1)) + "." + s64,
		"no account":     Prefix + enc(strings.Replace(valid, `"id":7`, `"id":0`, 1)) + "." + s64,
		"long life":      Prefix + enc(strings.Replace(valid, `"exp":61`, `"exp":3601`, 1)) + "." + s64,
		"dead at birth":  Prefix + enc(strings.Replace(valid, `"exp":61`, `"exp":1`, 1)) + "." + s64,
		"short id":       Prefix + enc(strings.Replace(valid, `AAAAAAAAAAAAAAAAAAAAAA`, `AAAA`, 1)) + "." + s64,
		"control char":   Prefix + enc(strings.Replace(valid, `"staff"`, `"st\u0007aff"`, 1)) + "." + s64,
		"no room":        Prefix + enc(strings.Replace(valid, `"staff"`, `""`, 1)) + "." + s64,
		"trailing bytes": Prefix + enc(valid+"x") + "." + s64,
	} {
		if _, _, _, err := Parse(text); reason(err) != ReasonMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLoadKey: the key is made once, sealed under the master key, and
// read back.
func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	box, err := secrets.New(make([]byte, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(KeyFile))
	k1, err := LoadKey(path, box)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKey(path, box)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := LoadKey(path, nil); !errors.Is(err, secrets.ErrLocked) {
		t.Errorf("without the master key: %v", err)
	}
	if !secrets.IsKeyFile(KeyFile) {
		t.Errorf("%s is not in secrets.KeyFiles", KeyFile)
	}
}

// FuzzParse: Parse never panics, and what it accepts is well formed and
// encodes back to the payload's claims.
func FuzzParse(f *testing.F) {
	iss, _ := NewIssuer(newKey(f), nil)
	good, _ := iss.Issue(claims())
	f.Add(good)
	f.Add(Prefix + "e30.AA")
	f.Add("ct1..")
	f.Fuzz(func(t *testing.T, text string) {
		c, payload, sig, err := Parse(text)
		if err != nil {
			if reason(err) != ReasonMalformed {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		if len(payload) == 0 || len(sig) == 0 || c.check() != nil {
			t.Fatalf("accepted %q as %+v", text, c)
		}
	})
}
