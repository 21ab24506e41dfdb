package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"conclave/internal/client/ivf"
	"conclave/internal/client/media"
	"conclave/internal/client/ogg"
)

// A FrameSource yields the encoded frames of one track to publish, for
// example a file read in a loop. Sources are used by one goroutine.
type FrameSource interface {
	// Codec is the codec of the frames.
	Codec() Codec
	// NextFrame returns the next frame, reading into buf when it can, and
	// the time between the previous frame's presentation and this one's
	// (0 for the first). A source that loops never returns io.EOF.
	NextFrame(buf []byte) (frame []byte, delay time.Duration, err error)
}

// Bounds applied to the delays read from files: a broken time stamp must
// not stall a track or burst it.
const (
	minFrameDelay     = time.Millisecond
	maxFrameDelay     = time.Second
	defaultFrameDelay = time.Second / 15
)

// IVFSource reads VP8 (or VP9) frames from an IVF file and starts over
// at its end.
type IVFSource struct {
	rs    io.ReadSeeker
	r     *ivf.Reader
	codec Codec

	started bool
	lastPTS uint64
	delay   time.Duration // of the previous frame, used across the loop
	frames  int           // frames read in the current pass
}

// NewIVFSource reads the header of an IVF file.
func NewIVFSource(rs io.ReadSeeker) (*IVFSource, error) {
	r, err := ivf.NewReader(rs)
	if err != nil {
		return nil, err
	}
	var c Codec
	switch r.Header.FourCC {
	case "VP80":
		c = CodecVP8
	case "VP90":
		c = CodecVP9
	default:
		return nil, fmt.Errorf("ivf: codec %q is not supported; use VP8 or VP9", r.Header.FourCC)
	}
	return &IVFSource{rs: rs, r: r, codec: c, delay: defaultFrameDelay}, nil
}

// NewTestVideo returns a source of the embedded VP8 test clip.
func NewTestVideo() FrameSource {
	s, err := NewIVFSource(bytes.NewReader(media.VideoIVF))
	if err != nil {
		panic("client: embedded test video: " + err.Error())
	}
	return s
}

// Codec implements FrameSource.
func (s *IVFSource) Codec() Codec { return s.codec }

// NextFrame implements FrameSource.
func (s *IVFSource) NextFrame(buf []byte) ([]byte, time.Duration, error) {
	frame, pts, err := s.r.ReadFrame(buf)
	if errors.Is(err, io.EOF) {
		if s.frames == 0 {
			return nil, 0, errors.New("ivf: the file holds no frames")
		}
		if err := s.rewind(); err != nil {
			return nil, 0, err
		}
		frame, pts, err = s.r.ReadFrame(buf)
		s.frames = 0
		if err == nil {
			s.lastPTS, s.frames = pts, 1
			return frame, s.delay, nil
		}
	}
	if err != nil {
		return nil, 0, err
	}
	s.frames++
	if !s.started {
		s.started, s.lastPTS = true, pts
		return frame, 0, nil
	}
	h := s.r.Header
	d := time.Duration((pts - s.lastPTS) * uint64(h.TimebaseNum) * uint64(time.Second) / uint64(h.TimebaseDen))
	s.lastPTS = pts
	s.delay = min(max(d, minFrameDelay), maxFrameDelay)
	return frame, s.delay, nil
}

func (s *IVFSource) rewind() error {
	if _, err := s.rs.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("ivf: rewind: %w", err)
	}
	r, err := ivf.NewReader(s.rs)
	if err != nil {
		return err
	}
	s.r = r
	return nil
}

// OggSource reads Opus packets from an Ogg Opus file and starts over at
// its end.
type OggSource struct {
	rs      io.ReadSeeker
	r       *ogg.Reader
	prev    time.Duration // duration of the previous packet
	packets int           // audio packets read in the current pass
}

// NewOggSource checks that rs is an Ogg Opus file.
func NewOggSource(rs io.ReadSeeker) (*OggSource, error) {
	s := &OggSource{rs: rs}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewTestAudio returns a source of the embedded Opus test clip.
func NewTestAudio() FrameSource {
	s, err := NewOggSource(bytes.NewReader(media.AudioOgg))
	if err != nil {
		panic("client: embedded test audio: " + err.Error())
	}
	return s
}

// open reads the two header packets of an Ogg Opus stream (RFC 7845).
func (s *OggSource) open() error {
	s.r = ogg.NewReader(s.rs)
	head, err := s.r.ReadPacket(nil)
	if err != nil {
		return fmt.Errorf("ogg: read Opus header: %w", err)
	}
	if !bytes.HasPrefix(head, []byte("OpusHead")) {
		return errors.New("ogg: not an Opus stream (no OpusHead)")
	}
	tags, err := s.r.ReadPacket(nil)
	if err != nil || !bytes.HasPrefix(tags, []byte("OpusTags")) {
		return errors.New("ogg: Opus stream without OpusTags")
	}
	s.packets = 0
	return nil
}

// Codec implements FrameSource.
func (s *OggSource) Codec() Codec { return CodecOpus }

// NextFrame implements FrameSource.
func (s *OggSource) NextFrame(buf []byte) ([]byte, time.Duration, error) {
	for range 2 {
		p, err := s.r.ReadPacket(buf)
		if errors.Is(err, io.EOF) {
			if s.packets == 0 {
				return nil, 0, errors.New("ogg: the file holds no audio")
			}
			if _, err := s.rs.Seek(0, io.SeekStart); err != nil {
				return nil, 0, fmt.Errorf("ogg: rewind: %w", err)
			}
			if err := s.open(); err != nil {
				return nil, 0, err
			}
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if len(p) == 0 {
			continue // an empty packet carries nothing to send
		}
		s.packets++
		delay := s.prev
		s.prev = opusDuration(p)
		return p, delay, nil
	}
	return nil, 0, errors.New("ogg: no audio packet after rewinding")
}

// opusDuration is the duration of an Opus packet, from its TOC byte
// (RFC 6716, section 3.1).
func opusDuration(p []byte) time.Duration {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	config := toc >> 3
	var frame time.Duration
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]time.Duration{10, 20, 40, 60}[config&3] * time.Millisecond
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]time.Duration{10, 20}[config&1] * time.Millisecond
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]time.Duration{2500, 5000, 10000, 20000}[config&3] * time.Microsecond
	}
	count := 1
	switch toc & 3 {
	case 1, 2:
		count = 2
	case 3:
		if len(p) < 2 {
			return 0
		}
		count = int(p[1] & 0x3f)
	}
	return frame * time.Duration(count)
}
