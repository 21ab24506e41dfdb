package secure

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/e2ee"
	"conclave/internal/testutil/fakeclock"
)

// relay plays the server for Sessions in memory: it stores the latest
// announcement of each participant, sends it to everyone else and to
// newcomers, and delivers key messages to their addressee. Messages wait
// in a queue until pump, so that no Session is re-entered.
type relay struct {
	t       *testing.T
	clock   *fakeclock.Clock
	meeting string
	mu      sync.Mutex
	members map[string]*Session
	order   []string
	anns    map[string][]byte
	queue   []delivery
	// filter, when set, may drop (false) a delivery.
	filter func(d delivery) bool
	sent   []delivery // every delivery made
	out    []delivery // every message a member sent (to "" for broadcasts)
}

type delivery struct {
	kind     string // "announce" or "key"
	from, to string
	payload  []byte
}

func newRelay(t *testing.T) *relay {
	return &relay{t: t, clock: fakeclock.New(time.Unix(1_800_000_000, 0)), meeting: "m-1", members: map[string]*Session{}, anns: map[string][]byte{}}
}

type relayTransport struct {
	r  *relay
	id string
}

func (rt relayTransport) SendAnnounce(p []byte) error {
	r := rt.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.anns[rt.id] = p
	r.out = append(r.out, delivery{"announce", rt.id, "", p})
	for _, id := range r.order {
		if id != rt.id {
			r.queue = append(r.queue, delivery{"announce", rt.id, id, p})
		}
	}
	return nil
}

func (rt relayTransport) SendVerify(p []byte) error {
	r := rt.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, delivery{"verify", rt.id, "", p})
	for _, id := range r.order {
		if id != rt.id {
			r.queue = append(r.queue, delivery{"verify", rt.id, id, p})
		}
	}
	return nil
}

func (rt relayTransport) SendKey(to string, p []byte) error {
	r := rt.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append(r.queue, delivery{"key", rt.id, to, p})
	return nil
}

// join adds a participant, welcomes it and queues the stored
// announcements for it.
func (r *relay) join(id string, cfg Config) *Session {
	r.t.Helper()
	if cfg.Device == nil {
		cfg.Device, _ = e2ee.GenerateDeviceKey()
	}
	if cfg.Name == "" {
		cfg.Name = id
	}
	cfg.Clock = r.clock
	if cfg.KeyWait == 0 {
		// Frames without a key fail at once, as the tests that check
		// who cannot decrypt expect; TestFramesWaitForTheirKey sets it.
		cfg.KeyWait = -1
	}
	s, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	s.Attach(relayTransport{r, id})
	r.mu.Lock()
	others := append([]string(nil), r.order...)
	r.members[id] = s
	r.order = append(r.order, id)
	r.mu.Unlock()
	s.onWelcome(id, r.meeting, others)
	r.mu.Lock()
	for _, o := range others {
		if p := r.anns[o]; p != nil {
			r.queue = append(r.queue, delivery{"announce", o, id, p})
		}
	}
	r.mu.Unlock()
	return s
}

// leave removes a participant and tells the others.
func (r *relay) leave(id string) {
	r.mu.Lock()
	delete(r.members, id)
	delete(r.anns, id)
	for i, o := range r.order {
		if o == id {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	others := append([]string(nil), r.order...)
	r.mu.Unlock()
	for _, o := range others {
		r.session(o).onLeft(id)
	}
}

func (r *relay) session(id string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[id]
}

// pump delivers queued messages until none is left.
func (r *relay) pump() {
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return
		}
		d := r.queue[0]
		r.queue = r.queue[1:]
		to := r.members[d.to]
		ok := to != nil && (r.filter == nil || r.filter(d))
		if ok {
			r.sent = append(r.sent, d)
		}
		r.mu.Unlock()
		if !ok {
			continue
		}
		switch d.kind {
		case "announce":
			to.onAnnounce(d.from, d.payload)
		case "verify":
			to.onVerify(d.from, d.payload)
		default:
			to.onKey(d.from, d.payload)
		}
	}
}

// keysTo returns the key messages (not requests) delivered to id.
func (r *relay) keysTo(id string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.sent {
		if d.kind == "key" && d.to == id {
			if !isKeyRequest(d.payload) {
				out = append(out, d)
			}
		}
	}
	return out
}

var testFrame = []byte("an opus frame: any bytes will do for the tests")

// encrypt makes an Opus frame of s.
func encrypt(t *testing.T, s *Session) []byte {
	t.Helper()
	out, err := sendTransform{s}.TransformFrame(client.FrameInfo{Codec: client.CodecOpus}, testFrame, nil)
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	return out
}

// decrypt decrypts a frame of participant from at s.
func decrypt(s *Session, from string, frame []byte) error {
	out, err := receiveTransform{s}.TransformFrame(client.FrameInfo{Codec: client.CodecOpus, Participant: from}, frame, nil)
	if err == nil && string(out) != string(testFrame) {
		panic("decrypted frame differs")
	}
	return err
}

func mustECDH(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (r *relay) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func mustDevice(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := e2ee.GenerateDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// settle delivers everything and lets the rounds of the meeting code run
// their course: a commit waits until its member's view has been quiet for
// e2ee.RoundQuiet, and for a token when its member committed often. It
// advances the clock to each owed commit in turn until none is owed.
func (r *relay) settle() {
	r.t.Helper()
	r.pump()
	for range 1000 {
		var next time.Time
		r.mu.Lock()
		for _, s := range r.members {
			s.st.Lock()
			if s.rounds != nil {
				if at, owed := s.rounds.Due(); owed && (next.IsZero() || at.Before(next)) {
					next = at
				}
			}
			s.st.Unlock()
		}
		r.mu.Unlock()
		if next.IsZero() {
			return
		}
		r.clock.Advance(max(next.Sub(r.clock.Now()), 0))
		r.pump()
	}
	r.t.Fatal("the rounds never settled")
}
