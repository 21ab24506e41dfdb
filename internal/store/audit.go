package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"sort"
	"strings"
	"time"
)

// AuditRecord is one entry of the tamper-evident audit log. The package
// audit gives its fields their meaning; the store keeps them in order and
// chains them.
//
// Hash is SHA-256(PrevHash || Canonical()), and PrevHash is the Hash of the
// record with the previous Seq (32 zero bytes for Seq 1). Changing, removing
// or reordering a stored record therefore breaks the chain at that record,
// unless every later hash is recomputed too; keep the latest hash somewhere
// else (a remote syslog, an export) to catch that.
type AuditRecord struct {
	Seq      int64 // 1, 2, 3, ... in order of appending
	Time     time.Time
	Actor    string
	Source   string
	Action   string
	Target   string
	Outcome  string
	Details  map[string]string
	PrevHash []byte
	Hash     []byte
	// MAC is the audit key's HMAC of Hash (package audit), nil for a
	// record appended without a key. Someone who can write the database
	// but not read the key cannot seal a record of their own.
	MAC []byte
	// Seal, when set, computes MAC from the Hash that AppendAudit
	// assigns, inside the append's transaction. It is not stored.
	Seal func(hash []byte) []byte

	// detailsJSON is the details column as stored, when the record was
	// read from the store; Canonical uses it so that a changed column is
	// seen even if it no longer decodes.
	detailsJSON string
}

// AuditGenesis is the PrevHash of the first audit record.
var AuditGenesis = make([]byte, sha256.Size)

// auditDomain starts every canonical encoding, naming the format.
const auditDomain = "conclave-audit-v1\n"

// encodeDetails returns the JSON encoding of details: an object with keys
// sorted, "{}" when empty.
func encodeDetails(details map[string]string) string {
	if len(details) == 0 {
		return "{}"
	}
	b, err := json.Marshal(details) // sorts the keys
	if err != nil {
		// A map[string]string always encodes; invalid UTF-8 is replaced.
		panic(err)
	}
	return string(b)
}

// Canonical returns the byte encoding of r that its hash covers: the
// ASCII text "conclave-audit-v1\n", then Seq as 8 bytes and Time as Unix
// nanoseconds in 8 bytes (both big-endian two's complement), then Actor,
// Source, Action, Target, Outcome and the details (a JSON object with
// sorted keys, "{}" when empty), each as a 4-byte big-endian length
// followed by its bytes.
func (r AuditRecord) Canonical() []byte {
	details := r.detailsJSON
	if details == "" {
		details = encodeDetails(r.Details)
	}
	fields := []string{r.Actor, r.Source, r.Action, r.Target, r.Outcome, details}
	n := len(auditDomain) + 16
	for _, f := range fields {
		n += 4 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, auditDomain...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(r.Time)))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// ComputeHash returns SHA-256(r.PrevHash || r.Canonical()), the value
// r.Hash must hold.
func (r AuditRecord) ComputeHash() []byte {
	h := sha256.New()
	h.Write(r.PrevHash)
	h.Write(r.Canonical())
	return h.Sum(nil)
}

// searchText is what a text search of the audit log looks in: the actor,
// source, action, target and the values of the details as they read (not
// as JSON escapes them), one a line, with ASCII letters in lower case.
// The query is folded the same way and matched with LIKE, which then
// compares character for character on both engines.
func (r AuditRecord) searchText() string {
	parts := []string{r.Actor, r.Source, r.Action, r.Target}
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, r.Details[k])
	}
	return foldASCII(strings.Join(parts, "\n"))
}

// foldASCII puts the ASCII letters of s in lower case and leaves every
// other character as it is (SQLite's lower() and the C locale's, the same
// on every engine and machine).
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// searchPattern is the LIKE pattern (escape character '\') of a text
// search for text.
func searchPattern(text string) string {
	return "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(foldASCII(text)) + "%"
}

// fillAuditSearch computes the search text of the records written before
// the column existed (migration 10).
func fillAuditSearch(ctx context.Context, tx *sqlTx) error {
	rows, err := tx.QueryContext(ctx, `SELECT seq, actor, source, action, target, details FROM audit_log`)
	if err != nil {
		return err
	}
	type fill struct {
		seq    int64
		search string
	}
	var fills []fill
	for rows.Next() {
		var (
			r       AuditRecord
			details string
		)
		if err := rows.Scan(&r.Seq, &r.Actor, &r.Source, &r.Action, &r.Target, &details); err != nil {
			rows.Close()
			return err
		}
		json.Unmarshal([]byte(details), &r.Details) // a damaged record keeps its other fields searchable
		fills = append(fills, fill{r.Seq, r.searchText()})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, f := range fills {
		if _, err := tx.ExecContext(ctx, `UPDATE audit_log SET search = ? WHERE seq = ?`, f.search, f.seq); err != nil {
			return err
		}
	}
	return nil
}

// AuditFilter selects audit records for ListAudit. Zero fields select
// everything.
type AuditFilter struct {
	Action    string    // only this action
	Since     time.Time // only records at or after Since
	Until     time.Time // only records before Until
	AfterSeq  int64     // only records with a larger Seq
	BeforeSeq int64     // only records with a smaller Seq
	Actor     string    // only this actor
	Outcome   string    // only this outcome
	Source    string    // only this source address
	Target    string    // only this target
	Text      string    // only records with this text in actor, source, action, target or a detail's value (ASCII letters of any case)
	Limit     int       // at most this many records; 0 means no limit
	Newest    bool      // newest first instead of oldest first
}
