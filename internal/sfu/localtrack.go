// Local tracks: up tracks whose packets come from this process (a SIP
// leg's voice) instead of a publisher's peer connection. They go through
// the same prepare-and-forward path as a received audio packet, on the
// writer's goroutine, so subscribers cannot tell them apart.

package sfu

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"conclave/internal/conn"
)

// errLocalEnded is returned by a write to a closed local track.
var errLocalEnded = errors.New("local track closed")

// localTrack is a conn.LocalTrack of this engine.
type localTrack struct {
	*UpTrack
	mu    sync.Mutex // one writer at a time
	layer *upLayer
}

// NewLocalTrack makes an up track of participant fed by WriteRTP. codec
// is one of the engine's codecs ("audio/opus", "video/VP8", ...).
func (e *Engine) NewLocalTrack(participant string, source conn.Source, codec string) (conn.LocalTrack, error) {
	var params webrtc.RTPCodecParameters
	var kind webrtc.RTPCodecType
	for _, c := range offeredCodecs {
		if strings.EqualFold(c.params.MimeType, codec) {
			params, kind = c.params, c.kind
		}
	}
	if kind == 0 {
		return nil, fmt.Errorf("local track: codec %q is not one of this engine's", codec)
	}
	if string(source.Kind()) != kind.String() {
		return nil, fmt.Errorf("local track: a %s source cannot carry %s", source, codec)
	}
	u := newUpTrack(nil, e.clock, params, kind, participant, source, "local-"+string(source), nil)
	u.tap = e.tap
	l := &upLayer{track: u, ssrc: rand.Uint32()}
	u.layers[0].Store(l)
	u.readers = 1
	return &localTrack{UpTrack: u, layer: l}, nil
}

// WriteRTP forwards one marshalled RTP packet to the subscribers.
func (t *localTrack) WriteRTP(packet []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended.Load() {
		return errLocalEnded
	}
	t.layer.handle(packet, time.Now().UnixNano())
	return nil
}

// Close ends the track: nothing more is forwarded.
func (t *localTrack) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.end()
}

// ownTrack returns the engine's up track behind t: a received track, a
// local one, or one relayed from another node.
func ownTrack(t conn.UpTrack) (*UpTrack, bool) {
	switch u := t.(type) {
	case *UpTrack:
		return u, true
	case *localTrack:
		return u.UpTrack, true
	case relayedTrack:
		return u.UpTrack, true
	}
	return nil, false
}

var (
	_ conn.SinkTrack   = (*UpTrack)(nil)
	_ conn.LocalTrack  = (*localTrack)(nil)
	_ conn.LocalEngine = (*Engine)(nil)
)
