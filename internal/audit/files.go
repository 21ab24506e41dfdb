package audit

import (
	"bufio"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"conclave/internal/store"
)

// The audit files: every record, as one JSON line, in <dir>/current.log
// until it reaches MaxFileSize, then renamed to audit-<first seq>.log
// (zero-padded, so that names sort in order) and a new current file
// started. When the files together pass MaxTotalSize the oldest are
// removed, and the database index keeps no record older than the oldest
// file (see Log.Sync).
const (
	currentFile = "current.log"
	// DefaultMaxFileSize is the size at which a file is rotated: 10 MB.
	DefaultMaxFileSize = 10 << 20
	// DefaultMaxTotalSize bounds all the files together: 2 GB.
	DefaultMaxTotalSize = 2 << 30
)

// FileRecord is one line of an audit file: a record with its hashes in
// hexadecimal. It is also the JSON export format.
type FileRecord struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Actor    string            `json:"actor"`
	Source   string            `json:"source"`
	Action   string            `json:"action"`
	Target   string            `json:"target"`
	Outcome  string            `json:"outcome"`
	Details  map[string]string `json:"details,omitempty"`
	PrevHash string            `json:"prevHash"`
	Hash     string            `json:"hash"`
	MAC      string            `json:"mac,omitempty"`
}

// ToFile converts a stored record.
func ToFile(r store.AuditRecord) FileRecord {
	return FileRecord{Seq: r.Seq, Time: r.Time.UTC(), Actor: r.Actor, Source: r.Source, Action: r.Action,
		Target: r.Target, Outcome: r.Outcome, Details: r.Details, PrevHash: hex.EncodeToString(r.PrevHash),
		Hash: hex.EncodeToString(r.Hash), MAC: hex.EncodeToString(r.MAC)}
}

// Record converts back to a stored record (for verification).
func (f FileRecord) Record() (store.AuditRecord, error) {
	prev, err1 := hex.DecodeString(f.PrevHash)
	hash, err2 := hex.DecodeString(f.Hash)
	mac, err3 := hex.DecodeString(f.MAC)
	if err := errors.Join(err1, err2, err3); err != nil {
		return store.AuditRecord{}, fmt.Errorf("record %d: bad hexadecimal: %w", f.Seq, err)
	}
	if len(mac) == 0 {
		mac = nil
	}
	return store.AuditRecord{Seq: f.Seq, Time: f.Time, Actor: f.Actor, Source: f.Source, Action: f.Action,
		Target: f.Target, Outcome: f.Outcome, Details: f.Details, PrevHash: prev, Hash: hash, MAC: mac}, nil
}

// files writes the audit files of one directory. It is used by one
// goroutine at a time (the Log's shipper).
type files struct {
	dir      string
	maxFile  int64
	maxTotal int64
	f        *os.File
	size     int64
	lastSeq  int64
	firstSeq int64 // of the current file
}

// openFiles opens dir's current file for appending, reading the last
// sequence number it holds.
func openFiles(dir string, maxFile, maxTotal int64) (*files, error) {
	if maxFile <= 0 {
		maxFile = DefaultMaxFileSize
	}
	if maxTotal <= 0 {
		maxTotal = DefaultMaxTotalSize
	}
	if maxTotal < maxFile {
		maxTotal = maxFile
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit files: %w", err)
	}
	af := &files{dir: dir, maxFile: maxFile, maxTotal: maxTotal}
	path := filepath.Join(dir, currentFile)
	first, last, err := scanBounds(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	af.firstSeq, af.lastSeq = first, last
	if last == 0 {
		// The current file is empty: the last record is in the newest
		// rotated file, if any.
		names, _ := rotated(dir)
		if len(names) > 0 {
			_, l, err := scanBounds(filepath.Join(dir, names[len(names)-1]))
			if err != nil {
				return nil, err
			}
			af.lastSeq = l
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit files: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	af.f, af.size = f, st.Size()
	return af, nil
}

// scanBounds returns the first and last sequence numbers in an audit file.
// A last line cut short (a crash while writing) is ignored.
func scanBounds(path string) (first, last int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	err = scanFile(f, func(r FileRecord) error {
		if first == 0 {
			first = r.Seq
		}
		last = r.Seq
		return nil
	})
	return first, last, err
}

// scanFile calls fn for each complete line of an audit file.
func scanFile(rd io.Reader, fn func(FileRecord) error) error {
	br := bufio.NewReaderSize(rd, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var r FileRecord
			if jerr := json.Unmarshal(line, &r); jerr != nil {
				return fmt.Errorf("an audit file line does not decode: %w", jerr)
			}
			if ferr := fn(r); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// rotated lists dir's rotated files, oldest first.
func rotated(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, "audit-") && strings.HasSuffix(n, ".log") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Files lists the audit files of dir in order, the current one last.
func Files(dir string) ([]string, error) {
	names, err := rotated(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, currentFile)); err == nil {
		names = append(names, currentFile)
	}
	return names, nil
}

// write appends records (in sequence order, each after lastSeq) and
// rotates as needed. It returns the first sequence number the files still
// hold after removing the oldest at the cap (0 if nothing was removed).
func (af *files) write(recs []store.AuditRecord) (keptFrom int64, err error) {
	for _, r := range recs {
		if r.Seq <= af.lastSeq {
			continue
		}
		line, err := json.Marshal(ToFile(r))
		if err != nil {
			return 0, err
		}
		line = append(line, '\n')
		if af.size > 0 && af.size+int64(len(line)) > af.maxFile {
			k, err := af.rotate()
			if err != nil {
				return 0, err
			}
			if k > keptFrom {
				keptFrom = k
			}
		}
		if _, err := af.f.Write(line); err != nil {
			return keptFrom, fmt.Errorf("write audit file: %w", err)
		}
		if af.size == 0 {
			af.firstSeq = r.Seq
		}
		af.size += int64(len(line))
		af.lastSeq = r.Seq
	}
	return keptFrom, nil
}

// flush makes what was written durable.
func (af *files) flush() error {
	if err := af.f.Sync(); err != nil {
		return fmt.Errorf("sync audit file: %w", err)
	}
	return nil
}

// rotate renames the current file and opens a new one, then removes the
// oldest files beyond the cap; it returns the first sequence number kept
// when it removed any.
func (af *files) rotate() (int64, error) {
	if err := af.f.Sync(); err != nil {
		return 0, err
	}
	af.f.Close()
	name := fmt.Sprintf("audit-%020d.log", af.firstSeq)
	if err := os.Rename(filepath.Join(af.dir, currentFile), filepath.Join(af.dir, name)); err != nil {
		return 0, fmt.Errorf("rotate audit file: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(af.dir, currentFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("rotate audit file: %w", err)
	}
	af.f, af.size, af.firstSeq = f, 0, 0
	return af.prune()
}

// prune removes the oldest rotated files while all of them together with
// the current file's room exceed maxTotal.
func (af *files) prune() (int64, error) {
	names, err := rotated(af.dir)
	if err != nil {
		return 0, err
	}
	sizes := make([]int64, len(names))
	total := af.maxFile // room for the current file
	for i, n := range names {
		st, err := os.Stat(filepath.Join(af.dir, n))
		if err != nil {
			return 0, err
		}
		sizes[i] = st.Size()
		total += st.Size()
	}
	var keptFrom int64
	i := 0
	for ; i < len(names) && total > af.maxTotal; i++ {
		if err := os.Remove(filepath.Join(af.dir, names[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		total -= sizes[i]
	}
	if i > 0 {
		if i < len(names) {
			keptFrom, _, err = scanBounds(filepath.Join(af.dir, names[i]))
			if err != nil {
				return 0, err
			}
		} else {
			keptFrom = af.lastSeq + 1
		}
	}
	return keptFrom, nil
}

// bytesUsed returns the total size of dir's audit files.
func bytesUsed(dir string) int64 {
	names, _ := Files(dir)
	var n int64
	for _, name := range names {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			n += st.Size()
		}
	}
	return n
}

func (af *files) close() error {
	if af.f == nil {
		return nil
	}
	return af.f.Close()
}

// WriteCSV writes records as CSV with a header row (the export format);
// cells that a spreadsheet would run as a formula get a leading quote.
func WriteCSV(w io.Writer, recs []FileRecord) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"seq", "time", "actor", "source", "action", "target", "outcome", "details", "hash", "mac"})
	for _, r := range recs {
		d, _ := json.Marshal(r.Details)
		if r.Details == nil {
			d = []byte("{}")
		}
		row := []string{strconv.FormatInt(r.Seq, 10), r.Time.Format(time.RFC3339Nano), r.Actor, r.Source, r.Action,
			r.Target, r.Outcome, string(d), r.Hash, r.MAC}
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				row[i] = "'" + c
			}
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}
