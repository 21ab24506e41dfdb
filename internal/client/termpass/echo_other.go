//go:build !linux

package termpass

import (
	"errors"
	"os"
)

// noEcho is only implemented on Linux; elsewhere pass secrets through the
// environment.
func noEcho(*os.File) (func(), error) {
	return nil, errors.New("reading a secret without echo is not supported on this system")
}
