package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"conclave/internal/store"
)

// ChainError reports the first audit record that breaks the chain.
type ChainError struct {
	Seq    int64  // the record's sequence number
	Where  string // "database" or an audit file's name
	Reason string // what is wrong with it
}

// Error describes the break.
func (e *ChainError) Error() string {
	where := e.Where
	if where == "" {
		where = "database"
	}
	return fmt.Sprintf("the audit log has been altered at record %d (%s): %s", e.Seq, where, e.Reason)
}

// VerifyResult summarises a verified log.
type VerifyResult struct {
	Records  int64  // records checked in the database
	FirstSeq int64  // sequence number of the oldest record kept, 0 if none
	LastSeq  int64  // sequence number of the last record, 0 if none
	LastHash []byte // hash of the last record
	// Unsealed counts the records written before the audit key existed:
	// chained, and covered by the seal of the first sealed record after
	// them, but not sealed themselves.
	Unsealed int64
	// FileRecords counts the records checked in the audit files.
	FileRecords int64
	// Files lists the audit files checked.
	Files []string
}

// VerifyOptions say what to check beyond the database's chain.
type VerifyOptions struct {
	// Key checks every record's seal; nil checks only the hash chain.
	Key *Key
	// Dir holds the audit files to check and compare with the database;
	// empty checks the database alone.
	Dir string
}

// verifyPage is how many records Verify reads at a time (a variable for
// tests).
var verifyPage = 1000

// Verify checks the database's hash chain alone (VerifyLog also checks
// seals and files).
func Verify(ctx context.Context, l Lister) (VerifyResult, error) {
	return VerifyLog(ctx, l, VerifyOptions{})
}

// chain checks records in order, wherever they come from.
type chain struct {
	key      *Key
	where    string
	prev     []byte
	lastSeq  int64
	sealed   bool // a sealed record has been seen
	unsealed int64
	n        int64
	first    int64
}

func (c *chain) add(r store.AuditRecord) error {
	if c.n == 0 {
		c.first = r.Seq
		if r.Seq == 1 && !bytes.Equal(r.PrevHash, store.AuditGenesis) {
			return &ChainError{Seq: r.Seq, Where: c.where, Reason: "the first record does not start the chain"}
		}
	} else {
		if want := c.lastSeq + 1; r.Seq != want {
			return &ChainError{Seq: r.Seq, Where: c.where, Reason: fmt.Sprintf("expected record %d next; records are missing", want)}
		}
		if !bytes.Equal(r.PrevHash, c.prev) {
			return &ChainError{Seq: r.Seq, Where: c.where, Reason: "its link to the previous record does not match"}
		}
	}
	if !bytes.Equal(r.Hash, r.ComputeHash()) {
		return &ChainError{Seq: r.Seq, Where: c.where, Reason: "its content does not match its hash"}
	}
	if c.key != nil {
		switch {
		case len(r.MAC) > 0:
			if !c.key.Check(r.Hash, r.MAC) {
				return &ChainError{Seq: r.Seq, Where: c.where, Reason: "its seal does not match the audit key (rewritten by someone without the key)"}
			}
			c.sealed = true
		case c.sealed:
			return &ChainError{Seq: r.Seq, Where: c.where, Reason: "it is not sealed, although earlier records are"}
		default:
			c.unsealed++
		}
	}
	c.prev = r.Hash
	c.lastSeq = r.Seq
	c.n++
	return nil
}

// VerifyLog checks the audit log: in the database, sequence numbers run
// without gaps from the first record kept (1, or the point up to which the
// files' size cap had records dropped, as the newest audit-pruned record
// says), each record links to its predecessor, matches its hash and, with
// a key, carries a valid seal. The audit files get the same checks, and
// every record present in both must be the same; records in the files but
// missing from the database are reported. A trailing unsealed record
// after sealed ones, a rewritten record, a deleted record and a deleted
// head all fail. It returns a *ChainError naming the first problem.
func VerifyLog(ctx context.Context, l Lister, opts VerifyOptions) (VerifyResult, error) {
	var res VerifyResult
	c := &chain{key: opts.Key}
	var keptFrom int64 = 1
	for {
		recs, err := l.ListAudit(ctx, store.AuditFilter{AfterSeq: c.lastSeq, Limit: verifyPage})
		if err != nil {
			return res, fmt.Errorf("verify audit log: %w", err)
		}
		for _, r := range recs {
			if err := c.add(r); err != nil {
				res.Records, res.FirstSeq, res.LastSeq, res.LastHash, res.Unsealed = c.n, c.first, c.lastSeq, c.prev, c.unsealed
				return res, err
			}
			if r.Action == ActionAuditPruned {
				if k, err := strconv.ParseInt(r.Details["kept_from"], 10, 64); err == nil {
					keptFrom = k
				}
			}
		}
		if len(recs) < verifyPage {
			break
		}
	}
	res.Records, res.FirstSeq, res.LastSeq, res.LastHash, res.Unsealed = c.n, c.first, c.lastSeq, c.prev, c.unsealed
	if c.n > 0 && c.first != keptFrom && c.first != 1 {
		return res, &ChainError{Seq: c.first, Reason: fmt.Sprintf("the oldest records were deleted: the log starts at %d but was pruned only up to %d", c.first, keptFrom)}
	}
	if opts.Dir == "" {
		return res, nil
	}
	return res, verifyFiles(ctx, l, opts, &res)
}

// verifyFiles checks the audit files and compares them with the database.
func verifyFiles(ctx context.Context, l Lister, opts VerifyOptions, res *VerifyResult) error {
	names, err := Files(opts.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("verify audit files: %w", err)
	}
	c := &chain{key: opts.Key}
	var missing []int64
	for _, name := range names {
		c.where = name
		f, err := os.Open(filepath.Join(opts.Dir, name))
		if err != nil {
			return fmt.Errorf("verify audit files: %w", err)
		}
		err = scanFile(f, func(fr FileRecord) error {
			r, err := fr.Record()
			if err != nil {
				return &ChainError{Seq: fr.Seq, Where: name, Reason: err.Error()}
			}
			if err := c.add(r); err != nil {
				return err
			}
			if r.Seq >= res.FirstSeq && r.Seq <= res.LastSeq {
				db, err := l.ListAudit(ctx, store.AuditFilter{AfterSeq: r.Seq - 1, Limit: 1})
				if err != nil {
					return err
				}
				if len(db) == 0 || db[0].Seq != r.Seq || !bytes.Equal(db[0].Hash, r.Hash) {
					return &ChainError{Seq: r.Seq, Where: name, Reason: "the database and the audit file disagree on this record"}
				}
			} else if r.Seq > res.LastSeq {
				missing = append(missing, r.Seq)
			}
			return nil
		})
		f.Close()
		if err != nil {
			return err
		}
		res.Files = append(res.Files, name)
	}
	res.FileRecords = c.n
	if len(missing) > 0 {
		return &ChainError{Seq: missing[0], Where: "database", Reason: fmt.Sprintf("%d records (%d to %d) are in the audit files but were deleted from the database", len(missing), missing[0], missing[len(missing)-1])}
	}
	return nil
}
