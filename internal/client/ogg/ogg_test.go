package ogg

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"conclave/internal/client/media"
)

func TestReadClip(t *testing.T) {
	r := NewReader(bytes.NewReader(media.AudioOgg))
	var pkts [][]byte
	for {
		p, err := r.ReadPacket(nil)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
	}
	if len(pkts) < 100 || !bytes.HasPrefix(pkts[0], []byte("OpusHead")) || !bytes.HasPrefix(pkts[1], []byte("OpusTags")) {
		t.Fatalf("read %d packets; want OpusHead, OpusTags and 200 frames", len(pkts))
	}
}

// TestRoundTrip writes packets with Pion's writer, including one that
// spans pages, and reads them back.
func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := oggwriter.NewWith(&buf, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{{0x78, 1, 2}, bytes.Repeat([]byte{0x78}, 600), {0x78}}
	for i, f := range frames {
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(i * 960)}, Payload: f}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	var got [][]byte
	for {
		p, err := r.ReadPacket(nil)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if len(got) < 5 {
		t.Fatalf("got %d packets", len(got))
	}
	for i, f := range frames {
		if !bytes.Equal(got[2+i], f) {
			t.Fatalf("packet %d differs", i)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add(media.AudioOgg[:300])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for range 100 {
			if _, err := r.ReadPacket(nil); err != nil {
				return
			}
		}
	})
}
