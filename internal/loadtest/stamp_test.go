package loadtest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"conclave/internal/client"
)

func TestStamp(t *testing.T) {
	frame := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00, 0xaa}
	s := Stamp{Seq: 0x01020304, Sent: time.Date(2026, 11, 22, 0, 0, 0, 5, time.UTC).UnixNano(), Layer: 2}
	b := AppendStamp(nil, frame, s)
	if len(b) != len(frame)+stampLen || !bytes.HasPrefix(b, frame) || !bytes.HasSuffix(b, []byte("\x02\x01CCLT")) {
		t.Fatalf("stamped frame %x", b)
	}
	got, gs, err := ParseStamp(b)
	if err != nil || !bytes.Equal(got, frame) || gs != s {
		t.Fatalf("ParseStamp = %x, %+v, %v", got, gs, err)
	}
	for name, bad := range map[string][]byte{
		"short":       b[:stampLen-1],
		"no magic":    append(bytes.Clone(b[:len(b)-1]), 'X'),
		"version 2":   bytes.Replace(bytes.Clone(b), []byte("\x01CCLT"), []byte("\x02CCLT"), 1),
		"zero time":   AppendStamp(nil, frame, Stamp{Seq: 1}),
		"no trailer":  frame,
		"stamp alone": AppendStamp(nil, nil, Stamp{Sent: -1}),
	} {
		if _, _, err := ParseStamp(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// failing refuses every other frame, like an encryption without a key.
type failing struct{ n int }

func (f *failing) TransformFrame(info client.FrameInfo, frame, dst []byte) ([]byte, error) {
	f.n++
	if f.n%2 == 0 {
		return nil, errors.New("no key")
	}
	return append(dst, frame...), nil
}

// TestStamper: sequence numbers count per source and layer, and only the
// frames that were sent.
func TestStamper(t *testing.T) {
	st := newStamper(&failing{})
	cam := client.FrameInfo{Codec: client.CodecVP8, Source: "camera", Layer: 1}
	mic := client.FrameInfo{Codec: client.CodecOpus, Source: "microphone"}
	var seqs []uint32
	for i := range 6 {
		info := cam
		if i >= 4 {
			info = mic
		}
		out, err := st.TransformFrame(info, []byte{1, 2, 3}, nil)
		if err != nil {
			continue
		}
		frame, s, err := ParseStamp(out)
		if err != nil || !bytes.Equal(frame, []byte{1, 2, 3}) || int(s.Layer) != info.Layer {
			t.Fatalf("frame %d: %x %+v %v", i, out, s, err)
		}
		seqs = append(seqs, s.Seq)
	}
	if len(seqs) != 3 || seqs[0] != 0 || seqs[1] != 1 || seqs[2] != 0 {
		t.Errorf("sequence numbers %v, want camera 0, 1 then microphone 0", seqs)
	}
}

func FuzzParseStamp(f *testing.F) {
	f.Add(AppendStamp(nil, []byte{1, 2, 3}, Stamp{Seq: 7, Sent: 1, Layer: 1}))
	f.Add([]byte("CCLT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		frame, s, err := ParseStamp(b)
		if err != nil {
			return
		}
		if len(frame) != len(b)-stampLen || s.Sent <= 0 {
			t.Fatalf("accepted %x as %+v", b, s)
		}
		again := AppendStamp(nil, frame, s)
		if !bytes.Equal(again, b) {
			t.Fatalf("%x does not round-trip: %x", b, again)
		}
	})
}
