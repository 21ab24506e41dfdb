package sipedge

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"conclave/internal/secrets"
	"conclave/internal/store"
)

// Record is one call detail record. It is sealed (AES-256-GCM) before it
// reaches the store, under a key kept in the data directory apart from
// the database, and read back only for roles allowed to see call records.
type Record struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // "call" (1:1) or "dial-in"
	// From and To are the caller's and the callee's addresses of record
	// (the room's address for a dial-in).
	From string `json:"from"`
	To   string `json:"to"`
	// CallerSerial and CalleeSerial are the device certificates' serials.
	CallerSerial string    `json:"callerSerial,omitempty"`
	CalleeSerial string    `json:"calleeSerial,omitempty"`
	Started      time.Time `json:"started"`
	Answered     time.Time `json:"answered,omitzero"`
	Ended        time.Time `json:"ended,omitzero"`
	// Status is the final SIP status of the INVITE (200 for an answered
	// call) and EndReason says how it ended.
	Status    int    `json:"status"`
	EndReason string `json:"endReason,omitempty"`
	// Media is the protection mode; EndToEnd is false for SDES and for
	// anything that passes through a gateway.
	Media    Mode `json:"media,omitempty"`
	EndToEnd bool `json:"endToEnd"`
	// CallerFingerprint and CalleeFingerprint are the DTLS certificate
	// fingerprints each endpoint announced, for users to compare with
	// what their devices show.
	CallerFingerprint string   `json:"callerFingerprint,omitempty"`
	CalleeFingerprint string   `json:"calleeFingerprint,omitempty"`
	Codecs            []string `json:"codecs,omitempty"`
	// Packets and Bytes are what the relay forwarded from caller and
	// callee.
	Packets [2]uint64 `json:"packets"`
	Bytes   [2]uint64 `json:"bytes"`
}

// CDRLog seals and stores call detail records.
type CDRLog struct {
	st   store.DeviceStore
	aead cipher.AEAD
}

// OpenCDRLog loads (creating on first use) the record key from
// <dir>/cdr.key, sealed at rest by box (package secrets; nil keeps it in
// the clear).
func OpenCDRLog(dir string, st store.DeviceStore, box *secrets.Box) (*CDRLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("call records: %w", err)
	}
	key, err := secrets.LoadKey(filepath.Join(dir, "cdr.key"), box, true)
	if err != nil {
		return nil, fmt.Errorf("call records: %w", err)
	}
	aead, err := secrets.NewAEAD(key)
	if err != nil {
		return nil, err
	}
	return &CDRLog{st: st, aead: aead}, nil
}

// Put seals r and stores it (again, when r.ID was stored before).
func (l *CDRLog) Put(ctx context.Context, r Record) error {
	plain, err := json.Marshal(r)
	if err != nil {
		return err
	}
	nonce := make([]byte, l.aead.NonceSize())
	rand.Read(nonce)
	sealed := l.aead.Seal(nonce, nonce, plain, []byte(r.ID))
	return l.st.AddCDR(ctx, store.CDR{ID: r.ID, StartedAt: r.Started, Sealed: sealed})
}

// List opens the records started in [from, to), newest first.
func (l *CDRLog) List(ctx context.Context, from, to time.Time, limit int) ([]Record, error) {
	rows, err := l.st.ListCDRs(ctx, from, to, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(rows))
	for _, row := range rows {
		n := l.aead.NonceSize()
		if len(row.Sealed) < n {
			return nil, fmt.Errorf("call record %s is truncated", row.ID)
		}
		plain, err := l.aead.Open(nil, row.Sealed[:n], row.Sealed[n:], []byte(row.ID))
		if err != nil {
			return nil, fmt.Errorf("call record %s does not open with this key (altered, or another server's)", row.ID)
		}
		var r Record
		if err := json.Unmarshal(plain, &r); err != nil {
			return nil, fmt.Errorf("call record %s: %w", row.ID, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// CallRecords opens the newest call detail records (at most limit).
func (e *Edge) CallRecords(ctx context.Context, limit int) ([]Record, error) {
	return e.deps.CDRs.List(ctx, time.Time{}, time.Time{}, limit)
}
