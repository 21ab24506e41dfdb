package sfu

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/codecs"
	"conclave/internal/conn"
	"conclave/internal/packetcache"
	"conclave/internal/testutil/fakeclock"
)

// sentRTP is one packet as a fake subscriber connection received it.
type sentRTP struct {
	seq    uint16
	ts     uint32
	ssrc   uint32
	marker bool
	pid    uint16
	tl0    uint8
	key    bool
	pad    uint8 // padding bytes of a padding-only packet
	pt     uint8
}

// fakeWriter stands for a subscriber's peer connection.
type fakeWriter struct {
	mu   sync.Mutex
	keep bool
	sent []sentRTP
	n    int
}

func (w *fakeWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n++
	if !w.keep {
		return len(payload), nil
	}
	s := sentRTP{seq: h.SequenceNumber, ts: h.Timestamp, ssrc: h.SSRC, marker: h.Marker, pt: h.PayloadType}
	var v codecs.VP8
	if h.Padding && len(payload) == 0 {
		s.pad = h.PaddingSize
	} else if v.Unmarshal(payload) == nil {
		s.pid, s.tl0, s.key = v.PictureID, v.TL0PICIDX, v.KeyFrame
	}
	w.mu.Lock()
	w.sent = append(w.sent, s)
	w.mu.Unlock()
	return len(payload), nil
}

func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w *fakeWriter) take() []sentRTP {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sent
	w.sent = nil
	return s
}

var vp8Codec = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}

// testTrack builds an up track with n simulcast layers (1: no simulcast)
// and no peer connection.
func testTrack(n int) *UpTrack {
	var rids []string
	if n > 1 {
		rids = []string{"q", "h", "f", "x"}[:n]
	}
	u := newUpTrack(nil, nil, vp8Codec, webrtc.RTPCodecTypeVideo, "alice", "camera", "1", rids)
	for i := 0; i < n; i++ {
		u.layers[i].Store(&upLayer{track: u, index: int8(i), ssrc: uint32(1000 + i), cache: packetcache.New(videoCacheSize)})
	}
	return u
}

func testDown(u *UpTrack, w *fakeWriter) *DownTrack {
	d := newDownTrack(u, conn.TrackOptions{Stream: "alice"})
	d.bind(5555, 100, 0, w)
	d.ready.Store(true) // its connection is up
	u.addDown(d)
	return d
}

// vp8Packet marshals a VP8 packet: a key frame of width x height when
// key, else an inter frame; start marks the first packet of the frame.
func vp8Packet(ssrc uint32, seq uint16, ts uint32, pid uint16, tl0 uint8, key, start, marker bool, width, height int) []byte {
	b0 := byte(0x80)
	if start {
		b0 |= 0x10
	}
	payload := []byte{b0, 0xe0, 0x80 | byte(pid>>8), byte(pid), tl0, 0x00}
	if key {
		payload = append(payload, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, byte(width), byte(width>>8), byte(height), byte(height>>8))
	} else {
		payload = append(payload, 0x51, 0x42, 0x00)
	}
	for len(payload) < 1000 {
		payload = append(payload, 0xee)
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: marker}, Payload: payload}
	raw, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	return raw
}

// source generates one simulcast layer's packets: frames of two packets.
type source struct {
	l     *upLayer
	seq   uint16
	ts    uint32
	pid   uint16
	tl0   uint8
	w, h  int
	clock int64
}

// frame sends one frame; lose lists packet indexes (0, 1) not delivered.
func (s *source) frame(key bool, lose ...int) {
	for i := 0; i < 2; i++ {
		raw := vp8Packet(s.l.ssrc, s.seq, s.ts, s.pid, s.tl0, key && i == 0, i == 0, i == 1, s.w, s.h)
		lost := false
		for _, x := range lose {
			lost = lost || x == i
		}
		if !lost {
			s.l.handle(raw, s.clock)
		}
		s.seq++
	}
	s.ts += 3000
	s.pid = (s.pid + 1) & 0x7fff
	s.tl0++
	s.clock += int64(33 * time.Millisecond)
}

func TestSimulcastSwitchContinuity(t *testing.T) {
	u := testTrack(3)
	w := &fakeWriter{keep: true}
	d := testDown(u, w)
	q := &source{l: u.layers[0].Load(), seq: 65530, ts: 4294960000, pid: 32760, tl0: 254, w: 320, h: 180}
	h := &source{l: u.layers[1].Load(), seq: 30000, ts: 1000000, pid: 100, tl0: 50, w: 640, h: 360}

	// Nothing goes out before a key frame of the target layer.
	q.frame(false)
	h.frame(true)
	if s := w.take(); len(s) != 0 {
		t.Fatalf("forwarded %d packets before a key frame", len(s))
	}
	for i := 0; i < 5; i++ {
		q.frame(i == 0)
		h.frame(false)
	}
	before := w.take()
	if len(before) != 10 || !before[0].key {
		t.Fatalf("layer q: got %d packets, first key=%v", len(before), len(before) > 0 && before[0].key)
	}
	checkContinuous(t, before, 0)

	// Switch up: layer h is followed only from its next key frame.
	d.setTarget(1)
	q.frame(false)
	h.frame(false)
	h.clock += int64(33 * time.Millisecond)
	q.frame(false)
	h.frame(true)
	q.frame(false)
	h.frame(false)
	after := w.take()
	all := append(before, after...)
	checkContinuous(t, all, 0)
	// 2 more frames of q, then h's key frame and one more frame.
	if len(after) != 8 || !after[4].key {
		t.Fatalf("after switch: %d packets, key at 4 = %v", len(after), len(after) > 4 && after[4].key)
	}
	if d.CurrentLayer() != 1 {
		t.Fatalf("current layer %d, want 1", d.CurrentLayer())
	}
	if dt := after[4].ts - after[3].ts; dt == 0 || dt > 9000 {
		t.Errorf("timestamp step at the switch = %d, want about one frame", dt)
	}
	if after[4].ssrc != 5555 {
		t.Errorf("ssrc %d", after[4].ssrc)
	}

	// A loss at the source shows as a gap, not hidden.
	h.frame(false, 0)
	lossy := w.take()
	if len(lossy) != 1 || lossy[0].seq != after[7].seq+2 {
		t.Fatalf("loss not preserved: %+v after %d", lossy, after[7].seq)
	}

	// NACK of a packet sent from layer q before the switch comes back
	// with the subscriber's numbering and picture id.
	want := before[3]
	d.retransmit(&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: want.seq}}})
	re := w.take()
	if len(re) != 1 || re[0] != want {
		t.Fatalf("retransmission %+v, want %+v", re, want)
	}
	// And one from after the switch (layer h).
	want = after[5]
	d.retransmit(&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: want.seq}}})
	if re := w.take(); len(re) != 1 || re[0] != want {
		t.Fatalf("retransmission %+v, want %+v", re, want)
	}
	// Unknown sequence numbers are ignored.
	d.retransmit(&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: want.seq + 500}}})
	if re := w.take(); len(re) != 0 {
		t.Fatalf("retransmitted unknown packet: %+v", re)
	}
}

// checkContinuous verifies that seqs increase by one, picture ids by one
// per frame (wrapping at 2^15) and TL0PICIDX likewise.
func checkContinuous(t *testing.T, s []sentRTP, _ int) {
	t.Helper()
	for i := 1; i < len(s); i++ {
		a, b := s[i-1], s[i]
		if b.seq != a.seq+1 {
			t.Fatalf("packet %d: seq %d after %d", i, b.seq, a.seq)
		}
		if a.marker { // new frame
			if b.pid != (a.pid+1)&0x7fff || b.tl0 != a.tl0+1 {
				t.Fatalf("packet %d: picture id %d tl0 %d after %d %d", i, b.pid, b.tl0, a.pid, a.tl0)
			}
			if int32(b.ts-a.ts) <= 0 {
				t.Fatalf("packet %d: timestamp %d after %d", i, b.ts, a.ts)
			}
		} else if b.pid != a.pid || b.ts != a.ts {
			t.Fatalf("packet %d: picture id or timestamp changed inside a frame", i)
		}
	}
}

func TestPauseResume(t *testing.T) {
	u := testTrack(1)
	w := &fakeWriter{keep: true}
	d := testDown(u, w)
	s := &source{l: u.layers[0].Load(), seq: 10, ts: 10, pid: 1, w: 320, h: 180}
	s.frame(true)
	s.frame(false)
	first := w.take()
	d.setTarget(-1)
	s.frame(false)
	if got := w.take(); len(got) != 0 {
		t.Fatalf("paused track forwarded %d packets", len(got))
	}
	d.setTarget(0)
	s.frame(false)
	s.frame(true)
	got := w.take()
	if len(got) != 2 || !got[0].key {
		t.Fatalf("resume: %d packets, want the key frame only", len(got))
	}
	checkContinuous(t, append(first, got...), 0)
}

func TestMungerSkipAndLate(t *testing.T) {
	m := rtpMunger{clockRate: 90000}
	m.switchTo(65534, 100, 0, false, 0, false, 0)
	type step struct {
		op   string // f: forward, s: skip
		seq  uint16
		want uint16
		ok   bool
	}
	steps := []step{
		{"f", 65534, 65534, true},
		{"s", 65535, 0, false},
		{"f", 0, 65535, true}, // closes over the skipped packet, wraps
		{"f", 2, 1, true},     // 1 lost: gap kept
		{"f", 1, 0, true},     // late but after the last skip: placed
		{"s", 3, 0, false},
		{"f", 4, 2, true},
		{"f", 65535, 0, false}, // late, before the skip: unplaceable
	}
	for i, s := range steps {
		if s.op == "s" {
			m.skip(s.seq)
			continue
		}
		out, ok := m.forward(s.seq, 100, 0, false, 0, false, 0)
		if ok != s.ok || ok && out.seq != s.want {
			t.Errorf("step %d: forward(%d) = %d %v, want %d %v", i, s.seq, out.seq, ok, s.want, s.ok)
		}
	}
}

func TestMungerTimestampAcrossSwitch(t *testing.T) {
	m := rtpMunger{clockRate: 90000}
	m.switchTo(1, 4294967000, 0, false, 0, false, 0)
	out, _ := m.forward(1, 4294967000, 0, false, 0, false, 0)
	if out.ts != 4294967000 {
		t.Fatalf("first ts %d", out.ts)
	}
	// 100 ms later a new stream with an unrelated timeline.
	now := int64(100 * time.Millisecond)
	m.switchTo(777, 5, 0, false, 0, false, now)
	out, _ = m.forward(777, 5, 0, false, 0, false, now)
	if want := uint32(9000 - (1<<32 - 4294967000)); out.ts != want || out.seq != 2 {
		t.Fatalf("after switch ts %d seq %d, want %d 2", out.ts, out.seq, want)
	}
}

func TestSVCSelector(t *testing.T) {
	type pkt struct {
		sid, tid   int8
		key, start bool
		end        bool
		want       decision
		marker     bool
	}
	s := newSVCSelector(1)
	seq := []pkt{
		{0, 0, false, true, true, ignore, false},  // no key frame yet
		{0, 0, true, true, true, forward, false},  // key picture: start at target 1
		{1, 0, false, false, true, forward, true}, // end of layer 1: marker
		{2, 0, false, false, true, skip, false},   // above target
		{0, 1, false, true, true, forward, false},
		{1, 1, false, false, true, forward, true},
	}
	run := func(seq []pkt) {
		t.Helper()
		for i, p := range seq {
			info := &packetInfo{spatial: p.sid, temporal: p.tid, keyFrame: p.key, pictureStart: p.start, layerEnd: p.end}
			d, _, m := s.decide(info)
			if d != p.want || m != p.marker {
				t.Fatalf("packet %d: got %v marker %v, want %v %v", i, d, m, p.want, p.marker)
			}
		}
	}
	run(seq)
	// Up to 2 only at a key picture; down at any picture start.
	s.setTarget(2)
	run([]pkt{
		{0, 0, false, true, true, forward, false},
		{2, 0, false, false, true, skip, false},
		{0, 0, true, true, true, forward, false},
		{2, 0, false, false, true, forward, true},
	})
	s.setTarget(0)
	run([]pkt{
		{1, 0, false, false, true, forward, false}, // mid-picture: still 2
		{0, 0, false, true, true, forward, true},   // new picture: down to 0
		{1, 0, false, false, true, skip, false},
	})
	s.setTarget(-1)
	run([]pkt{{0, 0, true, true, true, ignore, false}})
}

func TestLayerForSize(t *testing.T) {
	u := testTrack(3)
	tests := []struct {
		w, h int
		want int8
	}{
		{160, 90, 0}, {320, 180, 0}, {300, 210, 1}, {640, 360, 1}, {720, 400, 2}, {1920, 1080, 2},
	}
	// Only the top layer's size is known: the others are derived.
	u.stats[2].width.Store(1280)
	u.stats[2].height.Store(720)
	for _, tt := range tests {
		if got := u.layerForSize(tt.w, tt.h); got != tt.want {
			t.Errorf("layerForSize(%d, %d) = %d, want %d", tt.w, tt.h, got, tt.want)
		}
	}
}

func TestAllocate(t *testing.T) {
	costs := [maxLayers]int64{150_000, 500_000, 1_500_000}
	now := time.Unix(1000, 0)
	tests := []struct {
		name   string
		budget int64
		tracks []allocTrack
		want   []int8
	}{
		{"unlimited: size decides", 0,
			[]allocTrack{{max: 2, prev: 2}, {max: 0, prev: 0}, {max: -1, prev: 1}}, []int8{2, 0, -1}},
		{"cap: everyone gets the low layer first", 400_000,
			[]allocTrack{{max: 2, prev: 2}, {max: 2, prev: 2}}, []int8{0, 0}},
		{"priority to the speaker", 900_000,
			[]allocTrack{{max: 2, prev: 1}, {max: 2, prev: 1, priority: 1}}, []int8{0, 1}},
		{"screen before speaker", 1_900_000,
			[]allocTrack{{max: 2, prev: 2, priority: 1}, {max: 2, prev: 2, priority: 2}}, []int8{0, 2}},
		{"upgrade one step with headroom", 3_000_000,
			[]allocTrack{{max: 2, prev: 0}}, []int8{1}},
		{"a tile that grew goes straight to what the estimate allows", 3_000_000,
			[]allocTrack{{max: 2, prev: 0, grew: true}}, []int8{2}},
		{"within the headroom", 1_500_000,
			[]allocTrack{{max: 2, prev: 0, grew: true}}, []int8{1}},
		{"no upgrade without headroom", 560_000,
			[]allocTrack{{max: 2, prev: 0}}, []int8{0}},
		{"keep without headroom", 520_000,
			[]allocTrack{{max: 2, prev: 1}}, []int8{1}},
		{"hidden is paused", 0,
			[]allocTrack{{max: -1, prev: 2}}, []int8{-1}},
	}
	for _, tt := range tests {
		state := map[*DownTrack]*allocState{}
		for i := range tt.tracks {
			tt.tracks[i].costs = costs
			tt.tracks[i].d = &DownTrack{}
		}
		allocate(tt.tracks, tt.budget, now, state, false)
		for i, tr := range tt.tracks {
			if tr.layer != tt.want[i] {
				t.Errorf("%s: track %d got layer %d, want %d", tt.name, i, tr.layer, tt.want[i])
			}
		}
	}
}

func TestAllocateHoldAfterDowngrade(t *testing.T) {
	costs := [maxLayers]int64{150_000, 500_000, 1_500_000}
	d := &DownTrack{}
	state := map[*DownTrack]*allocState{}
	now := time.Unix(1000, 0)
	tr := []allocTrack{{d: d, max: 2, prev: 2, costs: costs}}
	allocate(tr, 600_000, now, state, false) // cap
	if tr[0].layer != 1 {
		t.Fatalf("under the cap: layer %d, want 1", tr[0].layer)
	}
	for i, step := range []struct {
		after time.Duration
		want  int8
	}{{time.Second, 1}, {upgradeHold, 2}} {
		tr[0].prev = tr[0].layer
		allocate(tr, 10_000_000, now.Add(step.after), state, false)
		if tr[0].layer != step.want {
			t.Fatalf("step %d: layer %d, want %d", i, tr[0].layer, step.want)
		}
	}
}

func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("downs=%d", n), func(b *testing.B) {
			u := testTrack(2)
			downs := make([]*DownTrack, n)
			for i := range downs {
				downs[i] = testDown(u, &fakeWriter{})
			}
			q := &source{l: u.layers[0].Load(), seq: 1, ts: 1, pid: 1, w: 320, h: 180}
			h := &source{l: u.layers[1].Load(), seq: 9000, ts: 77, pid: 500, w: 640, h: 360}
			q.frame(true)
			for _, d := range downs {
				d.setTarget(1)
			}
			h.frame(true)
			raws := make([][]byte, 256)
			for i := range raws {
				raws[i] = vp8Packet(h.l.ssrc, uint16(10000+i), uint32(i/2*3000), uint16(600+i/2), uint8(i/2), false, i%2 == 0, i%2 == 1, 0, 0)
			}
			buf := make([]byte, 1500)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				raw := raws[i&255]
				// Advance sequence numbers so that the munger sees
				// in-order packets forever.
				seq := uint16(10000 + i)
				nb := copy(buf, raw)
				buf[2], buf[3] = byte(seq>>8), byte(seq)
				h.l.handle(buf[:nb], int64(i))
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/fanout")
			if d := downs[0]; d.CurrentLayer() != 1 {
				b.Fatalf("not forwarding layer 1")
			}
		})
	}
}

func TestDynacast(t *testing.T) {
	u := testTrack(3)
	ev := &recordingPubEvents{}
	u.dyn.events = ev
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	useClock(&u.dyn, clock)
	// A debounce shorter than topOnlyDelay: this test is not about a top
	// layer that does not come.
	u.dyn.pause = 50 * time.Millisecond
	last := func() string {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return fmt.Sprint(ev.layers)
	}
	a := testDown(u, &fakeWriter{}) // wants layer 0 to start with
	b := testDown(u, &fakeWriter{})
	if got := last(); got != "[]" {
		t.Fatalf("reported %s before any pause", got)
	}
	clock.Advance(u.dyn.pause - time.Millisecond)
	if got := last(); got != "[]" {
		t.Fatalf("reported %s before the debounce ended", got)
	}
	clock.Advance(time.Millisecond)
	if got := last(); got != "[[true false false]]" {
		t.Fatalf("after the debounce: %s", got)
	}
	// Resuming is immediate.
	b.applyAllocation(2, 0)
	if got := last(); got != "[[true false false] [true false true]]" {
		t.Fatalf("after b wants 2: %s", got)
	}
	// Only the top layer wanted: the others pause after the debounce.
	a.applyAllocation(-1, 0)
	if got := last(); got != "[[true false false] [true false true]]" {
		t.Fatalf("paused without debounce: %s", got)
	}
	clock.Advance(u.dyn.pause)
	if got := last(); got != "[[true false false] [true false true] [false false true]]" {
		t.Fatalf("only the top wanted: %s", got)
	}
	// A size that wants a layer keeps it (or resumes it) whatever the
	// allocation.
	a.setSized(1)
	if got := last(); got != "[[true false false] [true false true] [false false true] [false true true]]" {
		t.Fatalf("a size wants the middle layer: %s", got)
	}
	a.setSized(-1)
	// Everyone hidden: all paused after the debounce, not before.
	b.applyAllocation(-1, 0)
	if got := last(); got != "[[true false false] [true false true] [false false true] [false true true]]" {
		t.Fatalf("paused without debounce: %s", got)
	}
	clock.Advance(u.dyn.pause)
	if got := last(); got != "[[true false false] [true false true] [false false true] [false true true] [false false false]]" {
		t.Fatalf("after hiding: %s", got)
	}
}

// TestDynacastTopOnly: a subscriber on the low layer that wants the top
// one keeps the low layer while the top one resumes; if the top layer
// does not come (Chromium sends the top layer of a small capture only
// alone), the low layer pauses, and resumes if the top layer still does
// not come.
func TestDynacastTopOnly(t *testing.T) {
	u := testTrack(3)
	ev := &recordingPubEvents{}
	u.dyn.events = ev
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	useClock(&u.dyn, clock)
	last := func() string {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if len(ev.layers) == 0 {
			return ""
		}
		return fmt.Sprint(ev.layers[len(ev.layers)-1])
	}
	w := &fakeWriter{keep: true}
	d := testDown(u, w)
	q := &source{l: u.layers[0].Load(), seq: 1, ts: 1, pid: 1, w: 160, h: 120}
	q.clock = time.Now().UnixNano()
	q.frame(true)
	if d.CurrentLayer() != 0 {
		t.Fatalf("current layer %d", d.CurrentLayer())
	}
	clock.Advance(dynacastPause)
	if got := last(); got != "[true false false]" {
		t.Fatalf("only the low layer: %s", got)
	}
	if !d.applyAllocation(2, time.Now().UnixNano()) {
		t.Fatal("upgrade to a paused layer not pending")
	}
	if got := last(); got != "[true false true]" {
		t.Fatalf("the top layer resumes next to the low one: %s", got)
	}
	clock.Advance(topOnlyDelay - time.Millisecond)
	d.applyAllocation(2, time.Now().UnixNano()) // a pending round
	if got := last(); got != "[true false true]" {
		t.Fatalf("the low layer paused before topOnlyDelay: %s", got)
	}
	clock.Advance(time.Millisecond)
	d.applyAllocation(2, time.Now().UnixNano())
	if got := last(); got != "[false false true]" {
		t.Fatalf("top only: %s", got)
	}
	// The low layer keeps being forwarded while it still comes.
	q.frame(false)
	if got := w.take(); len(got) != 4 {
		t.Fatalf("forwarded %d packets of the low layer, want 4", len(got))
	}
	clock.Advance(topOnlyWait)
	d.applyAllocation(2, time.Now().UnixNano()) // the next round
	if got := last(); got != "[true false true]" {
		t.Fatalf("the top layer did not come: %s", got)
	}
}

// A layer switch that completes on the forwarding goroutine does not make
// dynacast evaluate there (its report may become a signaling message): the
// evaluation runs on the clock's timer, and then does its work.
func TestDynacastOffThePacketLoop(t *testing.T) {
	u := testTrack(3)
	ev := &recordingPubEvents{}
	u.dyn.events = ev
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	useClock(&u.dyn, clock)
	reports := func() int {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return len(ev.layers)
	}
	d := testDown(u, &fakeWriter{})
	clock.Advance(u.dyn.pause) // the unused layers pause
	d.applyAllocation(1, 0)    // the middle layer resumes at once
	before := reports()
	if before != 2 {
		t.Fatalf("%d reports before the switch, want 2", before)
	}

	armed := clock.Pending() // the debounce of layer 0, which the switch still uses
	h := &source{l: u.layers[1].Load(), seq: 100, ts: 1000, pid: 1, tl0: 1, w: 640, h: 360, clock: clock.Now().UnixNano()}
	h.frame(true) // the switch to layer 1 completes on this goroutine
	if d.CurrentLayer() != 1 {
		t.Fatalf("forwarding layer %d, want 1", d.CurrentLayer())
	}
	if p := clock.Pending(); len(p) != len(armed)+1 || p[0] != 0 || reports() != before {
		t.Fatalf("timers after the switch: %v (before: %v), %d reports; want one more, at once, and no report yet", p, armed, reports()-before)
	}
	h.frame(false)
	if p := clock.Pending(); len(p) != len(armed)+1 {
		t.Fatalf("timers after another frame: %v, want the one evaluation", p)
	}
	clock.Advance(0) // the evaluation runs on the clock's timer
	if p := clock.Pending(); len(p) != 1 || p[0] != u.dyn.pause {
		t.Fatalf("timers after the evaluation: %v, want the pause's debounce", p)
	}
	clock.Advance(u.dyn.pause)
	ev.mu.Lock()
	got := fmt.Sprint(ev.layers[len(ev.layers)-1])
	ev.mu.Unlock()
	if reports() != before+1 || got != "[false true false]" {
		t.Fatalf("after the debounce: %d reports, last %s; want [false true false]", reports()-before, got)
	}
}

// TestNothingBeforeReady: a down track whose subscriber's connection is
// not up forwards nothing, and does not take the key frames that pass
// meanwhile; once ready it starts at the next key frame (the fast join:
// docs/benchmarks.md "Join").
func TestNothingBeforeReady(t *testing.T) {
	u := testTrack(1)
	w := &fakeWriter{keep: true}
	d := newDownTrack(u, conn.TrackOptions{Stream: "alice"})
	d.bind(5555, 100, 0, w)
	u.addDown(d)
	src := &source{l: u.layers[0].Load(), w: 320, h: 180}
	src.frame(true)
	src.frame(false)
	if got := w.take(); len(got) != 0 {
		t.Fatalf("forwarded %d packets before the connection was up", len(got))
	}
	d.setReady()
	src.frame(false) // a delta frame: the decoder could not use it
	if got := w.take(); len(got) != 0 {
		t.Fatalf("forwarded a delta frame first: %+v", got)
	}
	src.frame(true)
	src.frame(false)
	got := w.take()
	if len(got) != 4 || !got[0].key {
		t.Fatalf("after ready: %+v, want the key frame first and then the next frame", got)
	}
}

// TestKeyFrameRequestAfterAnswer: requests for a layer's key frame are
// throttled to one per keyFrameInterval while unanswered, but once a key
// frame has come, the next request (a subscriber whose connection came
// up just after it) goes out after keyFrameAnsweredGap.
func TestKeyFrameRequestAfterAnswer(t *testing.T) {
	clk := fakeclock.New(time.Unix(1000, 0))
	u := newUpTrack(nil, clk, vp8Codec, webrtc.RTPCodecTypeVideo, "alice", "camera", "1", nil)
	l := &upLayer{track: u, index: 0, ssrc: 1000, cache: packetcache.New(videoCacheSize)}
	u.layers[0].Store(l)
	u.requestKeyFrame(0)
	if n := l.keyFrameRequests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	// Unanswered: a second request waits for the interval.
	clk.Advance(100 * time.Millisecond)
	u.requestKeyFrame(0)
	clk.Advance(200 * time.Millisecond)
	if n := l.keyFrameRequests.Load(); n != 1 {
		t.Fatalf("%d requests 300 ms after an unanswered one, want 1", n)
	}
	clk.Advance(keyFrameInterval - 300*time.Millisecond)
	if n := l.keyFrameRequests.Load(); n != 2 {
		t.Fatalf("%d requests after the interval, want 2", n)
	}
	// Answered: the key frame comes, and a newcomer's request goes out
	// keyFrameAnsweredGap after the last one.
	clk.Advance(20 * time.Millisecond)
	l.keyFrameArrived()
	u.requestKeyFrame(0)
	if n := l.keyFrameRequests.Load(); n != 2 {
		t.Fatalf("%d requests 20 ms after the last, want 2", n)
	}
	clk.Advance(keyFrameAnsweredGap - 20*time.Millisecond)
	if n := l.keyFrameRequests.Load(); n != 3 {
		t.Fatalf("%d requests after an answered one and the short gap, want 3", n)
	}
}
