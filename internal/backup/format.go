// Package backup makes and restores encrypted backups of a data
// directory: the database, every key and certificate, the settings and
// the audit files — everything in the directory except what Excluded
// names (file blobs exchanged in meetings, the backups themselves,
// scratch files). Because it takes the directory as a whole, a key file
// another package adds later is in the backups without anyone listing it.
//
// A backup file is the text "CONCLAVE-BACKUP-1\n", a JSON header line
// (format, Argon2id parameters and salt, creation time, version), then a
// tar archive encrypted in chunks of 64 KiB with AES-256-GCM under a key
// derived from the passphrase with Argon2id. Chunk i has the nonce
// prefix || i (96 bits) and the header's SHA-256 with a last-chunk flag
// as additional data, so chunks cannot be reordered, dropped, truncated
// or moved to another backup (the STREAM construction).
//
// Keys sealed under the node's master key (package secrets) are stored
// opened, inside the encrypted archive, so that a backup needs only its
// passphrase; restore seals them again under the restoring node's master
// key, if it has one.
package backup

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/argon2"
)

const (
	magic     = "CONCLAVE-BACKUP-1\n"
	chunkSize = 64 << 10
	// MinPassphrase is the shortest passphrase accepted.
	MinPassphrase = 12
)

// ErrPassphrase is returned when a backup does not open with the
// passphrase given (or was altered: the two cannot be told apart).
var ErrPassphrase = errors.New("the passphrase is wrong, or the backup file was altered: nothing was restored")

// Header is the clear header of a backup file.
type Header struct {
	Format  string    `json:"format"` // "tar+aes-256-gcm-stream"
	KDF     string    `json:"kdf"`    // "argon2id"
	Time    uint32    `json:"argon2Time"`
	Memory  uint32    `json:"argon2MemoryKiB"`
	Threads uint8     `json:"argon2Threads"`
	Salt    []byte    `json:"salt"`
	Nonce   []byte    `json:"noncePrefix"` // 4 bytes
	Created time.Time `json:"created"`
	Version string    `json:"version"`
	Node    string    `json:"node"`
}

// kdf parameters: RFC 9106's second recommended option (64 MiB, 3 passes).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 4
)

func (h Header) key(passphrase string) ([]byte, error) {
	if h.KDF != "argon2id" || h.Time == 0 || h.Time > 20 || h.Memory < 8*1024 || h.Memory > 1<<21 || h.Threads == 0 || len(h.Salt) < 16 || len(h.Nonce) != 4 {
		return nil, errors.New("the backup header has parameters this version does not accept")
	}
	return argon2.IDKey([]byte(passphrase), h.Salt, h.Time, h.Memory, h.Threads, 32), nil
}

// encWriter encrypts a stream in chunks.
type encWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	prefix []byte
	ad     []byte
	buf    []byte
	n      uint64
	closed bool
}

// newWriter writes the header to w and returns the writer of the
// encrypted content; Close writes the last chunk.
func newWriter(w io.Writer, passphrase string, h Header) (*encWriter, error) {
	if len(passphrase) < MinPassphrase {
		return nil, fmt.Errorf("the backup passphrase must have at least %d characters", MinPassphrase)
	}
	h.Format, h.KDF = "tar+aes-256-gcm-stream", "argon2id"
	h.Time, h.Memory, h.Threads = argonTime, argonMemory, argonThreads
	h.Salt, h.Nonce = make([]byte, 16), make([]byte, 4)
	rand.Read(h.Salt)
	rand.Read(h.Nonce)
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	key, err := h.key(passphrase)
	if err != nil {
		return nil, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, magic); err != nil {
		return nil, err
	}
	if _, err := w.Write(append(hb, '\n')); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(hb)
	return &encWriter{w: w, aead: aead, prefix: h.Nonce, ad: sum[:], buf: make([]byte, 0, chunkSize)}, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (e *encWriter) nonce() []byte {
	n := make([]byte, 12)
	copy(n, e.prefix)
	binary.BigEndian.PutUint64(n[4:], e.n)
	return n
}

func (e *encWriter) adFor(last bool) []byte {
	ad := append([]byte(nil), e.ad...)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}

func (e *encWriter) flush(last bool) error {
	ct := e.aead.Seal(nil, e.nonce(), e.buf, e.adFor(last))
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(ct)))
	if _, err := e.w.Write(l[:]); err != nil {
		return err
	}
	if _, err := e.w.Write(ct); err != nil {
		return err
	}
	e.n++
	e.buf = e.buf[:0]
	return nil
}

func (e *encWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(chunkSize-len(e.buf), len(p))
		e.buf = append(e.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(e.buf) == chunkSize {
			if err := e.flush(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Close writes the last chunk (possibly empty).
func (e *encWriter) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	return e.flush(true)
}

// ReadHeader reads a backup file's clear header.
func ReadHeader(r *bufio.Reader) (Header, []byte, error) {
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(r, m); err != nil || string(m) != magic {
		return Header{}, nil, errors.New("this is not a Conclave backup file")
	}
	line, err := r.ReadBytes('\n')
	if err != nil || len(line) > 4096 {
		return Header{}, nil, errors.New("the backup file's header is damaged")
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return Header{}, nil, errors.New("the backup file's header is damaged")
	}
	return h, line, nil
}

// decReader decrypts a stream written by encWriter; it fails on any
// altered, missing or reordered chunk and on a truncated stream.
type decReader struct {
	r      io.Reader
	aead   cipher.AEAD
	e      encWriter // for nonce and ad
	plain  []byte
	done   bool
	failed error
}

// newReader reads the header from r and returns the decrypting reader.
func newReader(r io.Reader, passphrase string) (*decReader, Header, error) {
	br := bufio.NewReader(r)
	h, hb, err := ReadHeader(br)
	if err != nil {
		return nil, h, err
	}
	key, err := h.key(passphrase)
	if err != nil {
		return nil, h, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, h, err
	}
	sum := sha256.Sum256(hb)
	return &decReader{r: br, aead: aead, e: encWriter{prefix: h.Nonce, ad: sum[:]}}, h, nil
}

func (d *decReader) next() error {
	var l [4]byte
	if _, err := io.ReadFull(d.r, l[:]); err != nil {
		return fmt.Errorf("the backup file is truncated: %w", ErrPassphrase)
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > chunkSize+uint32(d.aead.Overhead()) {
		return ErrPassphrase
	}
	ct := make([]byte, n)
	if _, err := io.ReadFull(d.r, ct); err != nil {
		return fmt.Errorf("the backup file is truncated: %w", ErrPassphrase)
	}
	plain, err := d.aead.Open(nil, d.e.nonce(), ct, d.e.adFor(false))
	if err != nil {
		plain, err = d.aead.Open(ct[:0], d.e.nonce(), ct, d.e.adFor(true))
		if err != nil {
			return ErrPassphrase
		}
		d.done = true
		// Nothing may follow the last chunk.
		var extra [1]byte
		if k, _ := d.r.Read(extra[:]); k > 0 {
			return ErrPassphrase
		}
	}
	d.e.n++
	d.plain = plain
	return nil
}

func (d *decReader) Read(p []byte) (int, error) {
	for len(d.plain) == 0 {
		if d.failed != nil {
			return 0, d.failed
		}
		if d.done {
			return 0, io.EOF
		}
		if err := d.next(); err != nil {
			d.failed = err
			return 0, err
		}
	}
	n := copy(p, d.plain)
	d.plain = d.plain[n:]
	return n, nil
}
