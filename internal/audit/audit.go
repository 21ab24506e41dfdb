// Package audit records security events (logins, failures, lockouts,
// password changes, break-in triggers, host actions) in a tamper-evident
// log.
//
// Producers speak to a Recorder; Log is the Recorder on the management
// store, where each record's SHA-256 hash chains the previous one (see
// store.AuditRecord). Verify walks the chain and reports the first record
// that no longer fits.
//
// Events never carry secrets: no passwords, PINs, tokens or keys. Log
// replaces the value of any detail whose key names one (see Record) as a
// second line of defence.
package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"conclave/internal/clock"
	"conclave/internal/store"
)

// Event is one security event.
type Event struct {
	// Time is when it happened; zero means when it is recorded.
	Time time.Time
	// Actor is who did it: a username, a participant's display name, or
	// ActorSystem (the default when empty).
	Actor string
	// Source is the client's network address, if any.
	Source string
	// Action says what happened, one of the Action constants or another
	// short lower-case word.
	Action string
	// Target is what it was done to: a username, a room alias, an address.
	Target string
	// Outcome is OutcomeSuccess, OutcomeFailure or OutcomeInfo.
	Outcome string
	// Details adds context as short key-value pairs.
	Details map[string]string
}

// ActorSystem is the Actor of events that no person caused.
const ActorSystem = "system"

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeInfo    = "info"
)

// Actions recorded by Conclave's packages.
const (
	ActionLogin              = "login"
	ActionLoginFailed        = "login-failed"
	ActionAccountLocked      = "account-locked"
	ActionAccountUnlocked    = "account-unlocked"
	ActionPasswordChanged    = "password-changed"
	ActionPasswordRefused    = "password-change-refused"
	ActionPasswordReset      = "password-reset"
	ActionSessionRefused     = "session-refused"
	ActionSessionsEnded      = "sessions-ended"
	ActionPINFailed          = "pin-failed"
	ActionRoomBlocked        = "room-blocked"
	ActionAddressQuarantined = "address-quarantined"
	ActionLobbyAdmitted      = "lobby-admitted"
	ActionLobbyDenied        = "lobby-denied"
	ActionParticipantRemoved = "participant-removed"
	ActionRoleChanged        = "role-changed"
	ActionRoomLocked         = "room-locked"
	ActionRoomUnlocked       = "room-unlocked"
	ActionConfigChanged      = "config-changed"
)

// Recorder receives security events. Implementations are safe for
// concurrent use.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// Discard is a Recorder that drops every event.
type Discard struct{}

// Record drops e.
func (Discard) Record(context.Context, Event) error { return nil }

// Limits on recorded text, so that a client cannot fill the log with one
// long username. Longer values are cut (at a character boundary) and marked
// with "...".
const (
	MaxFieldLen   = 256
	MaxDetailLen  = 1024
	MaxDetailKeys = 32
)

// Redacted replaces the value of a detail whose key names a secret.
const Redacted = "[redacted]"

// Log is the Recorder on the store's hash-chained audit log.
type Log struct {
	store store.Store
	clock clock.Clock
}

var _ Recorder = (*Log)(nil)

// NewLog returns a Log appending to st, dating events by clk (nil means
// clock.System).
func NewLog(st store.Store, clk clock.Clock) *Log {
	return &Log{store: st, clock: clock.Or(clk)}
}

// Record appends e to the log after filling defaults (Time, Actor
// ActorSystem, Outcome OutcomeInfo), cutting over-long text, and redacting
// details whose key contains the word password, passwd, pin, token, secret,
// passphrase or cookie (words are separated by '-', '_', '.' or a space).
func (l *Log) Record(ctx context.Context, e Event) error {
	r, err := toRecord(e, l.clock)
	if err != nil {
		return err
	}
	if _, err := l.store.AppendAudit(ctx, r); err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// toRecord checks and normalises e.
func toRecord(e Event, clk clock.Clock) (store.AuditRecord, error) {
	if e.Action == "" {
		return store.AuditRecord{}, errors.New("audit: the event has no action")
	}
	if e.Time.IsZero() {
		e.Time = clk.Now()
	}
	if e.Actor == "" {
		e.Actor = ActorSystem
	}
	switch e.Outcome {
	case "":
		e.Outcome = OutcomeInfo
	case OutcomeSuccess, OutcomeFailure, OutcomeInfo:
	default:
		return store.AuditRecord{}, fmt.Errorf("audit %s: unknown outcome %q", e.Action, e.Outcome)
	}
	var details map[string]string
	if len(e.Details) > 0 {
		details = make(map[string]string, len(e.Details))
		for k, v := range e.Details {
			if len(details) == MaxDetailKeys {
				details["truncated"] = "yes"
				break
			}
			k = cut(k, MaxFieldLen)
			if secretKey(k) {
				v = Redacted
			}
			details[k] = cut(v, MaxDetailLen)
		}
	}
	return store.AuditRecord{
		Time:    e.Time.UTC(),
		Actor:   cut(e.Actor, MaxFieldLen),
		Source:  cut(e.Source, MaxFieldLen),
		Action:  cut(e.Action, MaxFieldLen),
		Target:  cut(e.Target, MaxFieldLen),
		Outcome: e.Outcome,
		Details: details,
	}, nil
}

// secretWords are the words of a detail key that mark its value secret.
var secretWords = map[string]bool{
	"password": true, "passwd": true, "pw": true, "pin": true, "token": true,
	"secret": true, "passphrase": true, "cookie": true, "csrf": true,
}

// secretKey reports whether a detail key names a secret.
func secretKey(k string) bool {
	for _, w := range strings.FieldsFunc(strings.ToLower(k), func(r rune) bool {
		return r == '-' || r == '_' || r == '.' || r == ' '
	}) {
		if secretWords[w] {
			return true
		}
	}
	return false
}

// cut shortens s to at most n bytes at a character boundary, ending it
// with "..." when shortened.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - 3
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// List returns the records matching f; see store.AuditFilter.
func (l *Log) List(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	recs, err := l.store.ListAudit(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return recs, nil
}

// Lister reads audit records; store.Store is one.
type Lister interface {
	ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error)
}

// ChainError reports the first audit record that breaks the hash chain.
type ChainError struct {
	Seq    int64  // the record's sequence number
	Reason string // what is wrong with it
}

// Error describes the break.
func (e *ChainError) Error() string {
	return fmt.Sprintf("the audit log has been altered at record %d: %s", e.Seq, e.Reason)
}

// VerifyResult summarises a verified chain.
type VerifyResult struct {
	Records  int64  // records checked
	LastSeq  int64  // sequence number of the last record, 0 if none
	LastHash []byte // hash of the last record; keep it elsewhere to detect a rewrite
}

// verifyPage is how many records Verify reads at a time (a variable for
// tests).
var verifyPage = 1000

// Verify checks the whole audit log: sequence numbers run 1, 2, 3, ...
// without gaps, each record's PrevHash is its predecessor's Hash, and each
// Hash matches the record's content. It returns a *ChainError naming the
// first record that fails. Removing records at the end, or rewriting every
// hash after a change, is not visible from the log alone: compare
// VerifyResult.LastHash with a copy kept elsewhere.
func Verify(ctx context.Context, l Lister) (VerifyResult, error) {
	var res VerifyResult
	prev := store.AuditGenesis
	for {
		recs, err := l.ListAudit(ctx, store.AuditFilter{AfterSeq: res.LastSeq, Limit: verifyPage})
		if err != nil {
			return res, fmt.Errorf("verify audit log: %w", err)
		}
		for _, r := range recs {
			switch want := res.LastSeq + 1; {
			case r.Seq != want:
				return res, &ChainError{Seq: r.Seq, Reason: fmt.Sprintf("expected record %d next; records are missing", want)}
			case !bytes.Equal(r.PrevHash, prev):
				return res, &ChainError{Seq: r.Seq, Reason: "its link to the previous record does not match"}
			case !bytes.Equal(r.Hash, r.ComputeHash()):
				return res, &ChainError{Seq: r.Seq, Reason: "its content does not match its hash"}
			}
			prev = r.Hash
			res.Records++
			res.LastSeq = r.Seq
			res.LastHash = r.Hash
		}
		if len(recs) < verifyPage {
			return res, nil
		}
	}
}

type ctxKey int

const (
	sourceKey ctxKey = iota
	actorKey
)

// WithSource returns ctx carrying the client address source, for events
// recorded while serving the request.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey, source)
}

// SourceFrom returns the client address carried by ctx, or "".
func SourceFrom(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey).(string)
	return s
}

// WithActor returns ctx carrying the acting user's name, for events
// recorded while serving the request.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// ActorFrom returns the actor carried by ctx, or "".
func ActorFrom(ctx context.Context) string {
	s, _ := ctx.Value(actorKey).(string)
	return s
}
