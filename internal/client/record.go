package client

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"conclave/internal/client/ivf"
)

// Recorder returns a NewSink function that writes each remote track into
// dir: video as IVF (from its first key frame on), audio as Ogg Opus. Files
// are named <name>-<participant>-<source>-<n>.ivf|.ogg.
func Recorder(dir string) func(TrackInfo) (FrameSink, error) {
	var n atomic.Int64
	return func(t TrackInfo) (FrameSink, error) {
		base := fmt.Sprintf("%s-%s-%s-%d", fileSafe(t.Name), fileSafe(t.Participant), fileSafe(t.Source), n.Add(1))
		switch t.Codec {
		case CodecVP8, CodecVP9:
			return &ivfSink{path: filepath.Join(dir, base+".ivf"), codec: t.Codec}, nil
		case CodecOpus:
			return newOggSink(filepath.Join(dir, base+".ogg"))
		}
		return nil, fmt.Errorf("record: codec %q is not supported", t.Codec)
	}
}

func fileSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
	if s == "" {
		return "unnamed"
	}
	return s
}

// ivfSink writes video frames to an IVF file created at the first key
// frame, whose header then carries the picture size.
type ivfSink struct {
	path    string
	codec   Codec
	f       *os.File
	bw      *bufio.Writer
	w       *ivf.Writer
	firstTS uint32
}

func (k *ivfSink) WriteFrame(fr RemoteFrame) error {
	if k.w == nil {
		if !fr.KeyFrame {
			return nil // undecodable without a key frame
		}
		f, err := os.Create(k.path)
		if err != nil {
			return fmt.Errorf("record: %w", err)
		}
		fourcc := "VP80"
		if k.codec == CodecVP9 {
			fourcc = "VP90"
		}
		width, height := vp8Size(fr.Data)
		k.f, k.bw, k.firstTS = f, bufio.NewWriter(f), fr.Timestamp
		k.w, err = ivf.NewWriter(k.bw, ivf.Header{FourCC: fourcc, Width: width, Height: height, TimebaseNum: 1, TimebaseDen: 90000})
		if err != nil {
			return err
		}
	}
	return k.w.WriteFrame(fr.Data, uint64(fr.Timestamp-k.firstTS))
}

func (k *ivfSink) Close() error {
	if k.f == nil {
		return nil
	}
	err := k.bw.Flush()
	if err == nil {
		err = k.w.Finish()
	}
	return errors.Join(err, k.f.Close())
}

// oggSink writes Opus frames to an Ogg Opus file with Pion's writer.
type oggSink struct {
	f   *os.File
	bw  *bufio.Writer
	w   *oggwriter.Writer
	t   *oggwriter.Track
	pkt rtp.Packet
}

func newOggSink(path string) (*oggSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	bw := bufio.NewWriter(f)
	// The multi-track writer ends the stream with an end-of-stream page
	// even on a writer that cannot seek.
	w, err := oggwriter.NewWriter(bw, oggwriter.WithSampleRate(48000), oggwriter.WithChannelCount(2))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("record: %w", err)
	}
	t, err := w.NewTrack(0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("record: %w", err)
	}
	return &oggSink{f: f, bw: bw, w: w, t: t}, nil
}

func (k *oggSink) WriteFrame(fr RemoteFrame) error {
	k.pkt.Timestamp, k.pkt.Payload = fr.Timestamp, fr.Data
	return k.t.WriteRTP(&k.pkt)
}

func (k *oggSink) Close() error {
	err := k.w.Close()
	return errors.Join(err, k.bw.Flush(), k.f.Close())
}
