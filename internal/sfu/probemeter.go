package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// The probe meter measures what a subscriber's link delivers. It is an
// interceptor on the subscriber's connection, placed inside the one that
// stamps transport-wide sequence numbers: it notes the number, size and
// send time of every packet sent, and reads the arrival times that the
// subscriber's transport-cc feedback reports for them. For a probe
// cluster (the packets sent while one is open, media and padding alike)
// it computes the cluster's rate as the lower of the rate it was sent at
// and the rate it arrived at. The send-side estimator (GCC) cannot do
// this itself: its estimate grows by at most 8% a second and never above
// 1.5 times the acknowledged rate, so an application-limited subscriber
// never shows more capacity than it uses. For everything else it keeps a
// window, taken by each allocation round: how fast the packets reported
// since the last round (outside clusters) were sent and how fast they
// arrived, and how many were lost. A link that delivers markedly slower than it is given is
// congested; comparing volumes over half a second is not fooled, as
// GCC's delay gradient is, by the scheduling noise of a busy machine
// (send times are noted before the packets are encrypted and written,
// and a key frame's burst can take a starved process tens of
// milliseconds to write).

const (
	transportCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
	meterSize      = 2048 // packets remembered per cluster, a power of two
	// clusterFeedbackWait bounds the wait for feedback after a cluster.
	clusterFeedbackWait = time.Second
	// clusterMinReceived is the share of a cluster's packets that must be
	// reported received for a result.
	clusterMinReceived = 0.8
	clusterMinPackets  = 5
)

type meterEntry struct {
	seq     uint16
	cluster uint32 // 0: sent outside clusters
	size    int32
	sent    int64 // unix nanoseconds
	arrival int64 // feedback time base, microseconds
	arrived bool
	noted   bool // recorded, and feedback has not reported it yet
}

// deliveryWindow accumulates the packets that feedback reported since
// the window was last taken.
type deliveryWindow struct {
	packets, lost       int
	sentBytes           int64
	firstSent, lastSent int64 // unix nanoseconds
	lastSentSize        int64
	recvBytes           int64
	firstArr, lastArr   int64 // feedback time base, microseconds
	lastArrSize         int64
}

// delivery is what a window showed.
type delivery struct {
	packets int
	loss    float64 // share of the reported packets lost
	sent    int64   // bits per second they were sent at
	arrived int64   // bits per second they arrived at
}

// windowMinPackets is the fewest packets a window needs to show rates.
const windowMinPackets = 20

// congested reports whether the window shows a link delivering less than
// ratio times what it was given.
func (d delivery) congested(ratio float64) bool {
	return d.packets >= windowMinPackets && d.sent > 0 && float64(d.arrived) < ratio*float64(d.sent)
}

// probeMeter is one subscriber connection's cluster bookkeeping.
type probeMeter struct {
	interceptor.NoOp
	open atomic.Uint32 // id of the cluster being sent, 0 none

	mu       sync.Mutex
	entries  [meterSize]meterEntry
	cluster  uint32 // latest cluster (sent or awaiting feedback)
	first    uint16 // its first transport sequence number
	count    int    // its packets
	closed   bool   // no more packets will join it
	closedAt int64
	reported uint16 // packets of it covered by feedback (from first)
	refBase  int64  // feedback reference time of the previous report, 64 ms units
	haveRef  bool
	bytes    int64 // sent in the open cluster
	win      deliveryWindow
	done     func(clusterResult) // called once per cluster, without mu
}

// clusterResult is what a cluster showed.
type clusterResult struct {
	cluster  uint32
	rate     int64 // bits per second; 0 when nothing could be measured
	send     int64 // rate it was sent at
	recv     int64 // rate it arrived at
	packets  int
	received int
}

// lossy reports whether too few of the cluster's packets arrived for a
// rate.
func (r clusterResult) lossy() bool {
	return r.packets >= clusterMinPackets && float64(r.received) < clusterMinReceived*float64(r.packets)
}

// begin opens cluster id: packets sent from now on belong to it.
func (m *probeMeter) begin(id uint32) {
	m.mu.Lock()
	m.cluster, m.count, m.closed, m.reported, m.bytes = id, 0, false, 0, 0
	m.mu.Unlock()
	m.open.Store(id)
}

// sentBits is what the open cluster has sent so far, in bits.
func (m *probeMeter) sentBits() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes * 8
}

// end closes the open cluster at now; its result comes with the feedback
// (or after clusterFeedbackWait, see expire).
func (m *probeMeter) end(now int64) {
	m.open.Store(0)
	m.mu.Lock()
	m.closed, m.closedAt = true, now
	r, ok := m.finishLocked(false)
	done := m.done
	m.mu.Unlock()
	if ok && done != nil {
		done(r)
	}
}

// expire delivers the result of a closed cluster whose feedback is
// overdue.
func (m *probeMeter) expire(now int64) {
	m.mu.Lock()
	var r clusterResult
	ok := false
	if m.closed && m.cluster != 0 && now-m.closedAt >= int64(clusterFeedbackWait) {
		r, ok = m.finishLocked(true)
	}
	done := m.done
	m.mu.Unlock()
	if ok && done != nil {
		done(r)
	}
}

// record notes a packet sent, while cluster id is open (0: none).
// Packets written by different goroutines may reach it slightly out of
// stamping order. It allocates nothing.
func (m *probeMeter) record(id uint32, seq uint16, size int, now int64) {
	m.mu.Lock()
	e := &m.entries[seq&(meterSize-1)]
	if id != 0 && id == m.cluster && !m.closed {
		if m.count == 0 {
			m.first = seq
		}
		if off := int(uint16(seq - m.first)); off < meterSize/2 {
			m.count = max(m.count, off+1)
			m.bytes += int64(size)
		} else {
			id = 0
		}
	} else {
		id = 0
	}
	*e = meterEntry{seq: seq, cluster: id, size: int32(size), sent: now, noted: true}
	m.mu.Unlock()
}

// takeWindow returns what the feedback reported since the last call.
func (m *probeMeter) takeWindow() delivery {
	m.mu.Lock()
	w := m.win
	m.win = deliveryWindow{}
	m.mu.Unlock()
	d := delivery{packets: w.packets}
	if w.packets == 0 {
		return d
	}
	d.loss = float64(w.lost) / float64(w.packets)
	// The last packet's bytes arrive after the interval measured.
	if dt := w.lastSent - w.firstSent; dt > 0 {
		d.sent = (w.sentBytes - w.lastSentSize) * 8 * int64(time.Second) / dt
	}
	if dt := w.lastArr - w.firstArr; dt > 0 {
		d.arrived = (w.recvBytes - w.lastArrSize) * 8 * 1_000_000 / dt
	}
	return d
}

// countLocked adds a reported packet to the window.
func (w *deliveryWindow) countLocked(e *meterEntry, received bool, arrival int64) {
	size := int64(e.size)
	if w.packets == 0 || e.sent < w.firstSent {
		w.firstSent = e.sent
	}
	if e.sent >= w.lastSent {
		w.lastSent, w.lastSentSize = e.sent, size
	}
	w.packets++
	w.sentBytes += size
	if !received {
		w.lost++
		return
	}
	if w.recvBytes == 0 || arrival < w.firstArr {
		w.firstArr = arrival
	}
	if w.recvBytes == 0 || arrival >= w.lastArr {
		w.lastArr, w.lastArrSize = arrival, size
	}
	w.recvBytes += size
}

// feedback applies one transport-cc report parsed by Pion (the
// connections whose packets Pion's interceptors send; the server's own
// send path reads its reports in place, sendpath.go).
func (m *probeMeter) feedback(fb *rtcp.TransportLayerCC) {
	t := m.feedbackBegin(int64(fb.ReferenceTime & 0xffffff))
	seq := fb.BaseSequenceNumber
	deltas := fb.RecvDeltas
	remaining := int(fb.PacketStatusCount)
	status := func(sym uint16) {
		received := sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta
		if received && len(deltas) > 0 {
			t += deltas[0].Delta
			deltas = deltas[1:]
		}
		m.feedbackPacket(seq, received, t)
		seq++
		remaining--
	}
	for _, c := range fb.PacketChunks {
		if remaining <= 0 {
			break
		}
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for i := 0; i < int(c.RunLength) && remaining > 0; i++ {
				status(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range c.SymbolList {
				if remaining <= 0 {
					break
				}
				status(sym)
			}
		}
	}
	m.feedbackEnd()
}

// feedbackBegin starts applying one transport-cc report whose reference
// time is ref (its 24 bits, in 64 ms units) and returns that time in
// microseconds, unwrapped: the base of the report's arrival times. The
// meter stays locked until feedbackEnd.
func (m *probeMeter) feedbackBegin(ref int64) int64 {
	m.mu.Lock()
	ref &= 0xffffff
	if m.haveRef {
		// The nearest epoch of the 24-bit reference time.
		ref = m.refBase + (ref-m.refBase+(1<<23))&0xffffff - (1 << 23)
	}
	m.refBase, m.haveRef = ref, true
	return ref * 64_000
}

// feedbackPacket applies one packet's status of the report: received or
// not, and its arrival time (µs, on feedbackBegin's base). It returns
// when and how large the packet was sent, if the meter noted it.
func (m *probeMeter) feedbackPacket(seq uint16, received bool, t int64) (sent int64, size int, ok bool) {
	e := &m.entries[seq&(meterSize-1)]
	if e.seq == seq && e.noted {
		// A probe cluster is meant to exceed what the link
		// carries: its packets say nothing about congestion.
		e.noted = false
		sent, size, ok = e.sent, int(e.size), true
		if e.cluster == 0 {
			m.win.countLocked(e, received, t)
		}
	}
	if off := uint16(seq - m.first); m.cluster != 0 && int(off) < m.count {
		if e.cluster == m.cluster && e.seq == seq {
			if received {
				e.arrival, e.arrived = t, true
			}
			if off+1 > m.reported {
				m.reported = off + 1
			}
		}
	}
	return sent, size, ok
}

// feedbackEnd ends the report begun by feedbackBegin.
func (m *probeMeter) feedbackEnd() {
	r, ok := m.finishLocked(false)
	done := m.done
	m.mu.Unlock()
	if ok && done != nil {
		done(r)
	}
}

// finishLocked computes the result of the closed cluster once feedback
// covers all of it (or force), and forgets the cluster.
func (m *probeMeter) finishLocked(force bool) (clusterResult, bool) {
	if !m.closed || m.cluster == 0 || !force && int(m.reported) < m.count {
		return clusterResult{}, false
	}
	r := clusterResult{cluster: m.cluster}
	var firstSent, lastSent, firstArr, lastArr int64
	var sentBytes, lastSentSize, recvBytes, lastArrSize int64
	for i := 0; i < m.count; i++ {
		seq := m.first + uint16(i)
		e := &m.entries[seq&(meterSize-1)]
		if e.cluster != m.cluster || e.seq != seq {
			continue // never stamped for this cluster
		}
		if r.packets == 0 || e.sent < firstSent {
			firstSent = e.sent
		}
		if e.sent >= lastSent {
			lastSent, lastSentSize = e.sent, int64(e.size)
		}
		r.packets++
		sentBytes += int64(e.size)
		if !e.arrived {
			continue
		}
		if r.received == 0 || e.arrival < firstArr {
			firstArr = e.arrival
		}
		if r.received == 0 || e.arrival >= lastArr {
			lastArr, lastArrSize = e.arrival, int64(e.size)
		}
		r.received++
		recvBytes += int64(e.size)
	}
	m.cluster, m.closed = 0, false
	// The last packet's bytes arrive after the interval measured.
	if dt := lastSent - firstSent; dt > 0 && r.packets >= clusterMinPackets {
		r.send = (sentBytes - lastSentSize) * 8 * int64(time.Second) / dt
	}
	if r.packets < clusterMinPackets || r.lossy() {
		return r, true
	}
	if dt := lastArr - firstArr; dt > 0 {
		r.recv = (recvBytes - lastArrSize) * 8 * 1_000_000 / dt
	}
	r.rate = min(r.send, r.recv)
	return r, true
}

// BindLocalStream notes every packet sent. The transport-wide sequence
// number was set by the interceptor outside this one.
func (m *probeMeter) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == transportCCURI {
			id = uint8(e.ID)
		}
	}
	if id == 0 {
		return writer
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if ext := h.GetExtension(id); len(ext) >= 2 {
			seq := uint16(ext[0])<<8 | uint16(ext[1])
			m.record(m.open.Load(), seq, h.MarshalSize()+len(payload)+int(h.PaddingSize), time.Now().UnixNano())
		}
		if a != nil {
			return writer.Write(h, payload, a)
		}
		// The congestion controller inside this interceptor makes a map
		// for every packet that comes without one; one from the pool
		// spares the server that garbage (a map per forwarded packet).
		a = attributesPool.Get().(interceptor.Attributes)
		n, err := writer.Write(h, payload, a)
		clear(a)
		attributesPool.Put(a)
		return n, err
	})
}

// attributesPool holds the attribute maps handed down with forwarded
// packets; nothing below keeps them once the write returns.
var attributesPool = sync.Pool{New: func() any { return make(interceptor.Attributes, 1) }}

// BindRTCPReader reads transport-cc feedback; the packets were parsed
// already by the congestion controller inside this interceptor.
func (m *probeMeter) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil || attr == nil {
			return n, attr, err
		}
		if pkts, perr := attr.GetRTCPPackets(b[:n]); perr == nil {
			for _, p := range pkts {
				if fb, ok := p.(*rtcp.TransportLayerCC); ok {
					m.feedback(fb)
				}
			}
		}
		return n, attr, err
	})
}

// probeMeterFactory builds one meter per subscriber connection and hands
// it to the engine, like the congestion controller's factory.
type probeMeterFactory struct {
	created func(*probeMeter)
}

func (f *probeMeterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	m := &probeMeter{}
	if f.created != nil {
		f.created(m)
	}
	return m, nil
}
