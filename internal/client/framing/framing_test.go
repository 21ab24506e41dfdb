package framing

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// packets packetizes frames into RTP packets, one frame per 3000 ticks.
func packets(t *testing.T, p Packetizer, frames [][]byte) []*rtp.Packet {
	t.Helper()
	var out []*rtp.Packet
	seq := uint16(65530) // wraps during the test
	for i, f := range frames {
		err := p.Packetize(f, func(payload []byte, last bool) error {
			out = append(out, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(i) * 3000, Marker: last},
				Payload: bytes.Clone(payload)})
			seq++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func testFrames(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	frames := make([][]byte, n)
	for i := range frames {
		f := make([]byte, 1+r.IntN(4000))
		for j := range f {
			f[j] = byte(r.Uint32())
		}
		frames[i] = f
	}
	return frames
}

func collect(a *Assembler, pkts []*rtp.Packet) (out [][]byte, losses int) {
	for _, p := range pkts {
		a.Push(p, func(f Frame) {
			out = append(out, bytes.Clone(f.Data))
			if f.AfterLoss {
				losses++
			}
		})
	}
	return out, losses
}

func TestVP8RoundTrip(t *testing.T) {
	frames := testFrames(40)
	pkts := packets(t, &VP8Packetizer{}, frames)
	for _, p := range pkts {
		if len(p.Payload) > MaxPayload {
			t.Fatalf("payload of %d bytes", len(p.Payload))
		}
		// Pion's own depacketizer agrees with ours.
		var v codecs.VP8Packet
		if _, err := v.Unmarshal(p.Payload); err != nil || v.I != 1 {
			t.Fatalf("pion rejects the descriptor: %v", err)
		}
	}
	tests := map[string]func([]*rtp.Packet) []*rtp.Packet{
		"in order": func(p []*rtp.Packet) []*rtp.Packet { return p },
		"reordered": func(p []*rtp.Packet) []*rtp.Packet {
			q := append([]*rtp.Packet(nil), p...)
			for i := 0; i+3 < len(q); i += 4 {
				q[i+1], q[i+3] = q[i+3], q[i+1]
			}
			return q
		},
		"duplicated": func(p []*rtp.Packet) []*rtp.Packet {
			var q []*rtp.Packet
			for _, x := range p {
				q = append(q, x, x)
			}
			return q
		},
	}
	for name, arrange := range tests {
		t.Run(name, func(t *testing.T) {
			got, losses := collect(NewAssembler(VP8{}, 128, 32), arrange(pkts))
			if len(got) != len(frames) || losses != 0 {
				t.Fatalf("got %d frames, %d losses; want %d, 0", len(got), losses, len(frames))
			}
			for i := range got {
				if !bytes.Equal(got[i], frames[i]) {
					t.Fatalf("frame %d differs", i)
				}
			}
		})
	}
}

func TestVP8Loss(t *testing.T) {
	frames := testFrames(30)
	pkts := packets(t, &VP8Packetizer{}, frames)
	// Drop the 10th packet; the frame holding it must go, the others
	// arrive, and the next frame reports the loss.
	var q []*rtp.Packet
	q = append(q, pkts[:10]...)
	q = append(q, pkts[11:]...)
	got, losses := collect(NewAssembler(VP8{}, 128, 8), q)
	if len(got) != len(frames)-1 || losses != 1 {
		t.Fatalf("got %d frames, %d losses; want %d, 1", len(got), losses, len(frames)-1)
	}
	for _, g := range got {
		found := false
		for _, f := range frames {
			found = found || bytes.Equal(g, f)
		}
		if !found {
			t.Fatal("assembled a frame that was never sent")
		}
	}
}

func TestOpusLoss(t *testing.T) {
	frames := testFrames(20)
	for i := range frames {
		frames[i] = frames[i][:min(len(frames[i]), 200)]
	}
	pkts := packets(t, OpusPacketizer{}, frames)
	q := append(append([]*rtp.Packet(nil), pkts[:5]...), pkts[6:]...)
	got, losses := collect(NewAssembler(Opus{}, 16, 3), q)
	if len(got) != 19 || losses != 1 {
		t.Fatalf("got %d frames, %d losses; want 19, 1", len(got), losses)
	}
}

func TestAssemblerJump(t *testing.T) {
	a := NewAssembler(Opus{}, 16, 3)
	n := 0
	a.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1}, Payload: []byte{1}}, func(Frame) { n++ })
	a.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 30000}, Payload: []byte{2}}, func(f Frame) {
		n++
		if !f.AfterLoss {
			t.Error("jump not reported as loss")
		}
	})
	if n != 2 {
		t.Fatalf("got %d frames, want 2", n)
	}
}

func BenchmarkAssembleVP8(b *testing.B) {
	frames := testFrames(64)
	var t testing.T
	pkts := packets(&t, &VP8Packetizer{}, frames)
	a := NewAssembler(VP8{}, 128, 32)
	b.ReportAllocs()
	b.ResetTimer()
	seq := uint16(0)
	for i := 0; i < b.N; i++ {
		for _, p := range pkts {
			p.SequenceNumber = seq
			seq++
			a.Push(p, func(Frame) {})
		}
	}
}

func FuzzAssembler(f *testing.F) {
	f.Add([]byte{0x90, 0x80, 0x81, 0x02, 0x10, 0x20}, uint16(1), true)
	f.Add([]byte{0x10, 0x00}, uint16(65535), false)
	f.Fuzz(func(t *testing.T, payload []byte, seq uint16, marker bool) {
		a := NewAssembler(VP8{}, 16, 4)
		for i := range 3 {
			a.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq + uint16(i*7), Marker: marker}, Payload: payload}, func(f Frame) {
				if len(f.Data) > len(payload)*3 {
					t.Fatalf("frame of %d bytes from %d-byte payloads", len(f.Data), len(payload))
				}
			})
		}
	})
}

func TestVP9Header(t *testing.T) {
	tests := []struct {
		name  string
		p     []byte
		n     int
		start bool
		ok    bool
	}{
		{"begin, 15-bit picture id", []byte{0x88, 0x80, 0x01, 0xaa}, 3, true, true},
		{"middle, 7-bit picture id", []byte{0x80, 0x01, 0xaa}, 2, false, true},
		{"layer 1 begin, non-flexible", []byte{0xa8, 0x01, 0x02, 0x00, 0xaa}, 4, false, true},
		{"layer 0 begin, non-flexible", []byte{0xa8, 0x01, 0x00, 0x00, 0xaa}, 4, true, true},
		{"flexible with two diffs", []byte{0xd8, 0x01, 0x03, 0x02, 0xaa}, 4, true, true},
		{"scalability structure with sizes", []byte{0x0a, 0x10, 1, 2, 3, 4, 0xaa}, 6, true, true},
		{"truncated picture id", []byte{0x80}, 0, false, false},
		{"no data", []byte{0x08}, 0, false, false},
	}
	for _, tt := range tests {
		n, start, ok := VP9{}.Header(tt.p)
		if n != tt.n || start != tt.start || ok != tt.ok {
			t.Errorf("%s: got %d %v %v, want %d %v %v", tt.name, n, start, ok, tt.n, tt.start, tt.ok)
		}
	}
}

func FuzzHeaders(f *testing.F) {
	f.Add([]byte{0x88, 0x80, 0x01, 0xaa})
	f.Add([]byte{0x90, 0xe0, 0x81, 0x02, 0x03, 0x04, 0x05})
	f.Add([]byte{0x0a, 0x18, 1, 2, 3, 4, 2, 0x04, 0x01, 0x08, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, d := range []Depacketizer{VP8{}, VP9{}, Opus{}} {
			if n, _, ok := d.Header(p); ok && (n < 0 || n >= len(p)) {
				t.Fatalf("%T: header length %d of a %d-byte payload", d, n, len(p))
			}
		}
	})
}

// TestPadding: padding-only packets between frames, as a server sends to
// probe a subscriber's bandwidth, take sequence numbers but hold up no
// frame and count as no loss, for video and audio.
func TestPadding(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    Packetizer
		dep  Depacketizer
	}{{"vp8", &VP8Packetizer{}, VP8{}}, {"opus", OpusPacketizer{}, Opus{}}} {
		frames := testFrames(20)
		for i := range frames {
			frames[i] = frames[i][:min(len(frames[i]), 1000)]
		}
		var q []*rtp.Packet
		seq := uint16(65000)
		for i, f := range frames {
			tt.p.Packetize(f, func(payload []byte, last bool) error {
				q = append(q, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(i) * 3000, Marker: last},
					Payload: bytes.Clone(payload)})
				seq++
				return nil
			})
			if i%5 == 2 {
				for range 3 { // a probe cluster, with the last frame's timestamp
					q = append(q, &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: uint32(i) * 3000, Padding: true, PaddingSize: 200}})
					seq++
				}
			}
		}
		var got [][]byte
		losses := 0
		a := NewAssembler(tt.dep, 512, 128)
		for _, p := range q {
			before := len(got)
			a.Push(p, func(f Frame) {
				got = append(got, bytes.Clone(f.Data))
				if f.AfterLoss {
					losses++
				}
			})
			if !p.Padding && p.Marker || tt.name == "opus" && !p.Padding {
				if len(got) != before+1 {
					t.Fatalf("%s: the frame ending at %d is held up", tt.name, p.SequenceNumber)
				}
			}
		}
		if len(got) != len(frames) || losses != 0 {
			t.Fatalf("%s: %d frames, %d losses; want %d, 0", tt.name, len(got), losses, len(frames))
		}
		for i := range got {
			if !bytes.Equal(got[i], frames[i]) {
				t.Fatalf("%s: frame %d differs", tt.name, i)
			}
		}
	}
}

// TestMaxWait: on a stream too slow to bring maxLate packets soon, a
// missing packet is given up once newer media is maxWait ahead.
func TestMaxWait(t *testing.T) {
	frames := testFrames(30)
	for i := range frames {
		frames[i] = frames[i][:min(len(frames[i]), 500)] // one packet each
	}
	pkts := packets(t, &VP8Packetizer{}, frames) // 3000 ticks per frame
	q := append(append([]*rtp.Packet(nil), pkts[:5]...), pkts[6:]...)
	a := NewAssembler(VP8{}, 512, 128)
	a.SetMaxWait(9000) // three frames
	var got int
	losses := 0
	for i, p := range q {
		a.Push(p, func(f Frame) {
			got++
			if f.AfterLoss {
				losses++
			}
		})
		// Frame 5 is lost: frames 6 to 9 wait; frame 10 is more than
		// 9000 ticks after frame 6: then they all come.
		if p.Timestamp == 9*3000 && got != 5 {
			t.Fatalf("after packet %d (frame 9): %d frames out, want 5", i, got)
		}
		if p.Timestamp == 10*3000 && got != 10 {
			t.Fatalf("after packet %d (frame 10): %d frames out, want 10", i, got)
		}
	}
	if got != 29 || losses != 1 {
		t.Errorf("%d frames, %d losses; want 29, 1", got, losses)
	}
}

// TestMaxWaitJump: a stream whose timestamps jump forward (a server
// resuming a paused track continues the timeline with the time elapsed)
// still has its frames of several packets rebuilt.
func TestMaxWaitJump(t *testing.T) {
	frames := testFrames(20)
	for i := range frames {
		frames[i] = append(frames[i], make([]byte, 3000)...) // several packets each
	}
	pkts := packets(t, &VP8Packetizer{}, frames)
	for _, p := range pkts {
		if p.Timestamp >= 10*3000 {
			p.Timestamp += 90000 * 20 // 20 s later
		}
	}
	a := NewAssembler(VP8{}, 512, 128)
	a.SetMaxWait(9000)
	got, losses := collect(a, pkts)
	if len(got) != len(frames) || losses != 0 {
		t.Fatalf("%d frames, %d losses; want %d, 0", len(got), losses, len(frames))
	}
}
