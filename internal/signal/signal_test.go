package signal

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	sdp := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"
	tests := []struct {
		name string
		in   string
		code string // "" = valid
	}{
		{"join", `{"v":1,"type":"join","room":"board","name":"Alice"}`, ""},
		{"join with id and resume", `{"v":1,"type":"join","id":"r1","room":"board","name":"Alice","resume":"abc_DEF-1"}`, ""},
		{"publish", `{"v":1,"type":"publish","sdp":"` + strings.ReplaceAll(sdp, "\r\n", `\r\n`) + `","tracks":{"0":{"source":"microphone"},"1":{"source":"camera"}}}`, ""},
		{"candidate", `{"v":1,"type":"candidate","pc":"sub","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}`, ""},
		{"state", `{"v":1,"type":"state","state":{"audio":true,"video":false,"screen":false}}`, ""},
		{"key", `{"v":1,"type":"key","to":"ab12","payload":"AAEC+/8="}`, ""},
		{"ping", `{"v":1,"type":"ping"}`, ""},
		{"layout", `{"v":1,"type":"layout","layout":{"0":{"width":320,"height":180},"3":{"width":0,"height":0}}}`, ""},
		{"layout too big", `{"v":1,"type":"layout","layout":{"0":{"width":99999,"height":1}}}`, CodeInvalidField},
		{"layout negative", `{"v":1,"type":"layout","layout":{"0":{"width":-1,"height":1}}}`, CodeInvalidField},
		{"layout missing", `{"v":1,"type":"layout"}`, CodeInvalidField},
		{"layers from client", `{"v":1,"type":"ping","active":[true]}`, CodeInvalidField},

		{"not json", `hello`, CodeBadMessage},
		{"array", `[1,2]`, CodeBadMessage},
		{"truncated", `{"v":1,"type":"join"`, CodeBadMessage},
		{"trailing data", `{"v":1,"type":"ping"}{"v":1}`, CodeBadMessage},
		{"unknown field", `{"v":1,"type":"ping","extra":1}`, CodeBadMessage},
		{"wrong type", `{"v":"1","type":"ping"}`, CodeBadMessage},
		{"invalid utf8", "{\"v\":1,\"type\":\"join\",\"room\":\"a\",\"name\":\"\xff\"}", CodeBadMessage},
		{"version", `{"v":2,"type":"ping"}`, CodeUnsupportedVersion},
		{"no version", `{"type":"ping"}`, CodeUnsupportedVersion},
		{"no type", `{"v":1}`, CodeInvalidField},
		{"unknown type", `{"v":1,"type":"explode"}`, CodeUnknownType},
		{"join without name", `{"v":1,"type":"join","room":"board"}`, CodeInvalidField},
		{"join blank name", `{"v":1,"type":"join","room":"board","name":"   "}`, CodeInvalidField},
		{"join long name", `{"v":1,"type":"join","room":"board","name":"` + strings.Repeat("é", 65) + `"}`, CodeInvalidField},
		{"join control char", `{"v":1,"type":"join","room":"board","name":"a\u0007b"}`, CodeInvalidField},
		{"join with sdp", `{"v":1,"type":"join","room":"board","name":"A","sdp":"v=0"}`, CodeInvalidField},
		{"server field", `{"v":1,"type":"ping","from":"x"}`, CodeInvalidField},
		{"publish no sdp", `{"v":1,"type":"publish"}`, CodeInvalidField},
		{"publish not sdp", `{"v":1,"type":"publish","sdp":"hello"}`, CodeInvalidField},
		{"publish bad source", `{"v":1,"type":"publish","sdp":"v=0","tracks":{"0":{"source":"printer"}}}`, CodeInvalidField},
		{"publish track participant", `{"v":1,"type":"publish","sdp":"v=0","tracks":{"0":{"source":"camera","participant":"x"}}}`, CodeInvalidField},
		{"candidate bad pc", `{"v":1,"type":"candidate","pc":"x","candidate":{"candidate":""}}`, CodeInvalidField},
		{"candidate missing", `{"v":1,"type":"candidate","pc":"pub"}`, CodeInvalidField},
		{"restart pub", `{"v":1,"type":"restart-ice","pc":"pub"}`, CodeInvalidField},
		{"key without to", `{"v":1,"type":"key","payload":"AA=="}`, CodeInvalidField},
		{"key bad payload", `{"v":1,"type":"key","to":"a","payload":"not base64!"}`, CodeInvalidField},
		{"bad id", `{"v":1,"type":"ping","id":"a b"}`, CodeInvalidField},
		{"too large", `{"v":1,"type":"ping","id":"` + strings.Repeat("a", MaxMessageSize) + `"}`, CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if m.Type == "" {
					t.Fatal("decoded message has no type")
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Decode error = %v, want protocol error %s", err, tt.code)
			}
			if pe.Code != tt.code {
				t.Fatalf("code = %s (%s), want %s", pe.Code, pe.Text, tt.code)
			}
			if pe.Text == "" || !strings.HasSuffix(pe.Text, ".") {
				t.Errorf("error text %q is not a sentence", pe.Text)
			}
			wantFatal := tt.code == CodeTooLarge || tt.code == CodeUnsupportedVersion
			if pe.Fatal != wantFatal {
				t.Errorf("fatal = %v, want %v", pe.Fatal, wantFatal)
			}
		})
	}
}

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
