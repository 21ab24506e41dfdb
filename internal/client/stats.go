package client

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// TrackInfo identifies a remote track.
type TrackInfo struct {
	Mid         string // transceiver of the subscribe connection
	Participant string // publisher's id
	Name        string // publisher's display name when the track began
	Source      string // camera, microphone, screen, screen-audio
	Kind        string // audio or video
	Codec       Codec  // set once media arrived
}

// TrackStats counts what arrived on a remote track.
type TrackStats struct {
	TrackInfo
	Packets uint64 // RTP packets received
	// PacketBytes counts the RTP packets' bytes (header and payload, as
	// after SRTP).
	PacketBytes uint64
	// PacketsExpected is how many packets the sequence numbers span, from
	// the first received to the highest (RFC 3550, appendix A.3): minus
	// Packets, the packets lost (negative with duplicates).
	PacketsExpected uint64
	Frames          uint64 // frames rebuilt
	KeyFrames       uint64 // of which video key frames
	Bytes           uint64 // frame bytes, as received (before the receive transform)
	Losses          uint64 // gaps: frames that could not be rebuilt were dropped
	// TransformErrors counts frames the receive transform refused (for
	// end-to-end encryption: frames this participant has no key for).
	TransformErrors uint64
	Active          bool // the track still carries media
}

// SendStats counts what a published track sent.
type SendStats struct {
	Source string
	Codec  Codec
	Frames uint64
	Bytes  uint64 // after the send transform
	// Encodings of a simulcast track, lowest first (nil otherwise);
	// Frames and Bytes are their sums.
	Encodings []EncodingStats
}

// EncodingStats counts what one simulcast encoding sent.
type EncodingStats struct {
	RID    string
	Frames uint64
	Bytes  uint64
	Paused bool // the server said nobody needs it
}

// remoteTrack is one publisher's track as received on one sub mid.
type remoteTrack struct {
	info TrackInfo

	packets, frames, keyFrames, bytes, losses, transformErrors atomic.Uint64
	packetBytes, expected                                      atomic.Uint64

	mu      sync.Mutex // guards codec, sink, started, stopped
	codec   Codec
	sink    FrameSink
	started bool
	stopped bool
}

func (rt *remoteTrack) stats() TrackStats {
	rt.mu.Lock()
	info := rt.info
	info.Codec = rt.codec
	active := !rt.stopped
	rt.mu.Unlock()
	return TrackStats{
		TrackInfo: info, Packets: rt.packets.Load(), PacketBytes: rt.packetBytes.Load(), PacketsExpected: rt.expected.Load(), Frames: rt.frames.Load(), KeyFrames: rt.keyFrames.Load(),
		Bytes: rt.bytes.Load(), Losses: rt.losses.Load(), TransformErrors: rt.transformErrors.Load(), Active: active,
	}
}

// Stats returns the counters of every remote track received since the
// session began, ended ones included, sorted by participant and source.
func (s *Session) Stats() []TrackStats {
	s.mu.Lock()
	tracks := slices.Clone(s.tracks)
	s.mu.Unlock()
	out := make([]TrackStats, 0, len(tracks))
	for _, rt := range tracks {
		out = append(out, rt.stats())
	}
	slices.SortStableFunc(out, func(a, b TrackStats) int {
		return strings.Compare(a.Name+"\x00"+a.Participant+"\x00"+a.Source, b.Name+"\x00"+b.Participant+"\x00"+b.Source)
	})
	return out
}

// Sent returns the counters of the tracks this session publishes, since
// its peer connections were last set up (a fresh rejoin starts over).
func (s *Session) Sent() []SendStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SendStats, 0, len(s.sent))
	for _, t := range s.sent {
		st := SendStats{Source: t.source, Codec: t.codec}
		for _, e := range t.encodings {
			f, b := e.frames.Load(), e.bytes.Load()
			st.Frames += f
			st.Bytes += b
			if e.rid != "" {
				st.Encodings = append(st.Encodings, EncodingStats{RID: e.rid, Frames: f, Bytes: b, Paused: e.paused.Load()})
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b SendStats) int { return strings.Compare(a.Source, b.Source) })
	return out
}
