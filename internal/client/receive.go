package client

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"conclave/internal/client/framing"
	"conclave/internal/signal"
)

// pliInterval is how often a key frame is asked for while one is missing.
// The server forwards at most one request per track every 500 ms and drops
// the others, so a request soon after another subscriber's is lost: ask
// again a little later than that.
const pliInterval = 600 * time.Millisecond

// Receive buffers: packets held for reordering and retransmission, and how
// many newer packets, or how much newer media (in RTP clock ticks), may
// arrive before a missing one is given up. 400 ms leaves time for a few
// retransmission requests without freezing a low-rate video layer for
// seconds.
const (
	videoWindow, videoMaxLate = 512, 128
	audioWindow, audioMaxLate = 32, 8
	videoMaxWait              = 90000 * 4 / 10
	audioMaxWait              = 48000 * 2 / 10
	receiveMTU                = 1500
)

// A FrameSink receives the frames of one remote track, in order. It is
// called from the track's goroutine; Close is called once, when the track
// ends or the session closes.
type FrameSink interface {
	WriteFrame(f RemoteFrame) error
	Close() error
}

// RemoteFrame is a received frame, after the receive transform.
type RemoteFrame struct {
	Data      []byte // valid only during WriteFrame
	Timestamp uint32 // RTP timestamp
	KeyFrame  bool
	AfterLoss bool // frames were lost just before this one
}

// midSlot is a sub transceiver. Its owner — which participant's track it
// carries now — is set by the session loop from subscribe offers and read
// by the receiving goroutine at every packet.
type midSlot struct {
	owner atomic.Pointer[remoteTrack]
}

// applyTracks maps sub transceivers to publishers from a subscribe
// offer's tracks map: a mid whose publisher or source changed ends the old
// remote track; a mid absent from the map carries nothing.
func (s *Session) applyTracks(p *peers, tracks map[string]signal.TrackInfo) {
	for mid, slot := range p.mids {
		cur := slot.owner.Load()
		ti, ok := tracks[mid]
		if cur != nil && (!ok || cur.info.Participant != ti.Participant || cur.info.Source != ti.Source) {
			slot.owner.Store(nil)
			s.stopTrack(cur)
		}
	}
	for mid, ti := range tracks {
		slot := p.mids[mid]
		if slot == nil {
			slot = &midSlot{}
			p.mids[mid] = slot
		}
		if slot.owner.Load() != nil {
			continue
		}
		s.mu.Lock()
		rt := &remoteTrack{info: TrackInfo{Mid: mid, Participant: ti.Participant, Name: s.names[ti.Participant],
			Source: ti.Source, Kind: ti.Kind}}
		s.tracks = append(s.tracks, rt)
		s.mu.Unlock()
		slot.owner.Store(rt)
	}
}

// stopTrack ends a remote track: its sink is closed and, if it had
// started, TrackStopped reported.
func (s *Session) stopTrack(rt *remoteTrack) {
	rt.mu.Lock()
	if rt.stopped {
		rt.mu.Unlock()
		return
	}
	rt.stopped = true
	sink, started := rt.sink, rt.started
	rt.sink = nil
	info := rt.info
	info.Codec = rt.codec
	rt.mu.Unlock()
	if sink != nil {
		if err := sink.Close(); err != nil {
			s.log.Warn("closing a track sink failed", "participant", info.Participant, "source", info.Source, "err", err)
		}
	}
	if started {
		s.emit(Event{Kind: TrackStopped, Track: info})
	}
}

// onTrack starts receiving a sub transceiver's media.
func (s *Session) onTrack(p *peers, remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	if p != s.peers {
		return
	}
	var mid string
	for _, t := range p.sub.GetTransceivers() {
		if t.Receiver() == receiver {
			mid = t.Mid()
		}
	}
	slot := p.mids[mid]
	if slot == nil {
		slot = &midSlot{}
		p.mids[mid] = slot
	}
	codec := codecOf(remote.Codec().MimeType)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.receive(p.sub, slot, remote, codec)
	}()
}

func codecOf(mime string) Codec {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return CodecVP8
	case strings.EqualFold(mime, webrtc.MimeTypeVP9):
		return CodecVP9
	case strings.EqualFold(mime, webrtc.MimeTypeOpus):
		return CodecOpus
	}
	return ""
}

// receiver is the state of one receiving goroutine.
type receiver struct {
	s       *Session
	pc      *webrtc.PeerConnection
	ssrc    uint32
	codec   Codec
	video   bool
	asm     *framing.Assembler
	cur     *remoteTrack
	dst     []byte // receive transform output
	info    FrameInfo
	needKey bool
	dropped bool // the receive transform refused a frame since the last key frame
	started bool // the current owner's first frame arrived
	lastPLI time.Time
	emit    func(framing.Frame)

	// Extended sequence numbers of the current owner's packets: the
	// first and the highest.
	seqStarted      bool
	seqBase, seqMax uint64
}

// countPacket accounts for a packet of n bytes of the current owner in its
// packet counts and the span of its sequence numbers.
func (r *receiver) countPacket(seq uint16, n int) {
	rt := r.cur
	rt.packets.Add(1)
	rt.packetBytes.Add(uint64(n))
	if !r.seqStarted {
		r.seqStarted = true
		r.seqBase, r.seqMax = uint64(seq), uint64(seq)
	} else if d := int16(seq - uint16(r.seqMax)); d > 0 {
		r.seqMax += uint64(d)
	}
	rt.expected.Store(r.seqMax - r.seqBase + 1)
}

// receive reads a remote track until its connection closes: packets are
// reassembled into frames for the slot's current owner, a key frame is
// requested when the track starts or after loss.
func (s *Session) receive(pc *webrtc.PeerConnection, slot *midSlot, remote *webrtc.TrackRemote, codec Codec) {
	var dep framing.Depacketizer
	window, maxLate, maxWait := videoWindow, videoMaxLate, uint32(videoMaxWait)
	switch codec {
	case CodecVP8:
		dep = framing.VP8{}
	case CodecVP9:
		dep = framing.VP9{}
	case CodecOpus:
		dep = framing.Opus{}
		window, maxLate, maxWait = audioWindow, audioMaxLate, audioMaxWait
	default:
		s.log.Warn("ignoring a track with an unknown codec", "codec", remote.Codec().MimeType)
	}
	r := &receiver{s: s, pc: pc, ssrc: uint32(remote.SSRC()), codec: codec, video: codec != CodecOpus,
		info: FrameInfo{Codec: codec}}
	r.emit = r.onFrame
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		if dep == nil || pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if rt := slot.owner.Load(); rt != r.cur {
			// The transceiver now carries another track (or nothing).
			r.cur = rt
			r.asm = framing.NewAssembler(dep, window, maxLate)
			r.asm.SetMaxWait(maxWait)
			r.needKey, r.lastPLI, r.started = r.video, time.Time{}, false
			r.seqStarted = false
			if rt != nil {
				r.info.Participant, r.info.Source = rt.info.Participant, rt.info.Source
			}
		}
		if r.cur == nil {
			continue
		}
		r.countPacket(pkt.SequenceNumber, n)
		r.asm.Push(&pkt, r.emit)
		if r.needKey {
			r.requestKeyFrame()
		}
	}
}

// requestKeyFrame sends a PLI, at most once per pliInterval.
func (r *receiver) requestKeyFrame() {
	now := time.Now()
	if now.Sub(r.lastPLI) < pliInterval {
		return
	}
	r.lastPLI = now
	if err := r.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: r.ssrc}}); err != nil {
		r.s.log.Debug("sending PLI failed", "err", err)
	}
}

func (r *receiver) onFrame(f framing.Frame) {
	rt := r.cur
	key := isKeyFrame(r.codec, f.Data)
	if r.video {
		if f.AfterLoss {
			r.needKey = true
		}
		if key {
			r.needKey = false
			rt.keyFrames.Add(1)
		}
	}
	rt.frames.Add(1)
	rt.bytes.Add(uint64(len(f.Data)))
	if f.AfterLoss {
		rt.losses.Add(1)
	}
	if !r.started {
		r.started = true
		rt.begin(r.s, r.codec)
	}
	data := f.Data
	if tr := r.s.opts.ReceiveTransform; tr != nil {
		r.info.KeyFrame, r.info.Timestamp = key, f.Timestamp
		out, err := tr.TransformFrame(r.info, data, r.dst[:0])
		if err != nil {
			rt.transformErrors.Add(1)
			r.dropped = r.video
			return
		}
		if r.dropped && !key {
			// Frames were dropped (for end-to-end encryption: no key
			// yet); the first that passes needs a key frame to decode.
			r.needKey = true
		}
		r.dropped = false
		r.dst = adopt(r.dst, out, data)
		data = out
	}
	rt.write(r.s, RemoteFrame{Data: data, Timestamp: f.Timestamp, KeyFrame: key, AfterLoss: f.AfterLoss})
}

// begin notes the first frame of a track: its sink opens and TrackStarted
// is reported.
func (rt *remoteTrack) begin(s *Session, codec Codec) {
	rt.mu.Lock()
	if rt.stopped || rt.started {
		rt.mu.Unlock()
		return
	}
	rt.started, rt.codec = true, codec
	info := rt.info
	info.Codec = codec
	if s.opts.NewSink != nil {
		sink, err := s.opts.NewSink(info)
		if err != nil {
			s.log.Warn("cannot open a sink for a track", "participant", info.Participant, "source", info.Source, "err", err)
		}
		rt.sink = sink
	}
	rt.mu.Unlock()
	s.emit(Event{Kind: TrackStarted, Track: info})
}

// write hands a frame to the track's sink.
func (rt *remoteTrack) write(s *Session, f RemoteFrame) {
	rt.mu.Lock()
	sink := rt.sink
	var err error
	if sink != nil && !rt.stopped {
		err = sink.WriteFrame(f)
	}
	rt.mu.Unlock()
	if err != nil {
		s.log.Debug("track sink refused a frame", "participant", rt.info.Participant, "source", rt.info.Source, "err", err)
	}
}
