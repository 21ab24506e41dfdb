package dialin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"conclave/internal/meeting"
	"conclave/internal/sfu"
	"conclave/internal/signal"
	"conclave/internal/testutil/wait"
)

const (
	roomPIN = "246810"
	hostPIN = "999999"
)

// pinGate admits to room "board" with the guest or host PIN only.
type pinGate struct{}

func (pinGate) Enter(_ context.Context, e meeting.Entry) (meeting.Admission, error) {
	if e.Room != "board" {
		return meeting.Admission{}, meeting.ErrUnavailable
	}
	switch e.PIN {
	case hostPIN:
		return meeting.Admission{Alias: "board", Role: meeting.RoleHost, BypassLock: true}, nil
	case roomPIN:
		return meeting.Admission{Alias: "board", Role: meeting.RoleGuest}, nil
	}
	return meeting.Admission{}, meeting.ErrUnavailable
}

// host is a host's signaling client that answers knocks with decide.
type host struct {
	p      *pipe
	decide func(signal.Participant) string // "admit" or "deny"
	mu     sync.Mutex
	knocks []signal.Participant
	joined []signal.Participant
}

func startHost(t *testing.T, m *meeting.Manager, decide func(signal.Participant) string) *host {
	t.Helper()
	h := &host{p: newPipe(), decide: decide}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Serve(ctx, h.p, meeting.Client{})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	h.p.toServer(ctx, []byte(fmt.Sprintf(`{"v":1,"type":"join","room":"board","name":"Hannah","pin":%q}`, hostPIN)))
	go func() {
		for {
			data, ok := h.p.fromServer()
			if !ok {
				return
			}
			var msg signal.Message
			if json.Unmarshal(data, &msg) != nil {
				continue
			}
			switch msg.Type {
			case signal.TypeKnock:
				h.mu.Lock()
				h.knocks = append(h.knocks, *msg.Participant)
				h.mu.Unlock()
				answer := h.decide(*msg.Participant)
				h.p.toServer(ctx, []byte(fmt.Sprintf(`{"v":1,"type":%q,"target":%q}`, answer, msg.Participant.ID)))
			case signal.TypeParticipantJoined:
				h.mu.Lock()
				h.joined = append(h.joined, *msg.Participant)
				h.mu.Unlock()
			}
		}
	}()
	return h
}

// phone records what a gateway hands to the telephone.
type phone struct {
	mu     sync.Mutex
	frames [][]byte
	ts     []uint32
}

func (p *phone) toPhone(opus []byte, ts uint32) {
	p.mu.Lock()
	p.frames = append(p.frames, append([]byte(nil), opus...))
	p.ts = append(p.ts, ts)
	p.mu.Unlock()
}

func (p *phone) has(frame []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frames {
		if bytes.Equal(f, frame) {
			return true
		}
	}
	return false
}

// tap keeps what the media core forwards.
type tap struct {
	mu       sync.Mutex
	payloads [][]byte
}

func (t *tap) Packet(_, _, _ string, pkt *rtp.Packet) {
	t.mu.Lock()
	t.payloads = append(t.payloads, append([]byte(nil), pkt.Payload...))
	t.mu.Unlock()
}

func newNode(t *testing.T) (*meeting.Manager, *sfu.Engine, *tap) {
	t.Helper()
	tp := &tap{}
	log := slog.New(slog.DiscardHandler)
	eng, err := sfu.NewEngine(sfu.Config{UDPAddr: "127.0.0.1:0", Logger: log, Tap: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	m := meeting.NewManager(meeting.Config{Logger: log}, eng, pinGate{})
	t.Cleanup(m.Close)
	return m, eng, tp
}

func dial(ctx context.Context, m *meeting.Manager, eng *sfu.Engine, name, pin string, ph *phone) (*Gateway, error) {
	return Join(ctx, Config{Meetings: m, Media: eng, Room: "board", PIN: pin, Name: name, ToPhone: ph.toPhone,
		Logger: slog.New(slog.DiscardHandler)})
}

// Two telephones in one meeting hear each other through the media core:
// each gateway encrypts its telephone's Opus frames into SFrame with its
// sender key, the media core forwards ciphertext (the tap never sees a
// frame in clear), and the other gateway decrypts them with the key it
// was given, so each telephone gets the other's frames byte for byte. Both
// came in only after the host admitted their knock.
func TestTwoTelephonesHearEachOtherThroughTheMeetingEncrypted(t *testing.T) {
	m, eng, tp := newNode(t)
	h := startHost(t, m, func(signal.Participant) string { return "admit" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pa, pb := &phone{}, &phone{}
	a, err := dial(ctx, m, eng, "Alice (phone)", roomPIN, pa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dial(ctx, m, eng, "Bob (phone)", roomPIN, pb)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	for _, k := range h.knocks {
		if k.Gateway != signal.GatewaySIP {
			t.Errorf("the host's knock %+v does not say it is a telephone", k)
		}
	}
	knocks := len(h.knocks)
	h.mu.Unlock()
	if knocks != 2 {
		t.Fatalf("the host got %d knocks for two telephones", knocks)
	}

	frame := func(who string, i int) []byte { return []byte(fmt.Sprintf("opus frame %d of %s", i, who)) }
	var last int
	wait.For(t, "each telephone to hear the other's frames", 15*time.Second, func() bool {
		last++
		a.FromPhone(frame("alice", last), uint32(last*960))
		b.FromPhone(frame("bob", last), uint32(last*960))
		return pb.has(frame("alice", last)) && pa.has(frame("bob", last))
	})
	if pa.has(frame("alice", last)) || pb.has(frame("bob", last)) {
		t.Error("a telephone hears itself")
	}
	tp.mu.Lock()
	for _, p := range tp.payloads {
		if bytes.Contains(p, []byte("opus frame")) {
			t.Errorf("the media core forwarded a frame in clear: %q", p)
			break
		}
	}
	forwarded := len(tp.payloads)
	tp.mu.Unlock()
	if forwarded == 0 {
		t.Error("the media core forwarded nothing")
	}

	a.Leave()
	if a.Reason() != "left" {
		t.Errorf("the telephone that hung up left with %q", a.Reason())
	}
	b.Leave()
}

// A wrong PIN, and a host's deny, keep the telephone out.
func TestTelephoneWithoutPINOrConsentIsRefused(t *testing.T) {
	m, eng, _ := newNode(t)
	startHost(t, m, func(signal.Participant) string { return "deny" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := dial(ctx, m, eng, "Mallory (phone)", "000000", &phone{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a wrong PIN: %v, want ErrUnavailable", err)
	}
	if _, err := dial(ctx, m, eng, "Alice (phone)", roomPIN, &phone{}); !errors.Is(err, ErrDenied) {
		t.Errorf("a host's deny: %v, want ErrDenied", err)
	}
}
