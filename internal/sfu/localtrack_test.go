package sfu

import (
	"bytes"
	"sync"
	"testing"

	"github.com/pion/rtp"

	"conclave/internal/conn"
)

type recordingSink struct {
	mu   sync.Mutex
	got  [][]byte
	seqs []uint16
}

func (s *recordingSink) WriteRTP(packet []byte) {
	var p rtp.Packet
	if p.Unmarshal(packet) != nil {
		return
	}
	s.mu.Lock()
	s.got = append(s.got, append([]byte(nil), packet...))
	s.seqs = append(s.seqs, p.SequenceNumber)
	s.mu.Unlock()
}

func (s *recordingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func opusPacket(t *testing.T, seq uint16, payload []byte) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 7},
		Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A local track forwards what its writer gives it to the sinks of the
// track, unchanged, stops for a host's mute and after Close, and a
// removed sink hears nothing more.
func TestLocalTrackFeedsSinks(t *testing.T) {
	e := &Engine{}
	lt, err := e.NewLocalTrack("p1", conn.Microphone, "audio/opus")
	if err != nil {
		t.Fatal(err)
	}
	if lt.Kind() != conn.Audio || lt.Codec() != "audio/opus" || lt.Participant() != "p1" || lt.Source() != conn.Microphone {
		t.Fatalf("local track: kind %s codec %s participant %s source %s", lt.Kind(), lt.Codec(), lt.Participant(), lt.Source())
	}
	up, ok := ownTrack(lt)
	if !ok {
		t.Fatal("the engine does not recognise its own local track")
	}
	a, b := &recordingSink{}, &recordingSink{}
	up.AddSink(a)
	up.AddSink(b)
	first := opusPacket(t, 1, []byte("frame one"))
	if err := lt.WriteRTP(first); err != nil {
		t.Fatal(err)
	}
	if a.count() != 1 || b.count() != 1 || !bytes.Equal(a.got[0], first) {
		t.Fatalf("sinks got %d and %d packets", a.count(), b.count())
	}
	up.RemoveSink(b)
	lt.SetMuted(true)
	_ = lt.WriteRTP(opusPacket(t, 2, []byte("muted")))
	lt.SetMuted(false)
	_ = lt.WriteRTP(opusPacket(t, 3, []byte("frame three")))
	if a.count() != 2 || a.seqs[1] != 3 {
		t.Fatalf("sink a got sequence numbers %v; want 1 and 3 (2 was muted)", a.seqs)
	}
	if b.count() != 1 {
		t.Fatalf("a removed sink got %d packets", b.count())
	}
	lt.Close()
	if err := lt.WriteRTP(opusPacket(t, 4, []byte("late"))); err == nil || a.count() != 2 {
		t.Fatalf("a closed track forwarded (err %v, %d packets)", err, a.count())
	}
	if _, err := e.NewLocalTrack("p1", conn.Camera, "audio/opus"); err == nil {
		t.Fatal("a camera track carrying Opus was accepted")
	}
	if _, err := e.NewLocalTrack("p1", conn.Microphone, "audio/PCMU"); err == nil {
		t.Fatal("a codec the engine does not negotiate was accepted")
	}
}
