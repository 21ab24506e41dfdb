// The reader loop of an up layer: it reads the publisher's packets,
// parses and measures them, keeps them for retransmission and forwards
// them to the down tracks, video a frame at a time.

package sfu

import (
	"errors"
	"net"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/codecs"
	"conclave/internal/packetcache"
	"conclave/internal/sfu/mediasock"
)

// framePacket is a received packet, parsed, waiting to be forwarded.
type framePacket struct {
	buf  []byte // what it was read into
	raw  []byte // the packet as received (a slice of buf)
	pkt  rtp.Packet
	info packetInfo
}

// read runs one layer's loop until its stream ends. It reports whether it
// was the last layer reading (the track is then over).
func (l *upLayer) read() (last bool) {
	u := l.track
	if u.kind == webrtc.RTPCodecTypeVideo && u.sock != nil {
		l.readFrames(l.remote)
	} else {
		l.readPackets()
	}
	u.mu.Lock()
	u.readers--
	last = u.readers == 0
	u.mu.Unlock()
	return last
}

// readPackets forwards each packet as it comes (audio).
func (l *upLayer) readPackets() {
	fp := &l.single[0]
	fp.buf = make([]byte, packetcache.MaxPacketSize)
	for {
		n, _, err := l.remote.Read(fp.buf)
		if err != nil {
			return
		}
		if l.track.ended.Load() {
			continue // drained, not forwarded
		}
		if l.prepare(fp, fp.buf[:n], time.Now().UnixNano()) {
			l.forward(l.single[:])
		}
	}
}

// maxFrameBatch bounds the packets of one frame forwarded together, and
// frameHold how long the first of them may wait for the others: a paced
// publisher spreads a frame over milliseconds, and a lost last packet
// never comes.
const (
	maxFrameBatch = 32
	frameHold     = 5 * time.Millisecond
)

// readFrames forwards video frame by frame: it gathers the packets of one
// RTP timestamp until the one with the marker bit (or a packet of another
// timestamp, maxFrameBatch packets, or frameHold after the first), then
// writes them to each subscriber in turn with the media socket held, so
// that one subscriber's packets of the frame leave in one system call
// (sendbatch.go). Nothing waits for a frame that is complete.
func (l *upLayer) readFrames(r packetReader) {
	frame := make([]framePacket, maxFrameBatch)
	for i := range frame {
		frame[i].buf = make([]byte, packetcache.MaxPacketSize)
	}
	n := 0           // packets gathered
	var ts uint32    // their timestamp
	waiting := false // a read deadline ends the wait for the rest
	for {
		fp := &frame[n]
		size, _, err := r.Read(fp.buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return
			}
			// frameHold is over: what came of the frame goes now.
			if n > 0 {
				l.forward(frame[:n])
				n = 0
			}
			_ = r.SetReadDeadline(time.Time{})
			waiting = false
			continue
		}
		if l.track.ended.Load() {
			continue // drained, not forwarded
		}
		now := time.Now().UnixNano()
		if !l.prepare(fp, fp.buf[:size], now) {
			continue
		}
		if n > 0 && fp.pkt.Timestamp != ts {
			// Another frame (or a late packet of an earlier one): the
			// gathered ones go first.
			l.forward(frame[:n])
			frame[0], frame[n] = frame[n], frame[0]
			n = 0
		}
		ts = frame[n].pkt.Timestamp
		n++
		if frame[n-1].info.marker || n == maxFrameBatch {
			l.forward(frame[:n])
			n = 0
			if waiting {
				_ = r.SetReadDeadline(time.Time{})
				waiting = false
			}
		} else if !waiting {
			_ = r.SetReadDeadline(time.Unix(0, now).Add(frameHold))
			waiting = true
		}
	}
}

// mediaSocket is what the forwarding path needs of the media socket
// (mediasock.Socket): a hold around one subscriber's share of a frame, so
// that its datagrams leave together, and the measure of the delay added.
// Holding works because Pion writes synchronously: a down track's write
// reaches the socket before it returns (TestPionWritesSynchronously).
type mediaSocket interface {
	Hold()
	Release()
	SendBatch(b *mediasock.Batch)
	Forwarded(ssrc uint32, seq uint16, now int64)
}

// packetReader is what readFrames reads: a *webrtc.TrackRemote.
type packetReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
	SetReadDeadline(t time.Time) error
}

// handle prepares and forwards one packet by itself.
func (l *upLayer) handle(raw []byte, now int64) {
	if l.prepare(&l.single[0], raw, now) {
		l.forward(l.single[:])
	}
}

// prepare parses, measures and caches one packet into fp, and reports
// whether it is to be forwarded. It allocates nothing.
func (l *upLayer) prepare(fp *framePacket, raw []byte, now int64) bool {
	u := l.track
	pkt := &fp.pkt
	fp.raw = raw
	if pkt.Unmarshal(raw) != nil {
		return false
	}
	info := &fp.info
	info.layer = l.index
	info.spatial, info.temporal = 0, 0
	info.keyFrame, info.pictureStart, info.layerEnd = false, false, false
	info.pad = 0
	info.marker = pkt.Marker
	info.padding = len(pkt.Payload) == 0
	info.isVP8 = false
	info.now = now
	st := &u.stats[l.index]

	switch {
	case u.kind == webrtc.RTPCodecTypeAudio:
		info.keyFrame = true
		info.pictureStart = true
		if u.audio.ext != 0 {
			if e := pkt.Header.GetExtension(u.audio.ext); len(e) > 0 {
				u.audio.sum.Add(uint64(127 - e[0]&0x7f))
				u.audio.count.Add(1)
			}
		}
	case info.padding:
	case u.isVP8:
		if info.vp8.Unmarshal(pkt.Payload) != nil {
			return false
		}
		info.isVP8 = true
		info.keyFrame = info.vp8.KeyFrame
		info.pictureStart = info.vp8.Start && info.vp8.Partition == 0
		info.temporal = int8(info.vp8.TID)
		if info.keyFrame {
			st.keyFrames.Add(1)
			l.keyFrameArrived()
			if w, h, ok := codecs.VP8FrameSize(pkt.Payload[info.vp8.HeaderSize:]); ok {
				st.width.Store(int32(w))
				st.height.Store(int32(h))
			}
		}
	case u.isVP9:
		v := &l.vp9
		if v.Unmarshal(pkt.Payload) != nil {
			return false
		}
		info.keyFrame = v.KeyFrame
		info.pictureStart = v.Begin && v.SID == 0
		info.layerEnd = v.End
		if u.svc {
			info.spatial = int8(min(v.SID, maxLayers-1))
			info.temporal = int8(v.TID)
			if v.HasScalability {
				n := min(v.SpatialLayers, maxLayers)
				u.svcN.Store(int32(n))
				if v.HasResolutions {
					for i := 0; i < n; i++ {
						u.stats[i].width.Store(int32(v.Widths[i]))
						u.stats[i].height.Store(int32(v.Heights[i]))
					}
				}
			}
			st = &u.stats[info.spatial]
		}
		if info.keyFrame {
			st.keyFrames.Add(1)
			l.keyFrameArrived()
		}
	}
	st.measure(len(raw), !info.padding, now)

	if u.muted.Load() {
		return false
	}
	if l.cache != nil {
		l.cache.Store(pkt.SequenceNumber, raw)
	}
	if u.tap != nil {
		u.tap.Packet(u.participant, string(u.source), u.codec.MimeType, pkt)
	}
	return true
}

// forward writes prepared packets of one frame (or a single packet) to
// every down track; several go to each subscriber in one batch.
func (l *upLayer) forward(pkts []framePacket) {
	u := l.track
	if len(pkts) > 1 {
		evenOut(pkts)
	}
	// One reading of the clock for the fan-out's send times (the own
	// send path's transport-cc bookkeeping), not one per copy.
	sent := time.Now().UnixNano()
	var batch *mediasock.Batch
	if u.sock != nil {
		batch = &l.batch
	}
	for i := range pkts {
		pkts[i].info.sent = sent
		pkts[i].info.batch = batch
	}
	for _, d := range *u.downs.Load() {
		if !d.follows(&pkts[0].info) {
			continue
		}
		// A subscriber on the own send path: its share is encrypted
		// into the batch and leaves in one call (sendpath.go).
		// Otherwise the socket is held while Pion writes it.
		own := batch != nil && d.path.Load() != nil
		hold := !own && len(pkts) > 1 && u.sock != nil
		if hold {
			u.sock.Hold()
		}
		for i := range pkts {
			d.writeRTP(&pkts[i].pkt, &pkts[i].info)
		}
		if hold {
			u.sock.Release()
		}
		if own && batch.Len() > 0 {
			u.sock.SendBatch(batch)
		}
	}
	u.toSinks(pkts)
	u.relayed(pkts)
	if u.sock != nil {
		now := time.Now().UnixNano()
		for i := range pkts {
			u.sock.Forwarded(pkts[i].pkt.SSRC, pkts[i].pkt.SequenceNumber, now)
		}
	}
}

// maxEvenPad is the most padding evenOut adds to a packet.
const maxEvenPad = 8

// evenOut gives the packets of a frame one size on the wire, but for
// those much smaller, with RTP padding (info.pad): a GSO send takes a run
// of datagrams of one size, and Chromium's packetizer makes the packets
// of a frame differ by a byte. Receivers drop the padding before the
// depacketizer; the frame, and what E2EE protects, are unchanged.
func evenOut(pkts []framePacket) {
	size := 0
	for i := range pkts {
		size = max(size, pkts[i].wireSize())
	}
	for i := range pkts {
		p := &pkts[i]
		p.info.pad = 0
		d := size - p.wireSize()
		if d > 0 && d <= maxEvenPad && len(p.pkt.Payload) > 0 && int(p.pkt.PaddingSize)+d <= 255 {
			p.info.pad = uint8(d)
		}
	}
}

// wireSize is the packet's payload and padding, what differs between
// the packets of one stream once forwarded (their headers are the down
// track's).
func (p *framePacket) wireSize() int { return len(p.pkt.Payload) + int(p.pkt.PaddingSize) }
