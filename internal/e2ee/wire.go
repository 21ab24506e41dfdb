package e2ee

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// ErrMalformed is wrapped by every error about bytes that do not parse.
var ErrMalformed = errors.New("e2ee: malformed input")

// writer appends big-endian fields; the encodings in docs/e2ee.md are built
// with it only, so that every encoder is canonical.
type writer struct{ b []byte }

func (w *writer) u8(v uint8)     { w.b = append(w.b, v) }
func (w *writer) u16(v uint16)   { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32)   { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64)   { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) i64(v int64)    { w.u64(uint64(v)) }
func (w *writer) raw(p []byte)   { w.b = append(w.b, p...) }
func (w *writer) str16(s string) { w.u16(uint16(len(s))); w.b = append(w.b, s...) }
func (w *writer) bytes16(p []byte) {
	w.u16(uint16(len(p)))
	w.b = append(w.b, p...)
}
func (w *writer) str32(s string) { w.u32(uint32(len(s))); w.b = append(w.b, s...) }

// reader consumes big-endian fields; the first failure sticks.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() uint8 {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *reader) u16() uint16 {
	p := r.take(2)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

func (r *reader) u32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (r *reader) u64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (r *reader) i64() int64 { return int64(r.u64()) }

// str16 reads a u16-length-prefixed UTF-8 string of at most max bytes.
func (r *reader) str16(max int) string {
	n := int(r.u16())
	if n > max {
		r.bad = true
		return ""
	}
	p := r.take(n)
	if p == nil || !utf8.Valid(p) {
		r.bad = true
		return ""
	}
	return string(p)
}

// str32 reads a u32-length-prefixed UTF-8 string of at most max bytes.
func (r *reader) str32(max int) string {
	n := r.u32()
	if n > uint32(max) {
		r.bad = true
		return ""
	}
	p := r.take(int(n))
	if p == nil || !utf8.Valid(p) {
		r.bad = true
		return ""
	}
	return string(p)
}

// bytes16 reads a u16-length-prefixed byte string of at most max bytes.
func (r *reader) bytes16(max int) []byte {
	n := int(r.u16())
	if n > max {
		r.bad = true
		return nil
	}
	return r.take(n)
}

// done reports whether everything parsed and nothing is left over.
func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }
