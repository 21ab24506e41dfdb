// Package settings holds the operator's runtime settings: what an
// administrator changes on the admin page, the API or the CLI while the
// server runs (audit storage, syslog servers, backup schedule and SFTP
// target, certificate alarms), as opposed to the start-up flags of
// package config.
//
// They live in <data>/settings.json, written atomically (and sealed under
// the master key when one is configured, since they hold the backup
// passphrase and SFTP credentials). The self-check (package selfcheck)
// protects the file: an edit made outside Conclave is undone.
package settings

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"

	"conclave/internal/secrets"
)

// FileName is the settings file's name in the data directory.
const FileName = "settings.json"

// Settings are the runtime settings. Fields tagged secret:"true" are never
// returned by the API nor shown in audit entries.
type Settings struct {
	Audit  Audit  `json:"audit"`
	Syslog Syslog `json:"syslog"`
	Backup Backup `json:"backup"`
	// CertAlarmDays are the days before a certificate's expiry at which
	// alarms are raised (minor at the first, major at the second).
	CertAlarmDays [2]int `json:"certAlarmDays"`
}

// Audit configures the audit files.
type Audit struct {
	// MaxFileMB is the size of one audit file, in MB (10).
	MaxFileMB int `json:"maxFileMB"`
	// MaxTotalMB bounds all the files, in MB (2048).
	MaxTotalMB int `json:"maxTotalMB"`
	// MinFreeMB raises the disk alarm under this much free space (0: 1 GiB
	// or 5 %).
	MinFreeMB int `json:"minFreeMB"`
}

// Syslog lists the syslog servers the audit log is forwarded to.
type Syslog struct {
	Servers []SyslogServer `json:"servers"`
}

// SyslogServer is one RFC 5425 (syslog over TLS) receiver.
type SyslogServer struct {
	// Name identifies the server in alarms and on the admin page.
	Name string `json:"name"`
	// Address is host:port (6514 is the registered port).
	Address string `json:"address"`
	// ServerName is checked in the server's certificate; empty means the
	// host of Address.
	ServerName string `json:"serverName,omitempty"`
	// CA is the PEM of the CA certificates that sign the server's
	// certificate; empty means the trusted CAs of the node (see pki).
	CA string `json:"ca,omitempty"`
	// ClientCert and ClientKey are a PEM certificate chain and key
	// presented when the server asks for one.
	ClientCert string `json:"clientCert,omitempty"`
	ClientKey  string `json:"clientKey,omitempty" secret:"true"`
}

// Backup configures the scheduled backups.
type Backup struct {
	// Daily turns the daily backup on.
	Daily bool `json:"daily"`
	// Hour is the hour of day (0-23, server's clock, UTC) of the daily
	// backup.
	Hour int `json:"hour"`
	// Keep is how many scheduled backups are kept, locally and on the
	// SFTP server (7).
	Keep int `json:"keep"`
	// Passphrase encrypts the scheduled backups.
	Passphrase string `json:"passphrase,omitempty" secret:"true"`
	// SFTP is where scheduled backups are uploaded; empty Address keeps
	// them local only.
	SFTP SFTP `json:"sftp"`
}

// SFTP is an SFTP upload target.
type SFTP struct {
	Address string `json:"address,omitempty"`
	User    string `json:"user,omitempty"`
	// HostKey is the server's public host key in authorized_keys format
	// ("ecdsa-sha2-nistp256 AAAA..."); connections to a server with
	// another key are refused. It is required: there is no "accept any".
	HostKey string `json:"hostKey,omitempty"`
	// Password or PrivateKey (OpenSSH PEM) log in.
	Password   string `json:"password,omitempty" secret:"true"`
	PrivateKey string `json:"privateKey,omitempty" secret:"true"`
	// Dir is the remote directory.
	Dir string `json:"dir,omitempty"`
}

// Defaults returns the settings of a new node.
func Defaults() Settings {
	return Settings{
		Audit:         Audit{MaxFileMB: 10, MaxTotalMB: 2048},
		Backup:        Backup{Hour: 2, Keep: 7},
		CertAlarmDays: [2]int{30, 7},
	}
}

// Validate reports the first invalid setting as a sentence.
func (s Settings) Validate() error {
	if s.Audit.MaxFileMB < 1 || s.Audit.MaxFileMB > 1024 {
		return errors.New("the audit file size must be between 1 and 1024 MB")
	}
	if s.Audit.MaxTotalMB < s.Audit.MaxFileMB || s.Audit.MaxTotalMB > 1<<20 {
		return errors.New("the audit total size must be at least one file and at most 1 TB")
	}
	if s.Audit.MinFreeMB < 0 {
		return errors.New("the free space alarm threshold cannot be negative")
	}
	names := map[string]bool{}
	for i, srv := range s.Syslog.Servers {
		if srv.Name == "" {
			return fmt.Errorf("syslog server %d has no name", i+1)
		}
		if names[srv.Name] {
			return fmt.Errorf("two syslog servers are named %q", srv.Name)
		}
		names[srv.Name] = true
		if _, _, err := net.SplitHostPort(srv.Address); err != nil {
			return fmt.Errorf("syslog server %q: the address must be host:port", srv.Name)
		}
		if (srv.ClientCert == "") != (srv.ClientKey == "") {
			return fmt.Errorf("syslog server %q: give the client certificate and its key together", srv.Name)
		}
	}
	if s.Backup.Hour < 0 || s.Backup.Hour > 23 {
		return errors.New("the backup hour must be between 0 and 23")
	}
	if s.Backup.Keep < 1 || s.Backup.Keep > 365 {
		return errors.New("the number of backups kept must be between 1 and 365")
	}
	if s.Backup.Daily && len(s.Backup.Passphrase) < 12 {
		return errors.New("daily backups need a passphrase of at least 12 characters")
	}
	if f := s.Backup.SFTP; f.Address != "" {
		if _, _, err := net.SplitHostPort(f.Address); err != nil {
			return errors.New("the SFTP address must be host:port")
		}
		if f.User == "" {
			return errors.New("the SFTP upload needs a user name")
		}
		if f.HostKey == "" {
			return errors.New("the SFTP upload needs the server's host key (ssh-keyscan prints it); connections are never accepted without checking it")
		}
		if f.Password == "" && f.PrivateKey == "" {
			return errors.New("the SFTP upload needs a password or a private key")
		}
	}
	if d := s.CertAlarmDays; d[0] < d[1] || d[1] < 1 {
		return errors.New("the certificate alarm days must be two numbers, the first at least the second, both at least 1")
	}
	return nil
}

// Store keeps the settings file of a data directory.
type Store struct {
	path string
	box  *secrets.Box

	mu  sync.Mutex
	cur Settings
	raw []byte // the file as last written or read
}

// Open reads <dataDir>/settings.json, writing the defaults when it does
// not exist.
func Open(dataDir string, box *secrets.Box) (*Store, error) {
	st := &Store{path: filepath.Join(dataDir, FileName), box: box}
	s, raw, err := Read(st.path, box)
	if errors.Is(err, fs.ErrNotExist) {
		if err := st.Replace(Defaults()); err != nil {
			return nil, err
		}
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	st.cur, st.raw = s, raw
	return st, nil
}

// Read reads and checks a settings file.
func Read(path string, box *secrets.Box) (Settings, []byte, error) {
	data, err := box.ReadFile(path)
	if err != nil {
		return Settings{}, nil, err
	}
	s := Defaults()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Settings{}, nil, fmt.Errorf("the settings file %s does not decode: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return Settings{}, nil, fmt.Errorf("the settings file %s: %w", path, err)
	}
	return s, data, nil
}

// Path is the settings file.
func (st *Store) Path() string { return st.path }

// Get returns the current settings.
func (st *Store) Get() Settings {
	st.mu.Lock()
	defer st.mu.Unlock()
	return clone(st.cur)
}

// Replace validates and stores s.
func (st *Store) Replace(s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.box.WriteFile(st.path, data, 0o600); err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	st.cur, st.raw = clone(s), data
	return nil
}

// Reload rereads the file (after the self-check restored it).
func (st *Store) Reload() error {
	s, raw, err := Read(st.path, st.box)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.cur, st.raw = s, raw
	st.mu.Unlock()
	return nil
}

func clone(s Settings) Settings {
	s.Syslog.Servers = append(make([]SyslogServer, 0, len(s.Syslog.Servers)), s.Syslog.Servers...)
	return s
}

// Redacted returns s with every secret field replaced by "[set]" when set.
func Redacted(s Settings) Settings {
	s = clone(s)
	redact(reflect.ValueOf(&s).Elem())
	return s
}

func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.String {
				if f.String() != "" {
					f.SetString("[set]")
				}
				continue
			}
			redact(f)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			redact(v.Index(i))
		}
	}
}

// Changes lists the dotted names of the settings that differ between a
// and b ("backup.sftp.address", "syslog.servers"), sorted: what an audit
// entry of a change records, without values.
func Changes(a, b Settings) []string {
	var out []string
	diff(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	sort.Strings(out)
	return out
}

func diff(a, b reflect.Value, prefix string, out *[]string) {
	if a.Kind() == reflect.Struct {
		t := a.Type()
		for i := 0; i < a.NumField(); i++ {
			name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
			if name == "" {
				name = t.Field(i).Name
			}
			if prefix != "" {
				name = prefix + "." + name
			}
			diff(a.Field(i), b.Field(i), name, out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, prefix)
	}
}

// Merge returns cur updated by patch, a JSON object of the settings'
// shape in which absent fields are kept and secret fields given as
// "[set]" keep their current value (so that a form that shows secrets as
// "[set]" can send them back).
func Merge(cur Settings, patch []byte) (Settings, error) {
	next := clone(cur)
	dec := json.NewDecoder(strings.NewReader(string(patch)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&next); err != nil {
		return cur, fmt.Errorf("the settings do not decode: %w", err)
	}
	keepSecrets(reflect.ValueOf(&next).Elem(), reflect.ValueOf(cur))
	return next, nil
}

func keepSecrets(next, cur reflect.Value) {
	switch next.Kind() {
	case reflect.Struct:
		t := next.Type()
		for i := 0; i < next.NumField(); i++ {
			f := next.Field(i)
			if t.Field(i).Tag.Get("secret") == "true" && f.Kind() == reflect.String {
				if f.String() == "[set]" {
					f.SetString(cur.Field(i).String())
				}
				continue
			}
			keepSecrets(f, cur.Field(i))
		}
	case reflect.Slice:
		// Elements are matched by their Name field when they have one
		// (syslog servers), so that reordering keeps each one's secrets.
		for i := 0; i < next.Len(); i++ {
			c := reflect.New(next.Type().Elem()).Elem()
			n := next.Index(i)
			if n.Kind() == reflect.Struct && n.FieldByName("Name").IsValid() {
				for j := 0; j < cur.Len(); j++ {
					if cur.Index(j).FieldByName("Name").String() == n.FieldByName("Name").String() {
						c = cur.Index(j)
					}
				}
			} else if i < cur.Len() {
				c = cur.Index(i)
			}
			keepSecrets(n, c)
		}
	}
}
