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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"conclave/internal/alarm"
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
	ActionLogout             = "logout"
	ActionEnrolmentCreated   = "enrolment-created"
	ActionAccountEnrolled    = "account-enrolled"
	ActionUserCreated        = "user-created"
	ActionRoomCreated        = "room-created"
	ActionRoomUpdated        = "room-updated"
	ActionRoomDeleted        = "room-deleted"
	ActionMemberSet          = "room-member-set"
	ActionMemberRemoved      = "room-member-removed"
	ActionParticipantMuted   = "participant-muted"
	ActionGuestsMuted        = "guests-muted"
	ActionMeetingEnded       = "meeting-ended"
	ActionMeetingSettings    = "meeting-settings-changed"
	ActionAlarmRaised        = "alarm-raised"
	ActionAlarmCleared       = "alarm-cleared"
	ActionAuditPruned        = "audit-pruned"
	ActionAuditExported      = "audit-exported"
	ActionAuditVerified      = "audit-verified"
	ActionBackupCreated      = "backup-created"
	ActionBackupRestored     = "backup-restored"
	ActionBackupUploaded     = "backup-uploaded"
	ActionBackupFailed       = "backup-failed"
	ActionCSRCreated         = "certificate-request-created"
	ActionCertImported       = "certificate-imported"
	ActionCAImported         = "trusted-ca-imported"
	ActionCertReloaded       = "certificate-reloaded"
	ActionSelfCheckRestored  = "self-check-restored"
	ActionSelfCheckFailed    = "self-check-failed"
	ActionBinaryChanged      = "binary-changed"
	ActionServerStarted      = "server-started"
	ActionServerStopped      = "server-stopped"
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

// Log is the Recorder on the store's hash-chained audit log. Each record
// is sealed with the audit key (when the Log has one), then copied to the
// rotated audit files (when it has a directory) and the forwarders
// (syslog) are told.
type Log struct {
	store  store.Store
	clock  clock.Clock
	key    *Key
	cfg    LogConfig
	alarms *alarm.Center

	// mu serialises appends and the copy to the files, so that the files
	// hold the records in sequence order.
	mu        sync.Mutex
	files     *files
	sinks     []Sink
	observers []Observer
}

// Observer is told of each record this Log appends (metrics count them).
// It is called with the Log's lock held and must not record events.
type Observer interface {
	Appended(store.AuditRecord)
}

// AddObserver adds an observer.
func (l *Log) AddObserver(o Observer) {
	l.mu.Lock()
	l.observers = append(l.observers, o)
	l.mu.Unlock()
}

var _ Recorder = (*Log)(nil)

// Sink is told when new records are in the log (a syslog forwarder reads
// them from the store itself, from where it stopped).
type Sink interface {
	Notify()
}

// LogConfig configures a Log beyond its store and clock.
type LogConfig struct {
	// Key seals the records; nil chains them without a seal.
	Key *Key
	// Dir holds the rotated audit files; empty keeps no files.
	Dir string
	// MaxFileSize and MaxTotalSize bound the files (10 MB and 2 GB when
	// zero).
	MaxFileSize, MaxTotalSize int64
	// Alarms receives the disk and audit-storage alarms; nil raises none.
	Alarms *alarm.Center
	// FreeSpace reports the free and total bytes of the file system
	// holding path; nil uses statfs(2).
	FreeSpace func(path string) (free, total uint64, err error)
	// MinFree is the free space under which the disk alarm is raised:
	// 1 GiB or 5 % of the file system, whichever is smaller, when zero.
	MinFree uint64
	// Logger receives storage errors; nil discards them.
	Logger *slog.Logger
}

// NewLog returns a Log appending to st, dating events by clk (nil means
// clock.System), without seal nor files.
func NewLog(st store.Store, clk clock.Clock) *Log {
	l, _ := OpenLog(st, clk, LogConfig{})
	return l
}

// OpenLog returns a Log as cfg says, opening its files.
func OpenLog(st store.Store, clk clock.Clock, cfg LogConfig) (*Log, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = statFS
	}
	l := &Log{store: st, clock: clock.Or(clk), key: cfg.Key, cfg: cfg, alarms: cfg.Alarms}
	if cfg.Dir != "" {
		f, err := openFiles(cfg.Dir, cfg.MaxFileSize, cfg.MaxTotalSize)
		if err != nil {
			return nil, err
		}
		l.files = f
	}
	return l, nil
}

// AddSink adds a forwarder told of new records.
func (l *Log) AddSink(s Sink) {
	l.mu.Lock()
	l.sinks = append(l.sinks, s)
	l.mu.Unlock()
}

// Store is the store the log appends to.
func (l *Log) Store() store.Store { return l.store }

// Key is the log's seal key, nil if none.
func (l *Log) Key() *Key { return l.key }

// Dir is the directory of the audit files, "" if none.
func (l *Log) Dir() string { return l.cfg.Dir }

// Record appends e to the log after filling defaults (Time, Actor
// ActorSystem, Outcome OutcomeInfo), cutting over-long text, and redacting
// details whose key contains the word password, passwd, pin, token, secret,
// passphrase or cookie (words are separated by '-', '_', '.' or a space).
func (l *Log) Record(ctx context.Context, e Event) error {
	r, err := toRecord(e, l.clock)
	if err != nil {
		return err
	}
	if l.key != nil {
		r.Seal = l.key.MAC
	}
	l.mu.Lock()
	rec, err := l.store.AppendAudit(ctx, r)
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	for _, o := range l.observers {
		o.Appended(rec)
	}
	serr := l.shipLocked(ctx)
	l.mu.Unlock()
	l.storageAlarm(serr)
	return nil
}

// Sync copies to the files the records appended by other processes (the
// CLI) and makes the files durable; Run calls it periodically.
func (l *Log) Sync(ctx context.Context) error {
	l.mu.Lock()
	err := l.shipLocked(ctx)
	if l.files != nil {
		if ferr := l.files.flush(); ferr != nil && err == nil {
			err = ferr
		}
	}
	l.mu.Unlock()
	// Alarms are raised outside the lock: raising one records an event.
	l.storageAlarm(err)
	l.checkDisk()
	return err
}

// storageAlarm raises the audit-storage alarm after a failure to write
// the files, and clears it after a success.
func (l *Log) storageAlarm(err error) {
	if l.alarms == nil || l.cfg.Dir == "" {
		return
	}
	if err != nil {
		l.alarms.Raise(alarm.KindAuditStorage, l.cfg.Dir, alarm.Critical, "The audit files cannot be written: "+err.Error())
	} else {
		l.alarms.Clear(alarm.KindAuditStorage, l.cfg.Dir)
	}
}

// shipLocked copies new records to the files, drops from the database the
// records the files no longer keep, and tells the sinks.
func (l *Log) shipLocked(ctx context.Context) error {
	if l.files != nil {
		for {
			recs, err := l.store.ListAudit(ctx, store.AuditFilter{AfterSeq: l.files.lastSeq, Limit: 500})
			if err != nil {
				return l.storageFailed(fmt.Errorf("read new audit records: %w", err))
			}
			if len(recs) == 0 {
				break
			}
			keptFrom, err := l.files.write(recs)
			if err != nil {
				return l.storageFailed(err)
			}
			if keptFrom > 0 {
				if err := l.pruneLocked(ctx, keptFrom); err != nil {
					return l.storageFailed(err)
				}
			}
			if len(recs) < 500 {
				break
			}
		}
	}
	for _, s := range l.sinks {
		s.Notify()
	}
	return nil
}

// pruneLocked removes from the database the records before keptFrom (the
// files dropped them at the size cap) and records that it did, so that
// Verify can tell this pruning from someone deleting the oldest records.
func (l *Log) pruneLocked(ctx context.Context, keptFrom int64) error {
	n, err := l.store.DeleteAuditBefore(ctx, keptFrom)
	if err != nil {
		return err
	}
	r, err := toRecord(Event{Action: ActionAuditPruned, Outcome: OutcomeInfo, Details: map[string]string{
		"kept_from": strconv.FormatInt(keptFrom, 10), "removed": strconv.FormatInt(n, 10),
		"max_total_bytes": strconv.FormatInt(l.files.maxTotal, 10)}}, l.clock)
	if err != nil {
		return err
	}
	if l.key != nil {
		r.Seal = l.key.MAC
	}
	_, err = l.store.AppendAudit(ctx, r)
	return err
}

func (l *Log) storageFailed(err error) error {
	l.cfg.Logger.Error("audit storage failed", "err", err)
	return err
}

// checkDisk raises or clears the disk alarm for the files' file system.
func (l *Log) checkDisk() {
	if l.alarms == nil || l.cfg.Dir == "" {
		return
	}
	free, total, err := l.cfg.FreeSpace(l.cfg.Dir)
	if err != nil {
		l.cfg.Logger.Warn("free space unknown", "dir", l.cfg.Dir, "err", err)
		return
	}
	l.mu.Lock()
	min := l.cfg.MinFree
	l.mu.Unlock()
	if min == 0 {
		min = 1 << 30
		if total/20 < min {
			min = total / 20
		}
	}
	l.alarms.Set(free < min, alarm.KindDisk, l.cfg.Dir, alarm.Major,
		fmt.Sprintf("Only %s free on the file system of %s (alarm under %s); the audit files need room.", humanBytes(free), l.cfg.Dir, humanBytes(min)))
}

// Run syncs the files every interval of real time until ctx ends (a
// flush, not a rule: it does not follow an injected clock).
func (l *Log) Run(ctx context.Context, interval time.Duration) {
	l.Sync(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Sync(ctx)
		}
	}
}

// Close flushes and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files == nil {
		return nil
	}
	err := l.files.flush()
	return errors.Join(err, l.files.close())
}

// SetLimits changes the files' sizes and the disk alarm's threshold while
// the log runs (a settings change); zero sizes mean the defaults. The cap
// applies at the next rotation.
func (l *Log) SetLimits(maxFile, maxTotal int64, minFree uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg.MinFree = minFree
	if l.files == nil {
		return
	}
	if maxFile <= 0 {
		maxFile = DefaultMaxFileSize
	}
	if maxTotal <= 0 {
		maxTotal = DefaultMaxTotalSize
	}
	l.files.maxFile, l.files.maxTotal = maxFile, max(maxTotal, maxFile)
}

// BytesUsed is the size of the audit files.
func (l *Log) BytesUsed() int64 {
	if l.cfg.Dir == "" {
		return 0
	}
	return bytesUsed(l.cfg.Dir)
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
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
