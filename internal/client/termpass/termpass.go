// Package termpass reads a secret (a password, a passphrase) from the
// terminal without echoing it.
package termpass

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNoTerminal is returned when there is no terminal to ask on.
var ErrNoTerminal = errors.New("no terminal to ask for it on")

// Read prints prompt on the terminal and reads one line with echo off.
func Read(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, ErrNoTerminal
	}
	defer tty.Close()
	restore, err := noEcho(tty)
	if err != nil {
		return nil, fmt.Errorf("turn off echo: %w", err)
	}
	fmt.Fprint(tty, prompt)
	line, err := bufio.NewReader(tty).ReadString('\n')
	restore() // ECHONL already echoed the newline
	if err != nil {
		return nil, fmt.Errorf("read from the terminal: %w", err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}
