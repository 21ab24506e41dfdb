package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashPasswordDefault(t *testing.T) {
	h, err := HashPassword(goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") || !phcRE.MatchString(h) {
		t.Fatalf("HashPassword = %q, not the expected PHC form", h)
	}
	ok, err := VerifyPassword(h, goodPassword)
	if err != nil || !ok {
		t.Fatalf("VerifyPassword(right) = %v, %v", ok, err)
	}
	if NeedsRehash(h, DefaultArgon2) {
		t.Error("NeedsRehash with the same parameters = true")
	}
}

func TestHashVerify(t *testing.T) {
	h1, err := cheapArgon2.Hash("secret")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := cheapArgon2.Hash("secret")
	if h1 == h2 {
		t.Error("two hashes of one password are equal; the salt is not random")
	}
	if !phcRE.MatchString(h1) {
		t.Errorf("hash %q is not in PHC form", h1)
	}
	tests := []struct {
		pw   string
		want bool
	}{
		{"secret", true},
		{"Secret", false},
		{"secret ", false},
		{"", false},
	}
	for _, tt := range tests {
		got, err := VerifyPassword(h1, tt.pw)
		if err != nil || got != tt.want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", tt.pw, got, err, tt.want)
		}
	}
	if !NeedsRehash(h1, DefaultArgon2) || NeedsRehash(h1, cheapArgon2) || !NeedsRehash("garbage", cheapArgon2) {
		t.Error("NeedsRehash gives wrong answers")
	}
}

func TestHashRejectsBadParams(t *testing.T) {
	for _, p := range []Argon2Params{
		{},
		{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 64, Time: 11, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 64, Time: 1, Threads: 17, SaltLen: 16, KeyLen: 32},
		{Memory: MaxArgon2Memory + 1, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 64, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32},
		{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 8},
	} {
		if _, err := p.Hash("x"); err == nil {
			t.Errorf("Hash with %+v succeeded, want error", p)
		}
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	const salt = "c29tZXNhbHRzb21lc2FsdA"                     // 16 bytes
	const key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" // 32 bytes
	tests := []struct {
		name, hash string
	}{
		{"empty", ""},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"old version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{"no version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key},
		{"param order", "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key},
		{"leading zero", "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + key},
		{"sign", "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + key},
		{"memory too big", "$argon2id$v=19$m=1048577,t=1,p=1$" + salt + "$" + key},
		{"memory overflow", "$argon2id$v=19$m=99999999999,t=1,p=1$" + salt + "$" + key},
		{"time too big", "$argon2id$v=19$m=64,t=11,p=1$" + salt + "$" + key},
		{"time zero", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key},
		{"threads too big", "$argon2id$v=19$m=1024,t=1,p=17$" + salt + "$" + key},
		{"memory below 8p", "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key},
		{"padded salt", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key},
		{"url base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + strings.Repeat("_", 43)},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$AAAA$" + key},
		{"short key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA"},
		{"extra field", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$"},
		{"newline in key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:21] + "\n" + key[21:]},
		{"carriage return in salt", "$argon2id$v=19$m=64,t=1,p=1$\r" + salt + "$" + key},
		{"no leading dollar", "argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.hash, "pw")
			if ok || !errors.Is(err, ErrMalformedHash) {
				t.Errorf("VerifyPassword = %v, %v; want ErrMalformedHash", ok, err)
			}
		})
	}
}

func TestCheckPasswordPolicy(t *testing.T) {
	tests := []struct {
		pw      string
		ok      bool
		mention string // a word the error must contain
	}{
		{goodPassword, true, ""},
		{"Äbcdefghijk1!", true, ""},
		{"correct horse battery staple", false, "upper-case"},
		{"Sh0rt!", false, "at least 12"},
		{"alllowercase1!", false, "upper-case"},
		{"ALLUPPERCASE1!", false, "lower-case"},
		{"NoDigitsHere!!", false, "digit"},
		{"NoSpecials1234", false, "special"},
		{"abcdefghijklmnop", false, "an upper-case letter, a digit and a special character"},
		{strings.Repeat("Aa1!", 65), false, "at most 256"},
		{"Abcdefghijk1\xff", false, "UTF-8"},
	}
	for _, tt := range tests {
		err := CheckPasswordPolicy(tt.pw)
		if tt.ok {
			if err != nil {
				t.Errorf("CheckPasswordPolicy(%q) = %v, want nil", tt.pw, err)
			}
			continue
		}
		var pe *PolicyError
		if !errors.As(err, &pe) {
			t.Errorf("CheckPasswordPolicy(%q) = %v, want a *PolicyError", tt.pw, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("CheckPasswordPolicy(%q) = %q, want it to mention %q", tt.pw, err, tt.mention)
		}
	}
}

func FuzzParsePHC(f *testing.F) {
	h, err := cheapArgon2.Hash("seed")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h)
	f.Add("$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=4294967295,t=4294967295,p=255$AAAA$AAAA")
	f.Add("$argon2i$v=19$m=64,t=1,p=1$$")
	f.Add("")
	f.Add("$argon2id$v=19$m=17,t=1,p=1$00000000000$000000000000000000000\nA")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("parsePHC error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		if p.check() != nil {
			t.Fatalf("parsePHC accepted out-of-bounds parameters %+v", p)
		}
		if got := encodePHC(p, salt, key); got != s {
			t.Fatalf("parsePHC(%q) re-encodes to %q", s, got)
		}
	})
}
