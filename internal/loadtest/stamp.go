package loadtest

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/client"
)

// The stamp is a trailer that every publisher of the load test appends to
// each plaintext frame before end-to-end encryption, so that a receiver,
// after decrypting, knows when the frame was sent and which frames of its
// stream it missed:
//
//	frame | seq (u32) | sent (i64) | layer (u8) | version (u8) = 1 | "CCLT"
//
// seq counts the frames sent on one (track, simulcast layer) from 0; sent
// is the Unix time in nanoseconds at which the publisher handed the frame
// to encryption; layer is the simulcast encoding (0 without simulcast).
// Integers are big-endian. At the end of the frame it leaves the codec's
// clear prefix (docs/e2ee.md, section 5.5) where it was: the server still
// sees key frames and their sizes. Decoders would treat it as part of the
// last partition; the load test decodes nothing.
const (
	stampLen     = 4 + 8 + 1 + 1 + 4
	stampVersion = 1
	stampMagic   = "CCLT"
)

// Stamp is what a trailer says.
type Stamp struct {
	Seq   uint32
	Sent  int64 // Unix nanoseconds
	Layer uint8
}

// AppendStamp appends frame and its trailer to dst.
func AppendStamp(dst, frame []byte, s Stamp) []byte {
	dst = append(dst, frame...)
	dst = binary.BigEndian.AppendUint32(dst, s.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.Sent))
	dst = append(dst, s.Layer, stampVersion)
	return append(dst, stampMagic...)
}

// errNoStamp: a frame without a valid trailer.
var errNoStamp = errors.New("loadtest: frame without a stamp")

// ParseStamp reads the trailer of a received plaintext frame and returns
// the frame without it. Frames come from the network (through the
// server): anything malformed is refused.
func ParseStamp(b []byte) (frame []byte, s Stamp, err error) {
	if len(b) < stampLen {
		return nil, Stamp{}, errNoStamp
	}
	t := b[len(b)-stampLen:]
	if string(t[14:]) != stampMagic || t[13] != stampVersion {
		return nil, Stamp{}, errNoStamp
	}
	s = Stamp{Seq: binary.BigEndian.Uint32(t), Sent: int64(binary.BigEndian.Uint64(t[4:])), Layer: t[12]}
	if s.Sent <= 0 {
		return nil, Stamp{}, errNoStamp
	}
	return b[:len(b)-stampLen], s, nil
}

// stamper is a publisher's send transform: it stamps each frame, then
// hands it to next (end-to-end encryption). A frame next refuses (no
// key yet) is not sent and does not use a sequence number.
type stamper struct {
	next client.FrameTransform
	seq  [maxSources * maxLayers]atomic.Uint32
	bufs sync.Pool
}

// Sources and layers a stamper counts separately.
const (
	maxSources = 2 // camera, microphone
	maxLayers  = 3
)

func newStamper(next client.FrameTransform) *stamper {
	return &stamper{next: next}
}

// TransformFrame implements client.FrameTransform. It is called by one
// goroutine per (source, layer).
func (s *stamper) TransformFrame(info client.FrameInfo, frame, dst []byte) ([]byte, error) {
	layer := min(max(info.Layer, 0), maxLayers-1)
	src := 0
	if info.Source != "camera" {
		src = 1
	}
	counter := &s.seq[src*maxLayers+layer]
	seq := counter.Load()
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	stamped := AppendStamp((*bp)[:0], frame, Stamp{Seq: seq, Sent: time.Now().UnixNano(), Layer: uint8(layer)})
	out, err := s.next.TransformFrame(info, stamped, dst)
	if err == nil && sameMemory(out, stamped) {
		// An identity transform (tests): the buffer goes out with the
		// frame and cannot be reused.
		out = append(dst, out...)
	}
	*bp = stamped
	s.bufs.Put(bp)
	if err != nil {
		return nil, err
	}
	counter.Store(seq + 1)
	return out, nil
}

// sameMemory reports whether a and b share their first byte.
func sameMemory(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}
