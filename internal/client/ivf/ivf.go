// Package ivf reads and writes IVF files, the simple container libvpx and
// ffmpeg use for raw VP8 and VP9 streams: a 32-byte file header, then each
// frame behind a 12-byte header of size and presentation time.
package ivf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxFrameSize bounds the frames read, so that a corrupt size field cannot
// make the reader allocate gigabytes.
const MaxFrameSize = 4 << 20

const (
	fileHeaderLen  = 32
	frameHeaderLen = 12
)

// Header is an IVF file header.
type Header struct {
	FourCC string // "VP80" or "VP90"
	Width  uint16
	Height uint16
	// TimebaseNum/TimebaseDen is the unit of presentation times in seconds,
	// for example 1/15 or 1/1000.
	TimebaseNum uint32
	TimebaseDen uint32
	Frames      uint32 // as written in the file; may be 0 for a stream
}

// Reader reads frames from an IVF stream.
type Reader struct {
	r      io.Reader
	Header Header
	hdr    [frameHeaderLen]byte
}

// NewReader reads the file header.
func NewReader(r io.Reader) (*Reader, error) {
	var b [fileHeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("ivf: read file header: %w", err)
	}
	if string(b[0:4]) != "DKIF" {
		return nil, errors.New("ivf: not an IVF file (no DKIF signature)")
	}
	hl := binary.LittleEndian.Uint16(b[6:])
	if hl < fileHeaderLen {
		return nil, fmt.Errorf("ivf: header length %d is too short", hl)
	}
	h := Header{
		FourCC:      string(b[8:12]),
		Width:       binary.LittleEndian.Uint16(b[12:]),
		Height:      binary.LittleEndian.Uint16(b[14:]),
		TimebaseDen: binary.LittleEndian.Uint32(b[16:]),
		TimebaseNum: binary.LittleEndian.Uint32(b[20:]),
		Frames:      binary.LittleEndian.Uint32(b[24:]),
	}
	if h.TimebaseNum == 0 || h.TimebaseDen == 0 {
		return nil, fmt.Errorf("ivf: invalid time base %d/%d", h.TimebaseNum, h.TimebaseDen)
	}
	if extra := int64(hl) - fileHeaderLen; extra > 0 {
		if _, err := io.CopyN(io.Discard, r, extra); err != nil {
			return nil, fmt.Errorf("ivf: read file header: %w", err)
		}
	}
	return &Reader{r: r, Header: h}, nil
}

// ReadFrame reads the next frame into buf (grown when too small) and
// returns it with its presentation time in Header time base units. At the
// end of the stream it returns io.EOF.
func (r *Reader) ReadFrame(buf []byte) (frame []byte, pts uint64, err error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, 0, fmt.Errorf("ivf: truncated frame header")
		}
		return nil, 0, err
	}
	size := binary.LittleEndian.Uint32(r.hdr[0:])
	pts = binary.LittleEndian.Uint64(r.hdr[4:])
	if size > MaxFrameSize {
		return nil, 0, fmt.Errorf("ivf: frame of %d bytes exceeds the %d-byte limit", size, MaxFrameSize)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	frame = buf[:size]
	if _, err := io.ReadFull(r.r, frame); err != nil {
		return nil, 0, fmt.Errorf("ivf: truncated frame: %w", err)
	}
	return frame, pts, nil
}

// Writer writes an IVF stream.
type Writer struct {
	w      io.Writer
	frames uint32
	hdr    [frameHeaderLen]byte
}

// NewWriter writes the file header h (its Frames field is ignored) and
// returns a writer for the frames.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if len(h.FourCC) != 4 {
		return nil, fmt.Errorf("ivf: fourcc %q is not 4 bytes", h.FourCC)
	}
	var b [fileHeaderLen]byte
	copy(b[0:], "DKIF")
	binary.LittleEndian.PutUint16(b[6:], fileHeaderLen)
	copy(b[8:], h.FourCC)
	binary.LittleEndian.PutUint16(b[12:], h.Width)
	binary.LittleEndian.PutUint16(b[14:], h.Height)
	binary.LittleEndian.PutUint32(b[16:], h.TimebaseDen)
	binary.LittleEndian.PutUint32(b[20:], h.TimebaseNum)
	if _, err := w.Write(b[:]); err != nil {
		return nil, fmt.Errorf("ivf: write file header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WriteFrame appends a frame with its presentation time.
func (w *Writer) WriteFrame(frame []byte, pts uint64) error {
	binary.LittleEndian.PutUint32(w.hdr[0:], uint32(len(frame)))
	binary.LittleEndian.PutUint64(w.hdr[4:], pts)
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return fmt.Errorf("ivf: write frame: %w", err)
	}
	if _, err := w.w.Write(frame); err != nil {
		return fmt.Errorf("ivf: write frame: %w", err)
	}
	w.frames++
	return nil
}

// Frames returns how many frames were written.
func (w *Writer) Frames() uint32 { return w.frames }

// Finish records the frame count in the file header when the underlying
// writer can seek, and leaves the position at the end. It does not close
// the writer.
func (w *Writer) Finish() error {
	ws, ok := w.w.(io.WriteSeeker)
	if !ok {
		return nil
	}
	end, err := ws.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("ivf: finish: %w", err)
	}
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], w.frames)
	if _, err := ws.Seek(24, io.SeekStart); err != nil {
		return fmt.Errorf("ivf: finish: %w", err)
	}
	if _, err := ws.Write(n[:]); err != nil {
		return fmt.Errorf("ivf: finish: %w", err)
	}
	if _, err := ws.Seek(end, io.SeekStart); err != nil {
		return fmt.Errorf("ivf: finish: %w", err)
	}
	return nil
}
