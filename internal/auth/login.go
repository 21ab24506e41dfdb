package auth

import (
	"context"
	"errors"
	"fmt"

	"conclave/internal/store"
)

// ErrBadCredentials is the one answer to a failed login, whether the user is
// unknown, the password wrong or the account disabled.
var ErrBadCredentials = errors.New("the username or password is incorrect")

// dummyHash is verified when the user does not exist, so that a failed
// login takes about as long whether or not the username is known. It uses
// DefaultArgon2's costs; its salt and key are arbitrary.
var dummyHash = encodePHC(DefaultArgon2, make([]byte, DefaultArgon2.SaltLen), make([]byte, DefaultArgon2.KeyLen))

// Login checks a username (case-insensitive) and password against st and
// returns the account. Unknown users, wrong passwords and disabled accounts
// all give ErrBadCredentials; any other error is a failure of the store or a
// corrupt stored hash.
func Login(ctx context.Context, st store.Store, username, password string) (store.User, error) {
	u, err := st.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = VerifyPassword(dummyHash, password)
		return store.User{}, ErrBadCredentials
	}
	if err != nil {
		return store.User{}, fmt.Errorf("login: %w", err)
	}
	if u.PasswordHash == "" {
		_, _ = VerifyPassword(dummyHash, password)
		return store.User{}, ErrBadCredentials
	}
	ok, err := VerifyPassword(u.PasswordHash, password)
	if err != nil {
		return store.User{}, fmt.Errorf("login user %d: %w", u.ID, err)
	}
	if !ok || !u.Enabled {
		return store.User{}, ErrBadCredentials
	}
	return u, nil
}
