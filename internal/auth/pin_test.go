package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPIN(t *testing.T) {
	tests := []struct {
		pin     string
		minLen  int
		mention string // "" when accepted
	}{
		{"123456", 0, ""},
		{"12345", 0, "at least 6"},
		{"1234", 4, ""},
		{"123", 4, "at least 4"},
		{"", 0, "at least 6"},
		{"12345a", 0, "only the digits"},
		{"１２３４５６", 0, "only the digits"}, // full-width digits
		{"123 456", 0, "only the digits"},
		{strings.Repeat("1", MaxPINLen), 0, ""},
		{strings.Repeat("1", MaxPINLen+1), 0, "at most 32"},
	}
	for _, tt := range tests {
		err := CheckPIN(tt.pin, tt.minLen)
		if tt.mention == "" {
			if err != nil {
				t.Errorf("CheckPIN(%q, %d) = %v", tt.pin, tt.minLen, err)
			}
			continue
		}
		var pe *PolicyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("CheckPIN(%q, %d) = %v, want mention of %q", tt.pin, tt.minLen, err, tt.mention)
		}
	}
}

func TestHashVerifyPIN(t *testing.T) {
	h, err := HashPIN("246810")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("HashPIN = %q, want PINArgon2 parameters", h)
	}
	for _, tt := range []struct {
		pin  string
		want bool
	}{{"246810", true}, {"246811", false}, {"", false}, {"0246810", false}} {
		if ok, err := VerifyPIN(h, tt.pin); err != nil || ok != tt.want {
			t.Errorf("VerifyPIN(%q) = %v, %v; want %v", tt.pin, ok, err, tt.want)
		}
	}
	if ok, err := VerifyPIN("", "246810"); ok || err != nil {
		t.Errorf("VerifyPIN without a hash = %v, %v; want false, nil", ok, err)
	}
	if _, err := VerifyPIN("$argon2id$junk", "1"); !errors.Is(err, ErrMalformedHash) {
		t.Errorf("VerifyPIN with a corrupt hash: %v", err)
	}
	for _, bad := range []string{"", "12ab56"} {
		if _, err := HashPIN(bad); err == nil {
			t.Errorf("HashPIN(%q) succeeded", bad)
		}
	}
	if p, _, _, err := parsePHC(dummyPINHash); err != nil || p != PINArgon2 {
		t.Errorf("dummy PIN hash parses to %+v, %v", p, err)
	}
}

func FuzzCheckPIN(f *testing.F) {
	for _, s := range []string{"123456", "", "12a456", "١٢٣٤٥٦", strings.Repeat("9", 40)} {
		f.Add(s, 6)
	}
	f.Fuzz(func(t *testing.T, pin string, minLen int) {
		err := CheckPIN(pin, minLen)
		if minLen < 1 {
			minLen = DefaultPINMinLen
		}
		valid := len(pin) >= minLen && len(pin) <= MaxPINLen
		for i := 0; i < len(pin); i++ {
			valid = valid && pin[i] >= '0' && pin[i] <= '9'
		}
		if (err == nil) != valid {
			t.Fatalf("CheckPIN(%q, %d) = %v, want valid %v", pin, minLen, err, valid)
		}
	})
}
