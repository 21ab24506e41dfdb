package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/alarm"
	"conclave/internal/store"
	"conclave/internal/testutil/fakeclock"
)

type sealedLog struct {
	log    *Log
	st     *store.SQLite
	dbPath string
	dir    string
	key    *Key
	alarms *alarm.Center
	free   uint64
}

func openSealed(t *testing.T, maxFile, maxTotal int64) *sealedLog {
	t.Helper()
	d := t.TempDir()
	sl := &sealedLog{dbPath: filepath.Join(d, store.DBFileName), dir: filepath.Join(d, "audit"), free: 100 << 30}
	st, err := store.OpenSQLite(sl.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sl.st = st
	sl.key, err = LoadKey(filepath.Join(sl.dir, KeyFile), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	clk := fakeclock.New(t0)
	clk.Step(time.Second)
	sl.alarms = alarm.New(clk)
	sl.log, err = OpenLog(st, clk, LogConfig{Key: sl.key, Dir: sl.dir, MaxFileSize: maxFile, MaxTotalSize: maxTotal,
		Alarms: sl.alarms, FreeSpace: func(string) (uint64, uint64, error) { return sl.free, 200 << 30, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sl.log.Close() })
	return sl
}

func (sl *sealedLog) verify() (VerifyResult, error) {
	return VerifyLog(context.Background(), sl.st, VerifyOptions{Key: sl.key, Dir: sl.dir})
}

// Someone who can write the database but does not have the audit key
// rewrites a record and recomputes every later hash: the plain chain
// still verifies, the seals do not.
func TestSealDetectsRewrittenHistory(t *testing.T) {
	sl := openSealed(t, 0, 0)
	fill(t, sl.log, 5)
	if res, err := sl.verify(); err != nil || res.Records != 5 || res.FileRecords != 5 {
		t.Fatalf("intact log: %+v, %v", res, err)
	}
	sl.log.Close()

	db, err := sql.Open("sqlite", sl.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	recs, err := sl.st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	prev := store.AuditGenesis
	for _, r := range recs {
		r.PrevHash = prev
		r.Hash = r.ComputeHash()
		if _, err := db.Exec(`UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?`, r.PrevHash, r.Hash, r.Seq); err != nil {
			t.Fatal(err)
		}
		prev = r.Hash
	}
	if _, err := Verify(context.Background(), sl.st); err != nil {
		t.Fatalf("the unkeyed chain should still hold after a full recompute: %v", err)
	}
	_, err = VerifyLog(context.Background(), sl.st, VerifyOptions{Key: sl.key})
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Seq != 2 || !strings.Contains(ce.Reason, "seal") {
		t.Fatalf("VerifyLog with the key = %v, want a seal failure at record 2", err)
	}
	// Without the key, the copy in the audit files still disagrees.
	_, err = VerifyLog(context.Background(), sl.st, VerifyOptions{Dir: sl.dir})
	if !errors.As(err, &ce) || ce.Seq != 2 {
		t.Fatalf("VerifyLog against the files = %v, want a disagreement at record 2", err)
	}
}

// Deleting the newest records from the database is seen from the files;
// deleting the oldest is seen from the chain's start.
func TestVerifyDetectsDeletedRecords(t *testing.T) {
	for _, tc := range []struct {
		name, q string
		seq     int64
	}{
		{"newest deleted", `DELETE FROM audit_log WHERE seq >= 4`, 4},
		{"oldest deleted", `DELETE FROM audit_log WHERE seq <= 2`, 3},
		{"unsealed appended", `INSERT INTO audit_log (seq, time, actor, source, action, target, outcome, details, prev_hash, hash)
			SELECT 6, time, actor, source, action, target, outcome, details, hash, hash FROM audit_log WHERE seq = 5`, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sl := openSealed(t, 0, 0)
			fill(t, sl.log, 5)
			rawExec(t, sl.dbPath, tc.q)
			_, err := sl.verify()
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Seq != tc.seq {
				t.Fatalf("VerifyLog = %v, want a break at record %d", err, tc.seq)
			}
		})
	}
}

// Small files rotate; at the total cap the oldest go, the database drops
// what they held, records that it did, and the log still verifies.
func TestRotationAndCap(t *testing.T) {
	const maxFile, maxTotal = 2000, 8000
	sl := openSealed(t, maxFile, maxTotal)
	fill(t, sl.log, 10)
	names, _ := Files(sl.dir)
	if len(names) < 2 {
		t.Fatalf("after 10 records of ~300 bytes, files %v: want rotation at 2000 bytes", names)
	}
	for i := 0; i < 60; i++ {
		fill(t, sl.log, 1)
	}
	names, _ = Files(sl.dir)
	var total int64
	for _, n := range names {
		st, err := os.Stat(filepath.Join(sl.dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if n != currentFile && st.Size() > maxFile {
			t.Errorf("%s has %d bytes, more than %d", n, st.Size(), maxFile)
		}
		total += st.Size()
	}
	if total > maxTotal {
		t.Fatalf("files hold %d bytes, more than the cap %d: %v", total, maxTotal, names)
	}
	if names[0] == "audit-00000000000000000001.log" {
		t.Fatalf("the oldest file was not dropped: %v", names)
	}
	res, err := sl.verify()
	if err != nil {
		t.Fatalf("verify after pruning: %v", err)
	}
	if res.FirstSeq <= 1 {
		t.Fatalf("the database kept record %d, which the files dropped", res.FirstSeq)
	}
	pr, _ := sl.st.ListAudit(context.Background(), store.AuditFilter{Action: ActionAuditPruned})
	if len(pr) == 0 {
		t.Fatal("no audit-pruned record")
	}
	// Deleting one more of the oldest records is not mistaken for pruning.
	rawExec(t, sl.dbPath, `DELETE FROM audit_log WHERE seq = ?`, res.FirstSeq)
	if _, err := sl.verify(); err == nil {
		t.Fatal("deleting the oldest kept record went unnoticed")
	}
}

// The disk alarm follows the free space; a write error raises the storage
// alarm.
func TestDiskAlarm(t *testing.T) {
	sl := openSealed(t, 0, 0)
	ctx := context.Background()
	sl.free = 10 << 20
	sl.log.Sync(ctx)
	if !sl.alarms.IsActive(alarm.KindDisk, sl.dir) {
		t.Fatalf("10 MiB free: alarms %v, want the disk alarm", sl.alarms.Active())
	}
	sl.free = 50 << 30
	sl.log.Sync(ctx)
	if sl.alarms.IsActive(alarm.KindDisk, sl.dir) {
		t.Fatal("the disk alarm stayed after space came back")
	}
}

// Records appended by another process (the CLI) reach the files at the
// next Sync, in order.
func TestSyncPicksUpOtherWriters(t *testing.T) {
	sl := openSealed(t, 0, 0)
	fill(t, sl.log, 2)
	other, err := OpenLog(sl.st, nil, LogConfig{Key: sl.key})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, other, 3)
	if err := sl.log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := sl.verify()
	if err != nil || res.FileRecords != 5 {
		t.Fatalf("verify = %+v, %v; want 5 records in the files", res, err)
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", KeyFile)
	if _, err := LoadKey(path, nil, false); err == nil {
		t.Fatal("a missing key loaded without create")
	}
	k1, err := LoadKey(path, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKey(path, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("x"))
	if !k2.Check(h[:], k1.MAC(h[:])) {
		t.Fatal("the reloaded key does not check its own seal")
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadKey(path, nil, false); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged key: %v", err)
	}
}

// FuzzScanFile feeds arbitrary bytes as an audit file (they are read back
// by verify and at start): errors, never a panic.
func FuzzScanFile(f *testing.F) {
	f.Add([]byte(`{"seq":1,"time":"2030-01-02T03:04:05Z","actor":"a","source":"","action":"login","target":"","outcome":"info","prevHash":"00","hash":"11"}` + "\n"))
	f.Add([]byte("{\"seq\":\n"))
	f.Add([]byte("not json\npartial"))
	f.Fuzz(func(t *testing.T, data []byte) {
		scanFile(bytes.NewReader(data), func(r FileRecord) error {
			_, err := r.Record()
			_ = err
			return nil
		})
	})
}

// BenchmarkRecordSealed appends sealed records copied to the audit files:
// the cost of one audited action.
func BenchmarkRecordSealed(b *testing.B) {
	d := b.TempDir()
	st, err := store.OpenSQLite(filepath.Join(d, store.DBFileName))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	key, _ := LoadKey(filepath.Join(d, "audit", KeyFile), nil, true)
	l, err := OpenLog(st, nil, LogConfig{Key: key, Dir: filepath.Join(d, "audit")})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Record(ctx, Event{Actor: "alice", Source: "192.0.2.1", Action: ActionLogin, Target: "alice", Outcome: OutcomeSuccess,
			Details: map[string]string{"method": "password"}})
	}
}

// A settings change applies to the running log: a smaller file size
// rotates at once, a higher threshold raises the disk alarm.
func TestSetLimits(t *testing.T) {
	sl := openSealed(t, 0, 0)
	fill(t, sl.log, 5)
	if names, _ := Files(sl.dir); len(names) != 1 {
		t.Fatalf("files %v with 10 MB files", names)
	}
	sl.log.SetLimits(600, 100000, 200<<30)
	fill(t, sl.log, 5)
	if names, _ := Files(sl.dir); len(names) < 2 {
		t.Fatalf("files %v after the file size went down to 600 bytes", names)
	}
	sl.log.Sync(context.Background())
	if !sl.alarms.IsActive(alarm.KindDisk, sl.dir) {
		t.Fatal("no disk alarm with a threshold above the free space")
	}
}
