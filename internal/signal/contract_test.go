package signal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// contract is testdata/messages.json: the protocol's limits and messages,
// read by these tests and by the browser's (web/static/js/protocol.test.mjs).
type contract struct {
	Version int                 `json:"version"`
	Limits  map[string]int      `json:"limits"`
	Sources []string            `json:"sources"`
	Roles   []string            `json:"roles"`
	Types   map[string][]string `json:"types"`
	Valid   []contractCase      `json:"valid"`
	Invalid []contractCase      `json:"invalid"`
}

type contractCase struct {
	Name      string         `json:"name"`
	Message   map[string]any `json:"message"`
	Raw       *string        `json:"raw"`
	RawBase64 string         `json:"rawBase64"`
	Pad       *struct {
		Path  []string `json:"path"`
		Bytes int      `json:"bytes"`
		With  string   `json:"with"`
	} `json:"pad"`
	Repeat *struct {
		Path  []string `json:"path"`
		Count int      `json:"count"`
		Value any      `json:"value"`
	} `json:"repeat"`
	Code  string `json:"code"`
	Fatal bool   `json:"fatal"`
}

func readContract(t *testing.T) contract {
	t.Helper()
	data, err := os.ReadFile("testdata/messages.json")
	if err != nil {
		t.Fatal(err)
	}
	var c contract
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("testdata/messages.json: %v", err)
	}
	return c
}

// bytes builds the case's message as a client would send it.
func (c contractCase) bytes(t *testing.T) []byte {
	t.Helper()
	if c.Raw != nil {
		return []byte(*c.Raw)
	}
	if c.RawBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(c.RawBase64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m := c.Message
	if c.Pad != nil {
		parent, key := walk(t, m, c.Pad.Path)
		s, _ := parent[key].(string)
		if n := c.Pad.Bytes - len(s); n > 0 {
			s += strings.Repeat(c.Pad.With, n)
		}
		parent[key] = s
	}
	if c.Repeat != nil {
		parent, key := walk(t, m, c.Repeat.Path)
		entries := map[string]any{}
		for i := range c.Repeat.Count {
			entries[strconv.Itoa(i)] = c.Repeat.Value
		}
		parent[key] = entries
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// walk returns the object holding the last element of path, and that key.
func walk(t *testing.T, m map[string]any, path []string) (map[string]any, string) {
	t.Helper()
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("path %v: %q is not an object", path, k)
		}
		m = next
	}
	return m, path[len(path)-1]
}

// The limits, sources, roles and client types of the contract are the
// server's.
func TestContractDefinitions(t *testing.T) {
	c := readContract(t)
	if c.Version != Version {
		t.Errorf("contract version %d, server %d", c.Version, Version)
	}
	want := map[string]int{"message": MaxMessageSize, "name": MaxNameLen, "room": 64, "id": MaxIDLen, "sdp": MaxSDPLen,
		"tracks": MaxTracks, "trackSize": MaxTrackSize, "candidate": MaxCandidateLen, "usernameFragment": 256,
		"payload": MaxPayloadLen, "pin": 32, "ticket": MaxTicketLen}
	for k, v := range want {
		if c.Limits[k] != v {
			t.Errorf("limit %s: contract %d, server %d", k, c.Limits[k], v)
		}
	}
	if len(c.Limits) != len(want) {
		t.Errorf("contract limits %v, server %v", c.Limits, want)
	}
	if strings.Join(c.Sources, ",") != strings.Join([]string{SourceMicrophone, SourceCamera, SourceScreen, SourceScreenAudio}, ",") {
		t.Errorf("contract sources %v", c.Sources)
	}
	if strings.Join(c.Roles, ",") != strings.Join([]string{RoleHost, RoleParticipant, RoleGuest}, ",") {
		t.Errorf("contract roles %v", c.Roles)
	}
	// Every client type is accepted with its fields, and refuses the
	// fields of the others.
	all := map[string]bool{}
	for _, fields := range c.Types {
		for _, f := range fields {
			all[f] = true
		}
	}
	for typ, fields := range c.Types {
		allowed := map[string]bool{}
		for _, f := range fields {
			allowed[f] = true
		}
		m := &Message{Type: typ}
		if err := m.Validate(); err != nil && strings.Contains(err.Error(), "Unknown message type") {
			t.Errorf("type %q of the contract is unknown to the server", typ)
		}
		for f := range all {
			err := withField(typ, f).Validate()
			switch refused := err != nil && strings.Contains(err.Error(), "is not allowed"); {
			case allowed[f] && refused:
				t.Errorf("a %q message with field %q, which the contract allows: %v", typ, f, err)
			case !allowed[f] && !refused:
				t.Errorf("a %q message with field %q: %v, want refused as not allowed", typ, f, err)
			}
		}
	}
}

// withField is a message of typ with its required fields and f set.
func withField(typ, f string) *Message {
	yes := true
	m := &Message{Type: typ, Room: "r", Name: "n", SDP: "v=0", PC: "sub", Candidate: &Candidate{}, State: &MediaState{},
		Layout: map[string]TrackSize{}, Payload: "AA==", To: "a", Target: "a", Role: RoleHost, Locked: &yes, Settings: &RoomState{}}
	// Clear what typ does not carry, then set f.
	keep := map[string]bool{}
	for _, k := range fieldsOf(typ) {
		keep[k] = true
	}
	keep[f] = true
	clearUnless(m, keep)
	return m
}

func fieldsOf(typ string) []string {
	c := map[string][]string{"join": {"room", "name"}, "publish": {"sdp"}, "subscribe-answer": {"sdp"}, "candidate": {"pc", "candidate"},
		"state": {"state"}, "layout": {"layout"}, "restart-ice": {"pc"}, "announce": {"payload"}, "key": {"to", "payload"},
		"chat": {"payload"}, "verify": {"payload"}, "mute": {"target"}, "remove": {"target"}, "set-role": {"target", "role"},
		"lock": {"locked"}, "admit": {"target"}, "deny": {"target"}, "room-settings": {"settings"}}
	return c[typ]
}

func clearUnless(m *Message, keep map[string]bool) {
	if !keep["room"] {
		m.Room = ""
	}
	if !keep["name"] {
		m.Name = ""
	}
	if !keep["sdp"] {
		m.SDP = ""
	}
	if !keep["pc"] {
		m.PC = ""
	}
	if !keep["candidate"] {
		m.Candidate = nil
	}
	if !keep["state"] {
		m.State = nil
	}
	if !keep["layout"] {
		m.Layout = nil
	}
	if !keep["payload"] {
		m.Payload = ""
	}
	if !keep["to"] {
		m.To = ""
	}
	if !keep["target"] {
		m.Target = ""
	}
	if !keep["role"] {
		m.Role = ""
	}
	if !keep["locked"] {
		m.Locked = nil
	}
	if !keep["settings"] {
		m.Settings = nil
	}
	if keep["resume"] {
		m.Resume = "r"
	}
	if keep["pin"] {
		m.PIN = "1"
	}
	if keep["tracks"] {
		m.Tracks = map[string]TrackInfo{}
	}
	if keep["redirected"] {
		m.Redirected = true
	}
	if keep["ticket"] {
		m.Ticket = "ct1.e30.AA"
	}
}

// The server accepts every valid message of the contract, and answers
// every invalid one with its code.
func TestContractMessages(t *testing.T) {
	c := readContract(t)
	for _, tc := range c.Valid {
		m, err := Decode(tc.bytes(t))
		if err != nil {
			t.Errorf("valid %q: %v", tc.Name, err)
		} else if m.Type != tc.Message["type"] {
			t.Errorf("valid %q: decoded as type %q", tc.Name, m.Type)
		}
	}
	for _, tc := range c.Invalid {
		_, err := Decode(tc.bytes(t))
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("invalid %q: %v, want error %s", tc.Name, err, tc.Code)
			continue
		}
		if pe.Code != tc.Code || pe.Fatal != tc.Fatal {
			t.Errorf("invalid %q: %s (fatal %v: %s), want %s (fatal %v)", tc.Name, pe.Code, pe.Fatal, pe.Text, tc.Code, tc.Fatal)
		}
		if pe.Text == "" || !strings.HasSuffix(pe.Text, ".") {
			t.Errorf("invalid %q: error text %q is not a sentence", tc.Name, pe.Text)
		}
	}
}
