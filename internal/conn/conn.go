// Package conn is the vocabulary between rooms and the media core: what a
// room (internal/meeting) asks of the media core, and what the media core
// (internal/sfu, one WebRTC implementation) tells a room. The room code
// never sees WebRTC, and the media core never sees rooms: it knows
// participants and sources as labels, and takes a room's decisions (who
// receives what, how a track is grouped and ranked) as options.
//
// The next kinds of participant plug in here: a relay to another
// conference node, a SIP leg, a recorder are other publishers and
// subscribers of the same tracks.
package conn

// Source is what a track carries.
type Source string

// The sources a participant publishes (docs/protocol.md, "publish").
const (
	Microphone  Source = "microphone"
	Camera      Source = "camera"
	Screen      Source = "screen"
	ScreenAudio Source = "screen-audio"
)

// Screen reports whether the source is part of a screen share.
func (s Source) Screen() bool { return s == Screen || s == ScreenAudio }

// Kind is the kind of track the source is: a microphone and a screen's
// audio are audio, a camera and a screen video; "" for an unknown source.
func (s Source) Kind() Kind {
	switch s {
	case Microphone, ScreenAudio:
		return Audio
	case Camera, Screen:
		return Video
	}
	return ""
}

// Kind is "audio" or "video".
type Kind string

// Track kinds.
const (
	Audio Kind = "audio"
	Video Kind = "video"
)

// UpTrack is one track received from a publisher, forwarded to any
// number of subscribers.
type UpTrack interface {
	// ID identifies the track within its node.
	ID() string
	// Participant is the id of the publishing participant.
	Participant() string
	// Source is what the publisher declared the track carries.
	Source() Source
	// Kind is audio or video.
	Kind() Kind
	// Codec is the negotiated codec's MIME type, e.g. "video/VP8".
	Codec() string
	// Mid is the publisher's media id of the track.
	Mid() string
	// SetMuted stops (true) or resumes (false) forwarding, at once and
	// without renegotiation: a host's mute is enforced here, not by the
	// publisher's goodwill.
	SetMuted(muted bool)
	// RequestKeyFrame asks the publisher for a key frame (throttled).
	RequestKeyFrame()
	// AudioLevel returns the mean loudness (0 silence .. 127 loudest,
	// from the publisher's audio-level header extension) of the packets
	// received since the previous call, and how many there were; 0, 0
	// when none carried a level.
	AudioLevel() (level float64, packets uint64)
}

// TrackOptions are a room's decisions about one subscriber's copy of a
// track.
type TrackOptions struct {
	// Stream groups tracks into one media stream at the subscriber, so
	// that they play in sync: a participant's microphone and camera, its
	// screen and screen audio. It is fixed when the track is first added.
	Stream string
	// Priority ranks the track in the subscriber's bandwidth allocation:
	// higher first, then larger on screen. It may change at any time.
	Priority int
}

// ICECandidate is a trickled ICE candidate (RFC 8839), as a client sends it.
type ICECandidate struct {
	Candidate        string
	SDPMid           *string
	SDPMLineIndex    *uint16
	UsernameFragment *string
}

// Publisher is the connection on which a participant sends its media. The
// client makes every offer.
type Publisher interface {
	// HandleOffer applies the client's offer and returns the answer.
	// sources maps the mid of each sending transceiver to what it
	// carries; tracks whose mid is absent or no longer sending stop. An
	// offer whose sources do not match its m-sections' kinds, that
	// declares a source twice, or that has more m-sections than a
	// participant can use is refused, with an error that says why.
	HandleOffer(sdp string, sources map[string]Source) (answer string, err error)
	// AddCandidate adds a trickled remote ICE candidate.
	AddCandidate(ICECandidate) error
	// Tracks returns the live up tracks.
	Tracks() []UpTrack
	// Close ends every track (each reported as removed) and the
	// connection.
	Close() error
}

// PublisherEvents receives a publisher's track changes. Calls come from
// the media core's goroutines and must not block for long.
type PublisherEvents interface {
	// TrackAdded is called when a declared track starts receiving media.
	TrackAdded(UpTrack)
	// TrackRemoved is called once when a track stops: the publisher
	// stopped sending it, renegotiated it away, or the connection closed.
	TrackRemoved(UpTrack)
	// LayersNeeded reports, by layer index (lowest first), the layers of
	// a video track that some subscriber needs, so that the publisher
	// stops sending the others ("dynacast"). It is called when the answer
	// changes: at once when a layer becomes needed, after a debounce when
	// one stops being needed. It is never called on the goroutine that
	// forwards the track's packets.
	LayersNeeded(t UpTrack, active []bool)
	// ConnectionState reports the connection's state ("connected",
	// "failed", ...), for the logs.
	ConnectionState(state string)
}

// TrackDesc tells a subscriber what a transceiver of an offer carries.
type TrackDesc struct {
	Participant string
	Source      Source
	Kind        Kind
	Stream      string
}

// Offer is the media core's offer for a subscriber connection.
type Offer struct {
	SDP    string
	Tracks map[string]TrackDesc // by mid
}

// Subscriber is the connection on which a participant receives the
// others' media. The media core makes every offer, one at a time.
type Subscriber interface {
	// AddTrack starts forwarding t to this subscriber (after the next
	// negotiation); for a track already added, it applies opts' Priority.
	AddTrack(t UpTrack, opts TrackOptions) error
	// RemoveTrack stops forwarding t.
	RemoveTrack(t UpTrack)
	// HandleAnswer applies the client's answer to the outstanding offer.
	HandleAnswer(sdp string) error
	// AddCandidate adds a trickled remote ICE candidate.
	AddCandidate(ICECandidate) error
	// RestartICE sends an offer with fresh ICE credentials.
	RestartICE()
	// SetTrackSize records the size, in device pixels, at which the
	// client renders the track it receives on mid; 0x0 hides it (nothing
	// is forwarded). It reports false if no track is sent on mid.
	SetTrackSize(mid string, width, height int) bool
	// Outstanding returns the offer that waits for an answer, if any, to
	// send again after the client reconnects.
	Outstanding() (Offer, bool)
	// Close stops every down track and the connection.
	Close() error
}

// SubscriberEvents receives what a subscriber connection needs signalled.
type SubscriberEvents interface {
	// SendOffer must deliver the offer to the client without blocking.
	SendOffer(Offer)
	// ConnectionState reports the connection's state, for the logs.
	ConnectionState(state string)
}

// Engine makes the publishers and subscribers of a node's participants.
type Engine interface {
	// NewPublisher makes the receiving connection of a participant.
	NewPublisher(participant string, events PublisherEvents) (Publisher, error)
	// NewSubscriber makes the sending connection toward a participant.
	NewSubscriber(events SubscriberEvents) (Subscriber, error)
}

// Sink receives, in this process, the packets an up track forwards: a
// SIP leg hears the meeting through one. WriteRTP is called on the
// track's forwarding goroutine with one marshalled RTP packet as the
// publisher sent it (its payload still end-to-end encrypted); it must
// neither block nor keep packet after it returns.
type Sink interface {
	WriteRTP(packet []byte)
}

// SinkTrack is an up track that also hands its packets to sinks in this
// process. The media core's audio tracks are SinkTracks.
type SinkTrack interface {
	UpTrack
	// AddSink starts handing the track's packets to s.
	AddSink(s Sink)
	// RemoveSink stops it; when it returns, s is not called any more.
	RemoveSink(s Sink)
}

// LocalTrack is an up track whose packets this process writes instead of
// a client's connection: what a SIP leg says into the meeting. The media
// core forwards it to subscribers like any other track.
type LocalTrack interface {
	UpTrack
	// WriteRTP forwards one marshalled RTP packet (the track's SSRC,
	// sequence numbers and timestamps are the writer's). Calls must not
	// overlap.
	WriteRTP(packet []byte) error
	// Close ends the track.
	Close()
}

// LocalEngine is a media core that forwards local tracks; the WebRTC
// engine is one.
type LocalEngine interface {
	// NewLocalTrack makes an audio or video track of participant,
	// carrying source in codec (a MIME type the engine negotiates with
	// subscribers, e.g. "audio/opus").
	NewLocalTrack(participant string, source Source, codec string) (LocalTrack, error)
}
