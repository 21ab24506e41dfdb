package sfu

import (
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
)

// pionStatuses expands a transport-cc feedback as Pion parses it: per
// packet, whether it arrived and its arrival time in µs after the
// reference time.
func pionStatuses(fb *rtcp.TransportLayerCC) (recv []bool, at []int64) {
	var t int64
	deltas := fb.RecvDeltas
	add := func(sym uint16) {
		if len(recv) >= int(fb.PacketStatusCount) {
			return
		}
		ok := sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta
		if ok {
			t += deltas[0].Delta
			deltas = deltas[1:]
		}
		recv = append(recv, ok)
		if ok {
			at = append(at, t)
		} else {
			at = append(at, 0)
		}
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for i := 0; i < int(c.RunLength); i++ {
				add(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				add(s)
			}
		}
	}
	return recv, at
}

// randomFeedback builds a feedback with every kind of chunk and delta.
func randomFeedback(r *rand.Rand) *rtcp.TransportLayerCC {
	fb := &rtcp.TransportLayerCC{SenderSSRC: 1, MediaSSRC: 2, BaseSequenceNumber: uint16(r.Uint32()),
		ReferenceTime: r.Uint32() & 0xffffff, FbPktCount: uint8(r.Uint32())}
	n := 0
	for k := r.IntN(6) + 1; k > 0; k-- {
		switch r.IntN(3) {
		case 0:
			sym := uint16(r.IntN(3))
			run := uint16(r.IntN(20) + 1)
			fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{Type: rtcp.TypeTCCRunLengthChunk, PacketStatusSymbol: sym, RunLength: run})
			for i := 0; i < int(run); i++ {
				fb.RecvDeltas = appendDelta(r, fb.RecvDeltas, sym)
			}
			n += int(run)
		case 1:
			syms := make([]uint16, 14)
			for i := range syms {
				syms[i] = uint16(r.IntN(2))
				fb.RecvDeltas = appendDelta(r, fb.RecvDeltas, syms[i])
			}
			fb.PacketChunks = append(fb.PacketChunks, &rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk, SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: syms})
			n += 14
		default:
			syms := make([]uint16, 7)
			for i := range syms {
				syms[i] = uint16(r.IntN(3))
				fb.RecvDeltas = appendDelta(r, fb.RecvDeltas, syms[i])
			}
			fb.PacketChunks = append(fb.PacketChunks, &rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk, SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: syms})
			n += 7
		}
	}
	if len(fb.RecvDeltas) == 0 {
		// Feedback reports at least one packet received (Pion refuses
		// it otherwise).
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{Type: rtcp.TypeTCCRunLengthChunk, PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1})
		fb.RecvDeltas = appendDelta(r, fb.RecvDeltas, rtcp.TypeTCCPacketReceivedSmallDelta)
		n++
	}
	fb.PacketStatusCount = uint16(n)
	dl := 0
	for _, d := range fb.RecvDeltas {
		dl++
		if d.Type == rtcp.TypeTCCPacketReceivedLargeDelta {
			dl++
		}
	}
	padLen := 20 + len(fb.PacketChunks)*2 + dl
	padding := padLen%4 != 0
	for padLen%4 != 0 {
		padLen++
	}
	fb.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Padding: padding, Length: uint16(padLen/4 - 1)}
	return fb
}

func appendDelta(r *rand.Rand, ds []*rtcp.RecvDelta, sym uint16) []*rtcp.RecvDelta {
	switch sym {
	case rtcp.TypeTCCPacketReceivedSmallDelta:
		return append(ds, &rtcp.RecvDelta{Type: sym, Delta: int64(r.IntN(256)) * 250})
	case rtcp.TypeTCCPacketReceivedLargeDelta:
		return append(ds, &rtcp.RecvDelta{Type: sym, Delta: int64(r.IntN(65536)-32768) * 250})
	}
	return ds
}

// TestTWCCReaderAgreesWithPion: the in-place reader reads every status and
// arrival time of random feedback exactly as Pion's parser does, inside a
// compound with a receiver report, a NACK and a PLI, whose fields it reads
// too; and it allocates nothing.
func TestTWCCReaderAgreesWithPion(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		fb := randomFeedback(r)
		comp := []rtcp.Packet{
			&rtcp.ReceiverReport{SSRC: 9, Reports: []rtcp.ReceptionReport{{SSRC: 77, FractionLost: 12, LastSenderReport: 0xabcdef01, Delay: 655}}},
			&rtcp.TransportLayerNack{SenderSSRC: 9, MediaSSRC: 44, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0b101}}},
			&rtcp.PictureLossIndication{SenderSSRC: 9, MediaSSRC: 45},
			fb, // last: only the last packet of a compound may be padded
		}
		raw, err := rtcp.Marshal(comp)
		if err != nil {
			t.Fatal(err)
		}
		// Pion's own reading of what it wrote (it rounds nothing: the
		// deltas are multiples of 250 µs).
		parsed, err := rtcp.Unmarshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		wantRecv, wantAt := pionStatuses(parsed[3].(*rtcp.TransportLayerCC))

		w := rtcpWalker{b: raw}
		var got []rtcpPacket
		for {
			p, ok := w.next()
			if !ok {
				break
			}
			got = append(got, p)
		}
		if len(got) != 4 {
			t.Fatalf("walked %d packets, want 4", len(got))
		}
		var rb []reportBlock
		reportBlocks(&got[0], func(b reportBlock) { rb = append(rb, b) })
		if len(rb) != 1 || rb[0].ssrc != 77 || rb[0].fractionLost != 12 || rb[0].lastSR != 0xabcdef01 || rb[0].delaySinceSR != 655 {
			t.Fatalf("report blocks %+v", rb)
		}
		if got[3].typ != rtcpRTPFB || got[3].count != fmtTWCC || got[3].mediaSSRC() != 2 {
			t.Fatalf("feedback read as type %d fmt %d media %d", got[3].typ, got[3].count, got[3].mediaSSRC())
		}
		var tr twccReader
		if !tr.init(got[3].body) {
			t.Fatal("feedback refused")
		}
		if tr.base != fb.BaseSequenceNumber || tr.ref != int64(fb.ReferenceTime) {
			t.Fatalf("base %d ref %d, want %d %d", tr.base, tr.ref, fb.BaseSequenceNumber, fb.ReferenceTime)
		}
		k := 0
		for {
			seq, ok, at, more := tr.next()
			if !more {
				break
			}
			if seq != fb.BaseSequenceNumber+uint16(k) || ok != wantRecv[k] || at != wantAt[k] {
				t.Fatalf("feedback %d, status %d: seq %d received %v at %d; want %d %v %d", i, k, seq, ok, at, fb.BaseSequenceNumber+uint16(k), wantRecv[k], wantAt[k])
			}
			k++
		}
		if k != len(wantRecv) {
			t.Fatalf("read %d statuses, want %d", k, len(wantRecv))
		}
		var nacked []uint16
		nackEach(&got[1], func(s uint16) { nacked = append(nacked, s) })
		if got[1].mediaSSRC() != 44 || len(nacked) != 3 || nacked[0] != 100 || nacked[1] != 101 || nacked[2] != 103 {
			t.Fatalf("nack for %d: %v", got[1].mediaSSRC(), nacked)
		}
		if got[2].typ != rtcpPSFB || got[2].count != fmtPLI || got[2].mediaSSRC() != 45 {
			t.Fatalf("PLI read as %+v", got[2])
		}
	}
	raw, _ := rtcp.Marshal([]rtcp.Packet{randomFeedback(r)})
	allocs := testing.AllocsPerRun(100, func() {
		w := rtcpWalker{b: raw}
		p, _ := w.next()
		var tr twccReader
		tr.init(p.body)
		for {
			if _, _, _, ok := tr.next(); !ok {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("reading feedback allocates %.0f times", allocs)
	}
}

// FuzzRTCPWalk: no input makes the walker or the readers read out of
// bounds or loop without end; and where Pion parses a transport-cc
// feedback, the reader agrees with it.
func FuzzRTCPWalk(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 8; i++ {
		raw, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 1},
			&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: 5}}},
			&rtcp.TransportLayerNack{MediaSSRC: 3, Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0xffff}}}, randomFeedback(r)})
		f.Add(raw)
	}
	f.Add([]byte{0x80, 201, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := rtcpWalker{b: b}
		for n := 0; ; n++ {
			p, ok := w.next()
			if !ok {
				break
			}
			if n > len(b) {
				t.Fatal("walker does not advance")
			}
			nackEach(&p, func(uint16) {})
			firSSRCs(&p, func(uint32) {})
			reportBlocks(&p, func(reportBlock) {})
			_ = p.mediaSSRC()
			var tr twccReader
			if p.typ == rtcpRTPFB && p.count == fmtTWCC && tr.init(p.body) {
				statuses := 0
				for {
					if _, _, _, ok := tr.next(); !ok {
						break
					}
					statuses++
					if statuses > 65535 {
						t.Fatal("reader does not end")
					}
				}
			}
		}
	})
}
