package conn

// Relays between conference nodes (docs/cluster.md, "Meetings across
// nodes"). A meeting that has members on two nodes crosses between them
// once per node and direction: on the node of the publishers, a relay is
// one more subscriber of the room's tracks (RelaySender); on the other
// node, each track arrives as an up track (RelayedTrack) that its members
// subscribe to like any other. What crosses is the publisher's RTP as
// received, its payload still end-to-end encrypted; the receiving node
// tells the sending one which simulcast layers its subscribers need, so
// that no other layer crosses, and asks it for key frames.

// RelayCodec is a relayed track's codec, as negotiated with its
// publisher.
type RelayCodec struct {
	MimeType    string `json:"mime"`
	ClockRate   uint32 `json:"clockRate"`
	Channels    uint16 `json:"channels,omitempty"`
	SDPFmtpLine string `json:"fmtp,omitempty"`
	PayloadType uint8  `json:"pt"`
}

// RelayTrack describes a track crossing nodes.
type RelayTrack struct {
	Participant string     `json:"participant"`
	Source      Source     `json:"source"`
	Kind        Kind       `json:"kind"`
	Mid         string     `json:"mid"`
	Codec       RelayCodec `json:"codec"`
	// Layers are the simulcast RIDs, lowest first; empty for a single
	// layer (VP9 SVC carries its spatial layers in one).
	Layers []string `json:"layers,omitempty"`
	// AudioLevelExt is the id of the audio-level header extension in the
	// relayed packets, 0 if absent: the receiving node needs it to find
	// the active speaker.
	AudioLevelExt uint8 `json:"audioLevelExt,omitempty"`
}

// RelaySink carries a relay sender's tracks to the other node. Its
// methods are called on the forwarding path and must not block.
type RelaySink interface {
	// Announce precedes the first packet of the track numbered id.
	Announce(id uint32, t RelayTrack)
	// Withdraw ends track id.
	Withdraw(id uint32)
	// WriteRTP sends one RTP packet of layer (by index, lowest first) of
	// track id; raw is not kept after the call.
	WriteRTP(id uint32, layer int, raw []byte)
}

// RelaySender is the subscriber on the publishers' node whose tracks go
// to another node.
type RelaySender interface {
	Subscriber
	// SetLayers applies the other node's needs: the layers of track id
	// it needs (by index), the others stop crossing.
	SetLayers(id uint32, active []bool)
	// RequestKeyFrame asks the publisher of track id for a key frame on
	// layer (throttled like any subscriber's request).
	RequestKeyFrame(id uint32, layer int)
}

// RelayControl carries a relayed track's needs back to the node that
// sends it.
type RelayControl interface {
	// LayersNeeded reports the layers the node's subscribers need.
	LayersNeeded(active []bool)
	// RequestKeyFrame asks for a key frame on layer.
	RequestKeyFrame(layer int)
}

// RelayedTrack is a track received from another node.
type RelayedTrack interface {
	UpTrack
	// WriteRTP forwards one packet of layer, as the sending node's
	// RelaySink received it, to the node's subscribers. It is called from
	// one goroutine at a time.
	WriteRTP(layer int, raw []byte)
	// End stops the track.
	End()
}

// RelayEngine is a media core that relays between nodes.
type RelayEngine interface {
	// NewRelay makes a relay sender whose tracks go to sink.
	NewRelay(sink RelaySink) RelaySender
	// NewRelayed makes the up track of a track received from another
	// node; ctl carries its needs back.
	NewRelayed(t RelayTrack, ctl RelayControl) RelayedTrack
}
