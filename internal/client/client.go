// Package client is Conclave's native meeting participant: it speaks the
// signaling protocol of docs/protocol.md exactly as the browser does, over
// the same two peer connections, and moves media as whole encoded frames so
// that a FrameTransform (end-to-end encryption) can sit between codec and
// packetizer. `conclave join` is a thin command around it; the load tester
// and the recorder build on it too.
//
// A Session publishes frames from FrameSources (files played in a loop),
// receives the other participants' tracks, rebuilds their frames, hands
// them to FrameSinks (for instance a Recorder) and counts them.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"conclave/internal/clock"
	"conclave/internal/pki"
	"conclave/internal/signal"
)

// Options configure a Session.
type Options struct {
	// URL is the meeting link, https://host[:port]/r/<alias>. Required.
	URL string
	// Name is the display name others see. Required.
	Name string
	// PIN is the host or guest PIN of a PIN-protected room.
	PIN string
	// RootCAs are the certificate authorities trusted for the server's
	// certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any server certificate. Only for an
	// explicit user request (conclave join --insecure): it lets anyone on
	// the path read and change signaling.
	InsecureSkipVerify bool
	// Jar, when set, holds the cookies of an account session (see
	// docs/api.md, POST /api/login); the WebSocket upgrade carries them,
	// so that the server knows the account.
	Jar http.CookieJar
	// Logger receives the session's logs; nil discards them.
	Logger *slog.Logger
	// Clock runs the session's timers (reconnection, renegotiation,
	// recovery); nil means clock.System.
	Clock clock.Clock

	// Camera and Microphone, when set, are published as the sources
	// "camera" and "microphone".
	Camera     FrameSource
	Microphone FrameSource
	// CameraLayers, instead of Camera, publishes the camera as VP8
	// simulcast, as the browser does: two or three sources of the same
	// picture at different sizes, lowest first, sent as the encodings
	// with the RIDs q, h and f (q and f for two; docs/protocol.md). Their
	// frames should have the same durations so that the encodings stay
	// in step. Every encoding's frames go through SendTransform; the
	// server's layers messages pause and resume encodings.
	CameraLayers []FrameSource

	// SendTransform changes each outgoing frame before packetization;
	// ReceiveTransform each incoming frame after reassembly. Nil is the
	// identity.
	SendTransform    FrameTransform
	ReceiveTransform FrameTransform
	// NewSink, when set, is called at the first frame of each remote track
	// for a sink that receives all its frames (see Recorder). Nil only
	// counts frames.
	NewSink func(TrackInfo) (FrameSink, error)
	// Layout, when set, is called from the session's loop after every
	// subscribe offer with the remote tracks it carries; the sizes it
	// returns, by sub mid, are sent as a layout message before the
	// answer, so that the server forwards each video track in the layer
	// that fits (0x0 hides a track). Tracks it leaves out keep the size
	// sent before, or no limit. It must return quickly. SetLayout changes
	// sizes at any time.
	Layout func(tracks []TrackInfo) map[string]Size

	// ForceRelay sends and receives media only through the server's TURN
	// relay (ICE transport policy "relay"), as every client does when the
	// server runs with --always-relay. RelayOver, when set, keeps only
	// the TURN servers of one transport: RelayUDP, RelayTCP or RelayTLS.
	ForceRelay bool
	RelayOver  string

	// Hooks receive events and opaque E2EE messages.
	Hooks Hooks
}

// ServerError is a fatal error sent by the server, such as room-not-found.
type ServerError struct {
	Code    string // protocol error code (signal.Code...)
	Message string // the server's explanation, for the user
}

func (e *ServerError) Error() string { return e.Message + " (" + e.Code + ")" }

// EndedError reports that the server ended the participant's presence
// (bye), for another reason than the participant's own leave.
type EndedError struct{ Reason string }

func (e *EndedError) Error() string {
	switch e.Reason {
	case "server-shutdown":
		return "the server is shutting down"
	case "replaced":
		return "this participant was taken over by another connection"
	case "timeout":
		return "the server dropped this participant after a long disconnection"
	case "removed":
		return "a host removed this participant from the meeting"
	case "denied":
		return "a host did not admit this participant"
	case "ended":
		return "the meeting was ended"
	case "no-host":
		return "no host joined the meeting in time"
	}
	return "the server ended the session (" + e.Reason + ")"
}

// ErrClosed is returned by the methods of a session that has ended.
var ErrClosed = errors.New("client: session closed")

// Session is one participant in a meeting.
type Session struct {
	opts    Options
	clock   clock.Clock
	meeting Meeting
	log     *slog.Logger
	http    *http.Client
	api     *webrtc.API
	dialer  *turnDialer

	ctx    context.Context // canceled when the session ends
	cancel context.CancelFunc
	tasks  *queue // work of the session loop
	events *queue // hook calls, in order
	wg     sync.WaitGroup
	ready  chan error
	done   chan struct{}

	loopState // owned by the session loop

	mu           sync.Mutex // guards the fields below, read by accessors
	self         signal.Participant
	room         signal.RoomInfo
	participants map[string]signal.Participant
	names        map[string]string // every participant seen, by id
	tracks       []*remoteTrack    // every remote track seen
	sent         []*publishedTrack // tracks of the current publish connection
	err          error
}

// Dial joins the meeting and returns once the server welcomed the
// participant (after any wait for a host or in the lobby, reported as a
// Waiting event); media then starts in the background. The session keeps
// going (reconnecting when needed) until Leave or a fatal error; ctx only
// bounds Dial itself.
func Dial(ctx context.Context, opts Options) (*Session, error) {
	m, err := ParseMeetingURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(opts.Name) == "" {
		return nil, errors.New("a display name is required")
	}
	if err := checkLayers(opts); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch opts.RelayOver {
	case "", RelayUDP, RelayTCP, RelayTLS:
	default:
		return nil, fmt.Errorf("relay transport %q is not one of udp, tcp, tls", opts.RelayOver)
	}
	tlsConfig := pki.ClientTLSConfig(opts.RootCAs)
	tlsConfig.InsecureSkipVerify = opts.InsecureSkipVerify
	dialer := &turnDialer{tls: tlsConfig}
	api, err := newAPI(log, loopback(m.Host), dialer)
	if err != nil {
		return nil, err
	}
	s := &Session{
		opts:         opts,
		clock:        clock.Or(opts.Clock),
		meeting:      m,
		log:          log.With("room", m.Room),
		http:         &http.Client{Jar: opts.Jar, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}},
		api:          api,
		dialer:       dialer,
		tasks:        newQueue(),
		events:       newQueue(),
		ready:        make(chan error, 1),
		done:         make(chan struct{}),
		participants: map[string]signal.Participant{},
		names:        map[string]string{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if h := opts.Hooks.OnStart; h != nil {
		h(s)
	}
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		s.events.runAll()
	}()
	go s.run(eventsDone)

	select {
	case err := <-s.ready:
		if err != nil {
			<-s.done
			return nil, err
		}
		return s, nil
	case <-ctx.Done():
		s.post(func() { s.end(fmt.Errorf("join %s: %w", m.Room, ctx.Err())) })
		<-s.done
		return nil, fmt.Errorf("join %s: %w", m.Room, ctx.Err())
	}
}

// tlsError turns certificate failures into advice.
func tlsError(err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown), errors.As(err, &verify) && errors.As(verify.Err, &unknown):
		return fmt.Errorf("%w\nThe server's certificate is not signed by a trusted authority: pass its CA with --ca (on the server: <data>/tls/ca.crt)", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w\nThe server's certificate does not name this host: use the address printed by 'conclave serve'", err)
	}
	return err
}

// Leave leaves the meeting: it sends leave, waits for the server's bye
// (at most a second), closes the media connections and stops every
// goroutine of the session. It returns why the session ended: nil after a
// normal leave.
func (s *Session) Leave() error {
	s.post(s.leave)
	<-s.done
	return s.Err()
}

// Done is closed when the session has ended and released everything.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended (nil while it runs or after Leave).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Self returns this participant as the others see it.
func (s *Session) Self() signal.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.self
}

// Room returns the meeting's room.
func (s *Session) Room() signal.RoomInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.room
}

// Participants returns the other participants, sorted by name.
func (s *Session) Participants() []signal.Participant {
	s.mu.Lock()
	list := make([]signal.Participant, 0, len(s.participants))
	for _, p := range s.participants {
		list = append(list, p)
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b signal.Participant) int {
		return strings.Compare(a.Name+"\x00"+a.ID, b.Name+"\x00"+b.ID)
	})
	return list
}

// SendAnnounce publishes this participant's opaque E2EE announcement;
// the server relays it to everyone in the meeting, now and later.
func (s *Session) SendAnnounce(payload []byte) error {
	return s.sendOpaque(&signal.Message{Type: signal.TypeAnnounce, Payload: base64.StdEncoding.EncodeToString(payload)})
}

// SendKey sends an opaque E2EE key message to one participant.
func (s *Session) SendKey(to string, payload []byte) error {
	return s.sendOpaque(&signal.Message{Type: signal.TypeKey, To: to, Payload: base64.StdEncoding.EncodeToString(payload)})
}

// SendVerify sends an opaque E2EE verification message (a commit or a
// reveal) to everyone in the meeting.
func (s *Session) SendVerify(payload []byte) error {
	return s.sendOpaque(&signal.Message{Type: signal.TypeVerify, Payload: base64.StdEncoding.EncodeToString(payload)})
}

// Size is the size, in device pixels, at which a remote video track is
// rendered; 0x0 means hidden.
type Size struct{ Width, Height int }

// SetLayout tells the server the size at which each remote video track,
// by sub mid (TrackInfo.Mid), is rendered (docs/protocol.md, layout): it
// forwards the lowest layer that covers the size, and nothing for 0x0.
// Mids not in sizes keep their previous size. Send it when sizes change,
// at most a few times per second.
func (s *Session) SetLayout(sizes map[string]Size) error {
	msgs, err := layoutMessages(sizes)
	if err != nil {
		return err
	}
	return s.sendFromOutside(msgs...)
}

// layoutMessages splits sizes into layout messages of at most
// signal.MaxTracks entries, and checks them.
func layoutMessages(sizes map[string]Size) ([]*signal.Message, error) {
	mids := make([]string, 0, len(sizes))
	for mid, sz := range sizes {
		if sz.Width < 0 || sz.Height < 0 || sz.Width > signal.MaxTrackSize || sz.Height > signal.MaxTrackSize {
			return nil, fmt.Errorf("layout: track %q has a size outside 0..%d", mid, signal.MaxTrackSize)
		}
		mids = append(mids, mid)
	}
	slices.Sort(mids)
	var msgs []*signal.Message
	for len(mids) > 0 {
		n := min(len(mids), signal.MaxTracks)
		m := &signal.Message{Type: signal.TypeLayout, Layout: make(map[string]signal.TrackSize, n)}
		for _, mid := range mids[:n] {
			m.Layout[mid] = signal.TrackSize{Width: sizes[mid].Width, Height: sizes[mid].Height}
		}
		msgs = append(msgs, m)
		mids = mids[n:]
	}
	return msgs, nil
}

// Command sends a host command (docs/protocol.md, "Host controls"):
// mute, mute-guests, remove, set-role, lock, admit, deny, room-settings
// or end, with its fields set in m. The server carries it out only if
// this participant is a host, and answers an error otherwise.
func (s *Session) Command(m *signal.Message) error {
	switch m.Type {
	case signal.TypeMute, signal.TypeMuteGuests, signal.TypeRemove, signal.TypeSetRole, signal.TypeLock,
		signal.TypeAdmit, signal.TypeDeny, signal.TypeRoomSettings, signal.TypeEnd:
	default:
		return fmt.Errorf("%q is not a host command", m.Type)
	}
	return s.sendFromOutside(m)
}

// sendOpaque queues an announce or key message; while the signaling
// connection is down it waits in the outbox for a resume.
func (s *Session) sendOpaque(m *signal.Message) error {
	if len(m.Payload) > signal.MaxPayloadLen {
		return fmt.Errorf("%s payload of %d bytes (base64) exceeds %d", m.Type, len(m.Payload), signal.MaxPayloadLen)
	}
	return s.sendFromOutside(m)
}

// sendFromOutside sends msgs from the session loop, for a caller outside
// it, and waits until they are queued.
func (s *Session) sendFromOutside(msgs ...*signal.Message) error {
	errc := make(chan error, 1)
	if !s.post(func() {
		var err error
		for _, m := range msgs {
			err = errors.Join(err, s.send(m))
		}
		errc <- err
	}) {
		return ErrClosed
	}
	// The session's context ends when the loop stops taking tasks; done
	// comes only after the hooks returned, so a hook that sends must not
	// wait for it.
	select {
	case err := <-errc:
		return err
	case <-s.ctx.Done():
		return ErrClosed
	}
}

// decodePayload reads an opaque payload, which the browser encodes as
// standard base64; the URL-safe and unpadded forms are accepted too.
func decodePayload(p string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(p); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("payload is not base64")
}

// post hands f to the session loop; false once the session has ended.
func (s *Session) post(f func()) bool { return s.tasks.post(f) }

// emit queues an event for the hooks.
func (s *Session) emit(e Event) {
	if h := s.opts.Hooks.OnEvent; h != nil {
		s.events.post(func() { h(e) })
	}
}

// reconnectDelay is the browser's schedule: 0.5 s, doubling, at most 5 s.
func reconnectDelay(attempt int) time.Duration {
	if attempt >= 4 {
		return 5 * time.Second
	}
	return min(500*time.Millisecond<<attempt, 5*time.Second)
}
