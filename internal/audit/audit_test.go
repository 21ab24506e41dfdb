package audit

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"

	_ "modernc.org/sqlite"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// openLog returns a Log on a new store and the database file's path.
func openLog(t *testing.T) (*Log, *store.SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), store.DBFileName)
	st, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := fakeclock.New(t0)
	clk.Step(time.Second)
	return NewLog(st, clk), st, path
}

// rawExec changes the database behind the store's back, as an intruder
// with the file would.
func rawExec(t *testing.T, path, q string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func fill(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		err := l.Record(context.Background(), Event{Actor: "alice", Source: "192.0.2.1", Action: ActionLogin,
			Target: "alice", Outcome: OutcomeSuccess, Details: map[string]string{"n": strings.Repeat("x", i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyIntact(t *testing.T) {
	ctx := context.Background()
	l, st, _ := openLog(t)
	res, err := Verify(ctx, st)
	if err != nil || res.Records != 0 || res.LastSeq != 0 {
		t.Errorf("Verify(empty) = %+v, %v", res, err)
	}
	fill(t, l, 5)
	res, err = Verify(ctx, st)
	if err != nil || res.Records != 5 || res.LastSeq != 5 || len(res.LastHash) != 32 {
		t.Errorf("Verify = %+v, %v; want 5 records", res, err)
	}
}

func TestVerifyPages(t *testing.T) {
	defer func(n int) { verifyPage = n }(verifyPage)
	verifyPage = 3
	l, st, path := openLog(t)
	fill(t, l, 10)
	if res, err := Verify(context.Background(), st); err != nil || res.Records != 10 {
		t.Fatalf("Verify over pages = %+v, %v", res, err)
	}
	rawExec(t, path, `UPDATE audit_log SET actor = 'mallory' WHERE seq = 7`)
	var ce *ChainError
	if _, err := Verify(context.Background(), st); !errors.As(err, &ce) || ce.Seq != 7 {
		t.Errorf("Verify after tampering on page 3 = %v, want record 7", err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		q       string
		wantSeq int64
	}{
		{"target changed", `UPDATE audit_log SET target = 'bob' WHERE seq = 3`, 3},
		{"outcome changed", `UPDATE audit_log SET outcome = 'failure' WHERE seq = 2`, 2},
		{"time changed", `UPDATE audit_log SET time = time + 1 WHERE seq = 4`, 4},
		{"details changed", `UPDATE audit_log SET details = '{"n":"forged"}' WHERE seq = 3`, 3},
		{"details unreadable", `UPDATE audit_log SET details = 'garbage' WHERE seq = 3`, 3},
		{"row deleted", `DELETE FROM audit_log WHERE seq = 2`, 3},
		{"first row deleted", `DELETE FROM audit_log WHERE seq = 1`, 2},
		{"hash recomputed badly", `UPDATE audit_log SET hash = zeroblob(32) WHERE seq = 4`, 4},
		{"renumbered", `UPDATE audit_log SET seq = 9 WHERE seq = 5`, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, st, path := openLog(t)
			fill(t, l, 5)
			rawExec(t, path, tt.q)
			res, err := Verify(context.Background(), st)
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Seq != tt.wantSeq {
				t.Fatalf("Verify = %+v, %v; want a break at record %d", res, err, tt.wantSeq)
			}
			if res.LastSeq != tt.wantSeq-1 && tt.name != "renumbered" && !strings.Contains(tt.name, "deleted") {
				t.Errorf("LastSeq = %d, want %d", res.LastSeq, tt.wantSeq-1)
			}
			if !strings.Contains(err.Error(), "altered at record") {
				t.Errorf("error %q does not say what happened", err)
			}
		})
	}
}

func TestRecordNormalises(t *testing.T) {
	ctx := context.Background()
	l, st, _ := openLog(t)
	long := strings.Repeat("é", MaxFieldLen) // two bytes each
	err := l.Record(ctx, Event{Action: ActionPINFailed, Target: long, Details: map[string]string{
		"room":          "board",
		"pin":           "123456",
		"new_password":  "Secret-1234",
		"session-token": "abc",
		"CSRF.Token":    "abc",
		"spinner":       "not a secret",
		"mapping":       "not a secret",
	}})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("ListAudit = %v, %v", recs, err)
	}
	r := recs[0]
	if r.Actor != ActorSystem || r.Outcome != OutcomeInfo || !r.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("defaults not filled: %+v", r)
	}
	if len(r.Target) > MaxFieldLen || !strings.HasSuffix(r.Target, "...") || !strings.HasPrefix(r.Target, "éé") || strings.ContainsRune(r.Target, '\uFFFD') {
		t.Errorf("long target cut to %d bytes %q", len(r.Target), r.Target)
	}
	for k, want := range map[string]string{
		"room": "board", "pin": Redacted, "new_password": Redacted, "session-token": Redacted,
		"CSRF.Token": Redacted, "spinner": "not a secret", "mapping": "not a secret",
	} {
		if r.Details[k] != want {
			t.Errorf("detail %s = %q, want %q", k, r.Details[k], want)
		}
	}

	for _, e := range []Event{{}, {Action: "x", Outcome: "maybe"}} {
		if err := l.Record(ctx, e); err == nil {
			t.Errorf("Record(%+v) succeeded, want error", e)
		}
	}
	many := map[string]string{}
	for i := 0; i < 2*MaxDetailKeys; i++ {
		many[strings.Repeat("k", i+1)] = "v"
	}
	if err := l.Record(ctx, Event{Action: "x", Details: many}); err != nil {
		t.Fatal(err)
	}
	recs, _ = st.ListAudit(ctx, store.AuditFilter{Newest: true, Limit: 1})
	if n := len(recs[0].Details); n != MaxDetailKeys+1 || recs[0].Details["truncated"] != "yes" {
		t.Errorf("%d details kept, want %d and a truncation mark", n, MaxDetailKeys+1)
	}
}

func TestContextValues(t *testing.T) {
	ctx := WithActor(WithSource(context.Background(), "198.51.100.7"), "root")
	if SourceFrom(ctx) != "198.51.100.7" || ActorFrom(ctx) != "root" {
		t.Errorf("context values = %q, %q", SourceFrom(ctx), ActorFrom(ctx))
	}
	if SourceFrom(context.Background()) != "" || ActorFrom(context.Background()) != "" {
		t.Error("empty context carries values")
	}
}

func FuzzToRecord(f *testing.F) {
	f.Add("alice", "192.0.2.1", "login", "alice", "success", "reason", "bad")
	f.Add(strings.Repeat("é", 300), "", "x", "", "", "new-password", "Secret-1")
	f.Add("\xff\xfe", "\x00", "a", "b", "info", "", "")
	f.Fuzz(func(t *testing.T, actor, source, action, target, outcome, key, value string) {
		e := Event{Actor: actor, Source: source, Action: action, Target: target, Outcome: outcome,
			Details: map[string]string{key: value}}
		r, err := toRecord(e, fakeclock.New(t0))
		if err != nil {
			return
		}
		for _, s := range []string{r.Actor, r.Source, r.Action, r.Target} {
			if len(s) > MaxFieldLen {
				t.Fatalf("field of %d bytes kept", len(s))
			}
		}
		for k, v := range r.Details {
			if len(k) > MaxFieldLen || len(v) > MaxDetailLen {
				t.Fatalf("detail %d/%d bytes kept", len(k), len(v))
			}
			if secretKey(k) && v != Redacted {
				t.Fatalf("secret detail %q kept", k)
			}
		}
		// The encoding is unambiguous: the hash covers every field.
		r.PrevHash = store.AuditGenesis
		r2 := r
		r2.Target += "x"
		if string(r.ComputeHash()) == string(r2.ComputeHash()) {
			t.Fatal("changing the target keeps the hash")
		}
	})
}
