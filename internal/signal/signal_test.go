package signal

import (
	"errors"
	"strings"
	"testing"
)

// Decode's answers to valid and invalid messages are the contract's
// (testdata/messages.json, TestContractMessages).

func TestErrorMessage(t *testing.T) {
	ref := &Message{Type: TypePublish, ID: "q7"}
	m := ErrorMessage(Errorf(CodeNegotiationFailed, "No."), ref)
	if m.Type != TypeError || m.Code != CodeNegotiationFailed || m.ID != "q7" || m.RefType != TypePublish {
		t.Errorf("ErrorMessage = %+v", m)
	}
	m = ErrorMessage(errors.New("database password is hunter2"), nil)
	if m.Code != CodeInternal || strings.Contains(m.Text, "hunter2") {
		t.Errorf("internal error leaked its text: %+v", m)
	}
}

func TestEncodeStampsVersion(t *testing.T) {
	data, err := Encode(&Message{Type: TypePong})
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"v":1,"type":"pong"}` {
		t.Errorf("Encode = %s", data)
	}
}

// FuzzDecode checks that no input makes the decoder panic, that every
// refusal is a protocol error with a code, and that accepted messages
// survive a round trip.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"v":1,"type":"join","room":"board","name":"Alice"}`,
		`{"v":1,"type":"publish","sdp":"v=0\r\n","tracks":{"0":{"source":"camera"}}}`,
		`{"v":1,"type":"candidate","pc":"pub","candidate":{"candidate":"x","sdpMLineIndex":0}}`,
		`{"v":1,"type":"key","to":"a","payload":"AA=="}`,
		`{"v":1,"type":"state","state":{"audio":true}}`,
		`{"v":2}`, `[]`, `{`, ``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code == "" {
				t.Fatalf("non-protocol error %v", err)
			}
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
	})
}
