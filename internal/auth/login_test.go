package auth

import (
	"context"
	"errors"
	"testing"

	"conclave/internal/store"
)

func TestLogin(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	hash, err := cheapArgon2.Hash(goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := st.CreateUser(ctx, store.User{Username: "Alice", PasswordHash: hash, Role: store.RoleUser, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, store.User{Username: "off", PasswordHash: hash, Role: store.RoleUser, Enabled: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, store.User{Username: "nopw", Role: store.RoleUser, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, store.User{Username: "corrupt", PasswordHash: "$argon2id$junk", Role: store.RoleUser, Enabled: true}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, user, pw string
		wantErr        error
	}{
		{"ok", "Alice", goodPassword, nil},
		{"ok other case", "aLICE", goodPassword, nil},
		{"wrong password", "alice", goodPassword + "x", ErrBadCredentials},
		{"unknown user", "mallory", goodPassword, ErrBadCredentials},
		{"disabled", "off", goodPassword, ErrBadCredentials},
		{"no password set", "nopw", "", ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Login(ctx, st, tt.user, tt.pw)
			if tt.wantErr == nil {
				if err != nil || u.ID != alice.ID {
					t.Errorf("Login = %+v, %v; want alice", u, err)
				}
				return
			}
			if err != tt.wantErr {
				t.Errorf("Login error = %v, want exactly %v", err, tt.wantErr)
			}
		})
	}
	// A corrupt stored hash is an operational failure, not a bad password.
	if _, err := Login(ctx, st, "corrupt", goodPassword); err == nil || errors.Is(err, ErrBadCredentials) || !errors.Is(err, ErrMalformedHash) {
		t.Errorf("Login with a corrupt hash error = %v, want ErrMalformedHash", err)
	}
}

func TestDummyHashIsValid(t *testing.T) {
	p, _, _, err := parsePHC(dummyHash)
	if err != nil || p != DefaultArgon2 {
		t.Fatalf("dummy hash %q parses to %+v, %v; want DefaultArgon2", dummyHash, p, err)
	}
}
