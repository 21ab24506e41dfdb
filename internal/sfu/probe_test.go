package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestPaddingBetweenFrames: padding goes only between frames, takes the
// next sequence numbers and the last timestamp, keeps the stream
// continuous, and a NACK for it is ignored.
func TestPaddingBetweenFrames(t *testing.T) {
	u := testTrack(1)
	w := &fakeWriter{keep: true}
	d := testDown(u, w)
	l := u.layers[0].Load()
	now := time.Now().UnixNano()
	// A key frame of two packets; padding is refused after the first.
	l.handle(vp8Packet(l.ssrc, 100, 9000, 7, 1, true, true, false, 160, 120), now)
	if n := d.writePadding(3, paddingSize, now); n != 0 {
		t.Fatalf("padded %d packets inside a frame", n)
	}
	l.handle(vp8Packet(l.ssrc, 101, 9000, 7, 1, false, false, true, 160, 120), now)
	if n := d.writePadding(3, paddingSize, now); n != 3 {
		t.Fatalf("padded %d packets after a frame, want 3", n)
	}
	// The next frames continue after the padding; a late packet from
	// before it cannot be placed and is dropped.
	l.handle(vp8Packet(l.ssrc, 102, 12000, 8, 2, false, true, false, 160, 120), now)
	l.handle(vp8Packet(l.ssrc, 103, 12000, 8, 2, false, false, true, 160, 120), now)
	l.handle(vp8Packet(l.ssrc, 99, 6000, 6, 0, false, false, true, 160, 120), now)
	// An idle track may be padded after an unfinished frame.
	l.handle(vp8Packet(l.ssrc, 104, 15000, 9, 3, false, true, false, 160, 120), now)
	if n := d.writePadding(1, paddingSize, now+int64(paddingIdle)/2); n != 0 {
		t.Fatalf("padded %d packets inside a frame", n)
	}
	if n := d.writePadding(1, paddingSize, now+int64(paddingIdle)); n != 1 {
		t.Fatalf("padded %d packets on an idle track, want 1", n)
	}

	s := w.take()
	if len(s) != 9 {
		t.Fatalf("sent %d packets, want 9: %+v", len(s), s)
	}
	for i := 1; i < len(s); i++ {
		if s[i].seq != s[i-1].seq+1 {
			t.Fatalf("packet %d: seq %d after %d", i, s[i].seq, s[i-1].seq)
		}
	}
	for i, p := range s {
		isPad := i >= 2 && i <= 4 || i == 8
		if isPad != (p.pad != 0) {
			t.Fatalf("packet %d: padding %d", i, p.pad)
		}
		if p.ssrc != 5555 || p.pt != 100 {
			t.Fatalf("packet %d: ssrc %d pt %d", i, p.ssrc, p.pt)
		}
		if isPad && (p.pad != paddingSize || p.marker || p.ts != s[i-1].ts) {
			t.Fatalf("padding packet %d: %+v after %+v", i, p, s[i-1])
		}
	}
	if s[5].pid != s[1].pid+1 || s[5].ts <= s[1].ts {
		t.Fatalf("frame after the padding: %+v after %+v", s[5], s[1])
	}

	// NACKs: padding is ignored, media is resent with its number.
	d.retransmit(&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: s[3].seq}}})
	if re := w.take(); len(re) != 0 {
		t.Fatalf("retransmitted padding: %+v", re)
	}
	d.retransmit(&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: s[6].seq}}})
	if re := w.take(); len(re) != 1 || re[0] != s[6] {
		t.Fatalf("retransmission %+v, want %+v", re, s[6])
	}
}

func TestPaddingAllocatesNothing(t *testing.T) {
	u := testTrack(1)
	d := testDown(u, &fakeWriter{})
	l := u.layers[0].Load()
	now := time.Now().UnixNano()
	l.handle(vp8Packet(l.ssrc, 1, 9000, 7, 1, true, true, true, 160, 120), now)
	p := newProber(&probeMeter{}, nil)
	clock := time.Unix(1000, 0)
	if !p.begin(clock, d, 2_000_000) {
		t.Fatal("probe did not start")
	}
	if a := testing.AllocsPerRun(20, func() {
		clock = clock.Add(time.Millisecond)
		p.tick(clock)
	}); a != 0 {
		t.Fatalf("%v allocations per tick", a)
	}
	if a := testing.AllocsPerRun(100, func() { d.writePadding(4, paddingSize, now) }); a != 0 {
		t.Fatalf("%v allocations per padding burst", a)
	}
}

// padRecorder is a padder that records what it was asked for.
type padRecorder struct {
	refuse  bool
	packets int
	bursts  []int
}

func (r *padRecorder) writePadding(n int, _ uint8, _ int64) int {
	if r.refuse {
		return 0
	}
	r.packets += n
	r.bursts = append(r.bursts, n)
	return n
}

// sendCluster ticks p's open cluster to its end, the meter counting
// media of mediaRate bits per second besides the padding pad records
// (as the interceptor would, with transport-wide numbers from seq).
func sendCluster(p *prober, m *probeMeter, pad *padRecorder, clock time.Time, mediaRate int64, seq *uint16) time.Time {
	start, media, padded := clock, int64(0), 0
	for {
		for ; media*8*int64(time.Second) < mediaRate*int64(clock.Sub(start)); media += 1000 {
			m.record(p.id, *seq, 1000, clock.UnixNano())
			*seq++
		}
		more := p.tick(clock)
		for ; padded < pad.packets; padded++ {
			m.record(p.id, *seq, paddingWire, clock.UnixNano())
			*seq++
		}
		if !more {
			return clock
		}
		clock = clock.Add(probeTick)
	}
}

// TestProberPacing: the padding brings the rate the meter counts, media
// and padding, to the wanted rate times the margin, spread over the
// cluster; the meter's result decides; failures back off, clusters that
// could not be sent at the goal do not.
func TestProberPacing(t *testing.T) {
	const goal = 1_200_000
	wantBits := goal * probeMargin * probeDuration.Seconds()
	for _, media := range []int64{0, 200_000, 900_000} {
		m := &probeMeter{}
		p := newProber(m, nil)
		clock := time.Unix(1000, 0)
		pad := &padRecorder{}
		if !p.ready(clock) || !p.begin(clock, pad, goal) {
			t.Fatal("probe did not start")
		}
		if p.begin(clock, pad, goal) {
			t.Fatal("second probe started during the first")
		}
		var seq uint16
		sendCluster(p, m, pad, clock, media, &seq)
		gotBits := float64(m.bytes * 8)
		if gotBits < 0.95*wantBits || gotBits > 1.05*wantBits {
			t.Fatalf("media %d: cluster of %.0f bits, want about %.0f", media, gotBits, wantBits)
		}
		for i, n := range pad.bursts {
			if n > 8 { // 1.5 Mbit/s in 10 ms is 7 packets
				t.Fatalf("media %d: burst %d: %d packets", media, i, n)
			}
		}
	}

	m := &probeMeter{}
	results := 0
	p := newProber(m, func() { results++ })
	clock := time.Unix(1000, 0)
	pad := &padRecorder{}
	if !p.begin(clock, pad, goal) {
		t.Fatal("probe did not start")
	}
	for p.tick(clock) {
		clock = clock.Add(probeTick)
	}
	if p.ready(clock) {
		t.Fatal("ready while waiting for feedback")
	}
	// The cluster was empty for the meter (no transport-cc numbers):
	// after the wait, a result that says nothing, and the same interval.
	p.expire(clock.Add(clusterFeedbackWait))
	if results != 1 || p.takeConfirmed() != 0 {
		t.Fatalf("results %d, confirmed after an empty cluster", results)
	}
	if p.interval != probeIntervalMin || p.ready(clock.Add(probeIntervalMin-time.Millisecond)) || !p.ready(clock.Add(probeIntervalMin)) {
		t.Fatalf("interval %v after a cluster that was not sent", p.interval)
	}

	// Clusters sent in full whose feedback reports them lost: a failed
	// result and a longer interval each time.
	var seq uint16
	for _, want := range []time.Duration{min(2*probeIntervalMin, probeIntervalMax), min(4*probeIntervalMin, probeIntervalMax), probeIntervalMax} {
		clock = clock.Add(p.interval)
		if !p.begin(clock, pad, goal) {
			t.Fatal("probe did not start after the interval")
		}
		first := seq
		clock = sendCluster(p, m, pad, clock, 0, &seq)
		m.feedback(&rtcp.TransportLayerCC{BaseSequenceNumber: first, PacketStatusCount: seq - first, ReferenceTime: 1,
			PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: seq - first}}})
		if p.interval != want {
			t.Fatalf("interval %v, want %v", p.interval, want)
		}
		if p.ready(clock.Add(want - time.Millisecond)) {
			t.Fatal("ready before the interval")
		}
	}
	// A tile grew: the next probe may start at once.
	p.expedite()
	if !p.ready(clock) {
		t.Fatal("not ready after expedite")
	}

	// A padder that cannot pad (no frame boundary) sends nothing.
	refuse := &padRecorder{refuse: true}
	if !p.begin(clock, refuse, goal) {
		t.Fatal("probe did not start")
	}
	for p.tick(clock) {
		clock = clock.Add(probeTick)
	}
	if refuse.packets != 0 {
		t.Fatal("padded through a refusing padder")
	}
}

// feedbackFor builds a transport-cc report: packets first..first+n-1,
// received every gap (lost where lost[i]), the first off after
// reference time ref (64 ms units).
func feedbackFor(first uint16, n int, ref uint32, off, gap time.Duration, lost map[int]bool) *rtcp.TransportLayerCC {
	fb := &rtcp.TransportLayerCC{BaseSequenceNumber: first, PacketStatusCount: uint16(n), ReferenceTime: ref}
	at, prev := off, time.Duration(0)
	for i := 0; i < n; i += 7 {
		c := &rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk, SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit}
		for j := i; j < i+7; j++ {
			sym := rtcp.TypeTCCPacketNotReceived
			if j < n && !lost[j] {
				sym = rtcp.TypeTCCPacketReceivedSmallDelta
				d := int64((at - prev) / time.Microsecond)
				if d > 63_750 {
					sym = rtcp.TypeTCCPacketReceivedLargeDelta
				}
				fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: sym, Delta: d})
				prev = at
			}
			if j < n {
				at += gap
			}
			c.SymbolList = append(c.SymbolList, sym)
		}
		fb.PacketChunks = append(fb.PacketChunks, c)
	}
	return fb
}

func TestProbeMeter(t *testing.T) {
	const size = 1000 // bytes
	tests := []struct {
		name       string
		sendGap    time.Duration
		arriveGap  time.Duration
		lost       map[int]bool
		wantRate   int64
		wantResult bool
	}{
		// 1000 bytes every 4 ms: 2 Mbit/s.
		{"link keeps up", 4 * time.Millisecond, 4 * time.Millisecond, nil, 2_000_000, true},
		{"link slower", 4 * time.Millisecond, 8 * time.Millisecond, nil, 1_000_000, true},
		{"arrivals bunched", 4 * time.Millisecond, 2 * time.Millisecond, nil, 2_000_000, true},
		{"too much loss", 4 * time.Millisecond, 4 * time.Millisecond, map[int]bool{3: true, 4: true, 5: true, 6: true, 7: true}, 0, true},
	}
	for _, tt := range tests {
		var got []clusterResult
		m := &probeMeter{done: func(r clusterResult) { got = append(got, r) }}
		// An earlier report sets the reference epoch.
		m.feedback(&rtcp.TransportLayerCC{ReferenceTime: 100})
		m.begin(7)
		now := int64(1e9)
		const n = 20
		for i := 0; i < n; i++ {
			m.record(7, uint16(65530+i), size, now+int64(i)*int64(tt.sendGap))
		}
		m.record(6, 40, size, now) // another cluster's packet: ignored
		m.end(now + n*int64(tt.sendGap))
		if len(got) != 0 {
			t.Fatalf("%s: result before the feedback", tt.name)
		}
		// Feedback in two reports, the first covering part.
		m.feedback(feedbackFor(65530, 10, 101, 0, tt.arriveGap, tt.lost))
		if len(got) != 0 {
			t.Fatalf("%s: result before the feedback covers the cluster", tt.name)
		}
		rest := map[int]bool{}
		for i := range tt.lost {
			if i >= 10 {
				rest[i-10] = true
			}
		}
		m.feedback(feedbackFor(uint16(65530+10-65536), n-10, 101, 10*tt.arriveGap, tt.arriveGap, rest))
		if len(got) != 1 {
			t.Fatalf("%s: %d results", tt.name, len(got))
		}
		r := got[0]
		if r.cluster != 7 || r.packets != n {
			t.Fatalf("%s: %+v", tt.name, r)
		}
		if d := r.rate - tt.wantRate; d < -tt.wantRate/10-1 || d > tt.wantRate/10+1 {
			t.Errorf("%s: rate %d, want about %d (%+v)", tt.name, r.rate, tt.wantRate, r)
		}
	}
}

// TestProbeConfirms: a cluster that shows the goal confirms it; the next
// round of the allocator upgrades at once.
func TestProbeConfirms(t *testing.T) {
	m := &probeMeter{}
	p := newProber(m, nil)
	clock := time.Unix(1000, 0)
	if !p.begin(clock, &padRecorder{}, 1_000_000) {
		t.Fatal("probe did not start")
	}
	start := clock.UnixNano()
	for i := 0; i < 30; i++ { // 1200 bytes every 8 ms: 1.2 Mbit/s
		m.record(p.id, uint16(i), 1200, start+int64(i)*int64(8*time.Millisecond))
	}
	for p.tick(clock) {
		clock = clock.Add(probeTick)
	}
	m.feedback(feedbackFor(0, 30, 5, 0, 8*time.Millisecond, nil))
	if c := p.takeConfirmed(); c < 1_000_000 {
		t.Fatalf("confirmed %d", c)
	}
	if p.takeConfirmed() != 0 {
		t.Fatal("confirmed twice")
	}
	if p.interval != probeIntervalMin || !p.ready(clock.Add(probeIntervalMin)) {
		t.Fatalf("interval %v after a success", p.interval)
	}

	costs := [maxLayers]int64{150_000, 500_000, 900_000}
	tr := []allocTrack{{d: &DownTrack{}, max: 2, prev: 0, costs: costs}}
	allocate(tr, 1_200_000, clock, map[*DownTrack]*allocState{}, false)
	if tr[0].layer != 1 {
		t.Fatalf("without a probe: layer %d, want one step", tr[0].layer)
	}
	tr[0].prev = 0
	state := map[*DownTrack]*allocState{tr[0].d: {lastDowngrade: clock}}
	allocate(tr, 1_200_000, clock, state, true)
	if tr[0].layer != 2 {
		t.Fatalf("after a probe: layer %d, want the top at once", tr[0].layer)
	}
}

func TestBandwidthFloor(t *testing.T) {
	var b bandwidth
	now := time.Unix(1000, 0)
	sentRate := 1_400_000.0
	followed := int64(floorOverSent * sentRate) // as update computes it
	ok := delivery{packets: 100, sent: 1_000_000, arrived: 990_000}
	steps := []struct {
		name                 string
		gcc                  int64
		win                  delivery
		sent, confirmed      int64
		wantBudget, wantFlor int64
	}{
		{"GCC alone", 300_000, ok, 150_000, 0, 300_000, 0},
		{"a probe confirms more", 310_000, ok, 150_000, 1_500_000, 1_500_000, 1_500_000},
		{"the floor holds", 320_000, ok, 1_200_000, 0, 1_500_000, 1_500_000},
		{"the floor follows what is delivered", 330_000, ok, 1_400_000, 0, followed, followed},
		{"GCC grows past the floor", 1_700_000, ok, 1_400_000, 0, 1_700_000, followed},
		// GCC falls on the noise of a busy machine as on a queue: its
		// decreases alone say nothing.
		{"a GCC decrease", 800_000, ok, 1_400_000, 0, followed, followed},
		{"too few packets to tell", 800_000, delivery{packets: 5, sent: 1_000_000, arrived: 100_000, loss: 0.5}, 1_400_000, 0, followed, followed},
		{"arriving slower than sent", 800_000, delivery{packets: 100, sent: 1_400_000, arrived: 900_000}, 1_400_000, 0, 800_000, 0},
		{"a new probe", 800_000, ok, 600_000, 1_000_000, 1_000_000, 1_000_000},
		{"loss", 900_000, delivery{packets: 100, sent: 600_000, arrived: 600_000, loss: 0.2}, 600_000, 0, 900_000, 0},
	}
	for _, s := range steps {
		now = now.Add(allocateInterval)
		got := b.update(now, s.gcc, s.win, s.sent, s.confirmed)
		if got != s.wantBudget || b.floor != s.wantFlor {
			t.Fatalf("%s: budget %d floor %d, want %d %d", s.name, got, b.floor, s.wantBudget, s.wantFlor)
		}
	}
}

// TestDeliveryWindow: the meter's window compares how fast the packets
// reported since the last round were sent and arrived, outside probe
// clusters, and counts the lost.
func TestDeliveryWindow(t *testing.T) {
	m := &probeMeter{}
	m.feedback(&rtcp.TransportLayerCC{ReferenceTime: 100}) // the reference epoch
	now := int64(1e9)
	const n = 40
	for i := 0; i < n; i++ { // 1000 bytes every 4 ms: 2 Mbit/s
		m.record(0, uint16(i), 1000, now+int64(i)*int64(4*time.Millisecond))
	}
	// Arriving every 8 ms (1 Mbit/s), packet 3 lost.
	m.feedback(feedbackFor(0, n, 101, 0, 8*time.Millisecond, map[int]bool{3: true}))
	w := m.takeWindow()
	if w.packets != n || w.loss != 1.0/n {
		t.Fatalf("window %+v", w)
	}
	if w.sent < 1_900_000 || w.sent > 2_100_000 || w.arrived < 950_000 || w.arrived > 1_050_000 {
		t.Fatalf("rates %+v, want 2 Mbit/s sent, 1 arrived", w)
	}
	if !w.congested(congestionRatio) {
		t.Fatal("half the rate arriving is not congestion")
	}
	if w := m.takeWindow(); w.packets != 0 {
		t.Fatalf("taken twice: %+v", w)
	}
	// The same packets reported again count once; cluster packets not
	// at all.
	m.feedback(feedbackFor(0, n, 101, 0, 8*time.Millisecond, nil))
	m.begin(9)
	for i := n; i < 2*n; i++ {
		m.record(9, uint16(i), 1000, now+int64(i)*int64(4*time.Millisecond))
	}
	m.end(now + 2*n*int64(4*time.Millisecond))
	m.feedback(feedbackFor(n, n, 103, 0, 8*time.Millisecond, nil))
	if w := m.takeWindow(); w.packets != 0 {
		t.Fatalf("counted again or counted a cluster: %+v", w)
	}
	if a := testing.AllocsPerRun(100, func() { m.record(0, 7, 1000, now) }); a != 0 {
		t.Fatalf("%v allocations per packet noted", a)
	}
}

// probeGoal is the goal of a probe for want: with the allocator's headroom.
func probeGoal(want float64) int64 { return int64(want / upgradeHeadroom) }

// TestMaybeProbe: a subscriber whose sizes want more than the estimate
// is probed on the track it watches largest, also when it receives about
// as much as the estimate (GCC's estimate hovers around what arrives);
// not when the estimate covers what is wanted.
func TestMaybeProbe(t *testing.T) {
	u := testTrack(3)
	w := &fakeWriter{keep: true}
	d := testDown(u, w)
	q := &source{l: u.layers[0].Load(), seq: 1, ts: 1, pid: 1, w: 160, h: 120}
	q.clock = time.Now().UnixNano()
	q.frame(true)
	costs := [maxLayers]int64{150_000, 500_000, 1_500_000}
	// A paused top layer whose last rate is low: the way up still passes
	// through the middle layer.
	stale := [maxLayers]int64{150_000, 500_000, 100_000}
	tests := []struct {
		name        string
		total, sent int64
		layer       int8
		costs       [maxLayers]int64
		want        bool
		goal        int64
	}{
		{"covered", 3_000_000, 200_000, 2, costs, false, 0},
		{"estimate used up", 300_000, 280_000, 0, costs, true, probeGoal(1_540_000)},
		{"application-limited", 300_000, 180_000, 0, costs, true, probeGoal(1_540_000)},
		{"the middle layer is the dearest", 500_000, 180_000, 0, stale, true, probeGoal(540_000)},
	}
	for _, tt := range tests {
		a := newAllocator(nil, nil, &probeMeter{}, func() []*DownTrack { return nil })
		tracks := []allocTrack{{d: d, max: 2, layer: tt.layer, area: 1280 * 720, costs: tt.costs}}
		a.maybeProbe(tracks, time.Now(), tt.total, 40_000, tt.sent)
		a.probe.mu.Lock()
		started, goal := a.probe.state != probeIdle, a.probe.goal
		a.probe.mu.Unlock()
		a.stop()
		if started != tt.want {
			t.Errorf("%s: probe started %v", tt.name, started)
		}
		if started && goal != tt.goal {
			t.Errorf("%s: goal %d", tt.name, goal)
		}
	}
}

// TestRateAfterPause: the first window after a pause does not span the
// silence (which would make a resumed layer look cheap).
func TestRateAfterPause(t *testing.T) {
	var st layerStats
	now := int64(time.Second)
	send := func(d time.Duration) { // 1000 bytes every 10 ms: 800 kbit/s
		for end := now + int64(d); now < end; now += int64(10 * time.Millisecond) {
			st.measure(1000, true, now)
		}
	}
	send(3 * time.Second)
	now += int64(5 * time.Second) // paused
	send(1500 * time.Millisecond)
	if r := st.lastRate.Load(); r < 700_000 || r > 900_000 {
		t.Fatalf("rate after a pause %d, want about 800000", r)
	}
	// Padding does not make a layer live.
	var pad layerStats
	pad.measure(300, false, now)
	if pad.lastSeen.Load() != 0 {
		t.Fatal("padding marked the layer as sent")
	}
}
