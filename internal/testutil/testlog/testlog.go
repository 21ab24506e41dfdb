// Package testlog sends logs to the test's own log (t.Log), so that they
// show with the test that wrote them, and only when it fails or runs
// with -v.
package testlog

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// Writer returns an io.Writer whose every Write is one t.Log line.
func Writer(t testing.TB) io.Writer { return writer{t} }

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger returns a text logger of records at level and above into t's
// log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(Writer(t), &slog.HandlerOptions{Level: level}))
}
