package settings

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/secrets"
)

func TestMergeRedactChanges(t *testing.T) {
	cur := Defaults()
	cur.Backup.Passphrase = "old passphrase!"
	cur.Syslog.Servers = []SyslogServer{{Name: "a", Address: "a:6514", ClientCert: "C", ClientKey: "KA"}, {Name: "b", Address: "b:6514", ClientCert: "C", ClientKey: "KB"}}
	red := Redacted(cur)
	if red.Backup.Passphrase != "[set]" || red.Syslog.Servers[0].ClientKey != "[set]" || cur.Syslog.Servers[0].ClientKey != "KA" {
		t.Fatalf("redacted %+v (original %+v)", red, cur)
	}
	// The form sends back what it read, reordered, with one change.
	next, err := Merge(cur, []byte(`{"backup":{"passphrase":"[set]","keep":3},"syslog":{"servers":[
		{"name":"b","address":"b:6514","clientCert":"C","clientKey":"[set]"},{"name":"a","address":"a:6515","clientCert":"C","clientKey":"[set]"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if next.Backup.Passphrase != "old passphrase!" || next.Syslog.Servers[0].ClientKey != "KB" || next.Syslog.Servers[1].ClientKey != "KA" {
		t.Fatalf("secrets not kept: %+v", next)
	}
	if got := strings.Join(Changes(cur, next), " "); got != "backup.keep syslog.servers" {
		t.Fatalf("changes %q", got)
	}
	if _, err := Merge(cur, []byte(`{"nope":1}`)); err == nil {
		t.Fatal("unknown field accepted")
	}
	bad := next
	bad.Backup.SFTP = SFTP{Address: "h:22", User: "u", Password: "p"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("SFTP without a host key: %v", err)
	}
}

func TestStoreSealed(t *testing.T) {
	dir := t.TempDir()
	box, _ := secrets.New([]byte(strings.Repeat("k", 32)))
	st, err := Open(dir, box)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Get()
	s.Backup.Passphrase = "a passphrase that is long"
	if err := st.Replace(s); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, FileName))
	if strings.Contains(string(raw), "passphrase") {
		t.Fatal("settings written in the clear under a master key")
	}
	st2, err := Open(dir, box)
	if err != nil || st2.Get().Backup.Passphrase != "a passphrase that is long" {
		t.Fatalf("reopen: %v", err)
	}
	s.Audit.MaxFileMB = 0
	if err := st.Replace(s); err == nil {
		t.Fatal("invalid settings stored")
	}
}
