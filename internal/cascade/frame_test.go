package cascade

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"conclave/internal/conn"
	"conclave/internal/meeting"
)

// TestFrames: what one side appends, the other reads back, control and
// media interleaved; a frame over its limit is refused.
func TestFrames(t *testing.T) {
	var b []byte
	b, err := appendControl(b, &control{T: msgEvent, Room: "board", Event: &meeting.Event{Kind: meeting.EventGone, ID: "p1"}})
	if err != nil {
		t.Fatal(err)
	}
	b = appendMedia(b, 7, 2, []byte{0x80, 96, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0xaa})
	b, _ = appendControl(b, &control{T: msgTrack, ID: 7, Room: "board", Track: &conn.RelayTrack{Participant: "p1", Kind: conn.Video}})
	r := bufio.NewReader(bytes.NewReader(b))
	var buf []byte
	typ, payload, buf, err := readFrame(r, buf)
	if err != nil || typ != frameControl {
		t.Fatalf("first frame: %d %v", typ, err)
	}
	c, err := parseControl(payload)
	if err != nil || c.T != msgEvent || c.Event.ID != "p1" {
		t.Fatalf("control: %+v %v", c, err)
	}
	typ, payload, buf, err = readFrame(r, buf)
	if err != nil || typ != frameMedia {
		t.Fatalf("second frame: %d %v", typ, err)
	}
	id, layer, raw := parseMedia(payload)
	if id != 7 || layer != 2 || len(raw) != 13 || raw[12] != 0xaa {
		t.Fatalf("media: %d %d %x", id, layer, raw)
	}
	if typ, _, _, err = readFrame(r, buf); err != nil || typ != frameControl {
		t.Fatalf("third frame: %d %v", typ, err)
	}
	if _, _, _, err = readFrame(r, buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v", err)
	}

	huge := appendHeader(nil, frameMedia, maxMedia+1)
	if _, _, _, err := readFrame(bufio.NewReader(bytes.NewReader(huge)), nil); !errors.Is(err, errFrame) {
		t.Fatalf("oversized media frame: %v", err)
	}
	unknown := appendHeader(nil, 9, 1)
	if _, _, _, err := readFrame(bufio.NewReader(bytes.NewReader(append(unknown, 0))), nil); !errors.Is(err, errFrame) {
		t.Fatalf("unknown frame type: %v", err)
	}
}

// FuzzReadFrame: whatever another node sends, reading it never panics
// nor allocates beyond the limits.
func FuzzReadFrame(f *testing.F) {
	b, _ := appendControl(nil, &control{T: msgPing})
	f.Add(b)
	b, _ = appendControl(nil, &control{T: msgFile, Meeting: "m1", File: "0123456789abcdef0123456789abcdef", Size: 9})
	f.Add(b)
	f.Add(appendMedia(nil, 1, 0, make([]byte, 20)))
	f.Add([]byte{1, 0, 0, 2, '{', '}'})
	f.Add([]byte{2, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for {
			typ, payload, next, err := readFrame(r, buf)
			buf = next
			if err != nil {
				return
			}
			if cap(buf) > maxControl {
				t.Fatalf("buffer grew to %d", cap(buf))
			}
			switch typ {
			case frameControl:
				parseControl(payload)
			case frameMedia:
				parseMedia(payload)
			}
		}
	})
}
