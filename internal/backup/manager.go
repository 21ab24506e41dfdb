package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/audit"
	"conclave/internal/clock"
	"conclave/internal/settings"
)

// Dir is the local backups' directory inside the data directory.
const Dir = "backups"

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Source describes the node to back up (Now is filled in).
	Source Source
	// Settings returns the current backup settings.
	Settings func() settings.Backup
	// Clock drives the daily schedule; nil is the system clock.
	Clock clock.Clock
	// Alarms receives the backup alarm; nil raises none.
	Alarms *alarm.Center
	// Audit records backups; nil records nothing.
	Audit audit.Recorder
	// Logger; nil discards.
	Logger *slog.Logger
}

// Manager makes backups on demand and on the daily schedule, keeps the
// newest N locally and uploads scheduled ones over SFTP.
type Manager struct {
	cfg ManagerConfig
	dir string

	mu      sync.Mutex // one backup at a time
	sched   sync.Mutex
	stop    func() bool
	next    time.Time
	last    Result
	running bool
}

// Result is the outcome of the last scheduled backup.
type Result struct {
	Name     string    `json:"name,omitempty"`
	Time     time.Time `json:"time,omitzero"`
	Uploaded bool      `json:"uploaded"`
	Error    string    `json:"error,omitempty"`
}

// Info describes a local backup.
type Info struct {
	Name string    `json:"name"`
	Size int64     `json:"size"`
	Time time.Time `json:"time"`
}

// NewManager returns a manager keeping backups in <data>/backups.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Audit == nil {
		cfg.Audit = audit.Discard{}
	}
	m := &Manager{cfg: cfg, dir: filepath.Join(cfg.Source.DataDir, Dir)}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("backups: %w", err)
	}
	return m, nil
}

// Create makes a backup in the local directory and returns its name.
func (m *Manager) Create(ctx context.Context, passphrase string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.createLocked(ctx, passphrase)
}

func (m *Manager) createLocked(ctx context.Context, passphrase string) (Info, error) {
	src := m.cfg.Source
	src.Now = m.cfg.Clock.Now()
	name := FileName(src.Now)
	path := filepath.Join(m.dir, name)
	if _, err := os.Stat(path); err == nil {
		// Two backups in the same second: wait for the name to be free.
		return Info{}, fmt.Errorf("a backup named %s already exists; try again in a second", name)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	_, err = Create(ctx, f, passphrase, src)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return Info{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: name, Size: st.Size(), Time: src.Now.UTC()}, nil
}

// List returns the local backups, newest first.
func (m *Manager) List() ([]Info, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		if !IsBackupName(e.Name()) {
			continue
		}
		st, err := e.Info()
		if err != nil {
			continue
		}
		t, _ := time.Parse("20060102T150405Z", e.Name()[len("conclave-backup-"):len(e.Name())-len(".cbk")])
		out = append(out, Info{Name: e.Name(), Size: st.Size(), Time: t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name > out[j].Name })
	return out, nil
}

// Path returns the path of the local backup name, refusing names that
// are not backups.
func (m *Manager) Path(name string) (string, error) {
	if !IsBackupName(name) {
		return "", fmt.Errorf("%q is not the name of a backup", name)
	}
	p := filepath.Join(m.dir, name)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("no backup is named %s", name)
		}
		return "", err
	}
	return p, nil
}

// prune removes the oldest local backups beyond keep.
func (m *Manager) prune(keep int) error {
	list, err := m.List()
	if err != nil {
		return err
	}
	for i := keep; i < len(list); i++ {
		if err := os.Remove(filepath.Join(m.dir, list[i].Name)); err != nil {
			return err
		}
	}
	return nil
}

// RunScheduled makes one scheduled backup now: create, keep the newest
// N locally, upload over SFTP when configured (keeping N there too). It
// raises the backup alarm on failure and clears it on success.
func (m *Manager) RunScheduled(ctx context.Context) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.cfg.Settings()
	res := Result{Time: m.cfg.Clock.Now().UTC()}
	fail := func(stage string, err error) Result {
		res.Error = stage + ": " + err.Error()
		m.cfg.Logger.Error("scheduled backup failed", "stage", stage, "err", err)
		m.record(ctx, audit.ActionBackupFailed, audit.OutcomeFailure, res.Name, map[string]string{"stage": stage, "error": err.Error()})
		if m.cfg.Alarms != nil {
			m.cfg.Alarms.Raise(alarm.KindBackup, "scheduled", alarm.Major, "The scheduled backup failed ("+res.Error+").")
		}
		m.last = res
		return res
	}
	info, err := m.createLocked(ctx, set.Passphrase)
	if err != nil {
		return fail("create", err)
	}
	res.Name = info.Name
	m.record(ctx, audit.ActionBackupCreated, audit.OutcomeSuccess, info.Name, map[string]string{"size": strconv.FormatInt(info.Size, 10), "trigger": "schedule"})
	if err := m.prune(set.Keep); err != nil {
		return fail("prune", err)
	}
	if set.SFTP.Address != "" {
		t := SFTPTarget{Address: set.SFTP.Address, User: set.SFTP.User, Password: set.SFTP.Password,
			PrivateKey: []byte(set.SFTP.PrivateKey), HostKey: set.SFTP.HostKey, Dir: set.SFTP.Dir}
		f, err := os.Open(filepath.Join(m.dir, info.Name))
		if err != nil {
			return fail("upload", err)
		}
		err = t.Upload(info.Name, f, set.Keep)
		f.Close()
		if err != nil {
			return fail("upload", err)
		}
		res.Uploaded = true
		m.record(ctx, audit.ActionBackupUploaded, audit.OutcomeSuccess, info.Name, map[string]string{"server": set.SFTP.Address, "dir": set.SFTP.Dir})
	}
	if m.cfg.Alarms != nil {
		m.cfg.Alarms.Clear(alarm.KindBackup, "scheduled")
	}
	m.last = res
	return res
}

func (m *Manager) record(ctx context.Context, action, outcome, target string, details map[string]string) {
	if err := m.cfg.Audit.Record(ctx, audit.Event{Action: action, Outcome: outcome, Target: target, Details: details}); err != nil {
		m.cfg.Logger.Error("audit record failed", "action", action, "err", err)
	}
}

// Last returns the outcome of the last scheduled backup and when the next
// is due (zero when the schedule is off).
func (m *Manager) Last() (Result, time.Time) {
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	m.sched.Lock()
	defer m.sched.Unlock()
	return last, m.next
}

// NextRun returns the first time at hour:00 UTC after now.
func NextRun(now time.Time, hour int) time.Time {
	now = now.UTC()
	t := time.Date(now.Year(), now.Month(), now.Day(), hour, 0, 0, 0, time.UTC)
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

// Schedule arms (or re-arms, after a settings change) the daily backup
// on the clock; ctx bounds the backups it starts. Stop disarms it.
func (m *Manager) Schedule(ctx context.Context) {
	m.sched.Lock()
	defer m.sched.Unlock()
	if m.stop != nil {
		m.stop()
		m.stop = nil
	}
	m.next = time.Time{}
	set := m.cfg.Settings()
	if !set.Daily || ctx.Err() != nil {
		return
	}
	now := m.cfg.Clock.Now()
	m.next = NextRun(now, set.Hour)
	m.stop = m.cfg.Clock.AfterFunc(m.next.Sub(now), func() {
		m.RunScheduled(ctx)
		m.Schedule(ctx)
	})
}

// Stop disarms the schedule.
func (m *Manager) Stop() {
	m.sched.Lock()
	defer m.sched.Unlock()
	if m.stop != nil {
		m.stop()
		m.stop = nil
	}
}
