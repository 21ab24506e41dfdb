// Package pionlog routes Pion's logs into log/slog. Pion reports routine
// events (a closed pipe at hang-up, late packets of a track just removed)
// as errors, so its levels are shifted down: errors become errorLevel,
// warnings and information debug messages, debug and trace below debug.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory returns a Pion logger factory writing to log under a "pion"
// scope attribute; Pion's errors are logged at errorLevel.
func Factory(log *slog.Logger, errorLevel slog.Level) logging.LoggerFactory {
	return factory{log: log, errorLevel: errorLevel}
}

type factory struct {
	log        *slog.Logger
	errorLevel slog.Level
}

func (f factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{log: f.log.With("pion", scope), errorLevel: f.errorLevel}
}

type logger struct {
	log        *slog.Logger
	errorLevel slog.Level
}

func (l logger) logf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l logger) Trace(string)                      {}
func (l logger) Tracef(string, ...any)             {}
func (l logger) Debug(msg string)                  { l.logf(slog.LevelDebug-4, "%s", msg) }
func (l logger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug-4, format, args...) }
func (l logger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l logger) Warn(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Warnf(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l logger) Error(msg string)                  { l.logf(l.errorLevel, "%s", msg) }
func (l logger) Errorf(format string, args ...any) { l.logf(l.errorLevel, format, args...) }
