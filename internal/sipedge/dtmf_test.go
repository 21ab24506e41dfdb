package sipedge

import (
	"testing"
)

func tone(event uint8, end bool, duration uint16) []byte {
	b := []byte{event, 10, byte(duration >> 8), byte(duration)}
	if end {
		b[1] |= 0x80
	}
	return b
}

func TestParseToneEvent(t *testing.T) {
	for _, c := range []struct {
		payload []byte
		want    ToneEvent
		digit   byte
		err     bool
	}{
		{[]byte{5, 0x0a, 0x01, 0x40}, ToneEvent{Event: 5, Volume: 10, Duration: 320}, '5', false},
		{[]byte{11, 0x8a, 0x03, 0x20}, ToneEvent{Event: 11, End: true, Volume: 10, Duration: 800}, '#', false},
		{[]byte{10, 0xff, 0, 0}, ToneEvent{Event: 10, End: true, Volume: 63}, '*', false}, // reserved bit ignored
		{[]byte{13, 0, 0, 0}, ToneEvent{Event: 13}, 'B', false},
		{[]byte{16, 0, 0, 0}, ToneEvent{Event: 16}, 0, false},
		{[]byte{200, 0, 0, 0}, ToneEvent{Event: 200}, 0, false},
		{[]byte{1, 2, 3}, ToneEvent{}, 0, true},
		{[]byte{1, 2, 3, 4, 5, 6, 7, 8}, ToneEvent{}, 0, true},
		{nil, ToneEvent{}, 0, true},
	} {
		got, err := ParseToneEvent(c.payload)
		if (err != nil) != c.err || got != c.want || (err == nil && got.Digit() != c.digit) {
			t.Errorf("ParseToneEvent(%v) = %+v (digit %q), %v; want %+v (digit %q), error %v",
				c.payload, got, got.Digit(), err, c.want, c.digit, c.err)
		}
	}
}

// Each key press is several packets (the end repeated); it counts once.
// '*' starts over, '#' ends the PIN, and other events are ignored.
func TestPINCollector(t *testing.T) {
	var c pinCollector
	press := func(ts uint32, ev uint8) (string, bool) {
		var pin string
		var done bool
		for i, p := range [][]byte{tone(ev, false, 160), tone(ev, false, 320), tone(ev, true, 480), tone(ev, true, 480), tone(ev, true, 480)} {
			if got, ok := c.add(ts, p); ok {
				if done {
					t.Fatalf("packet %d of one press completed the PIN again", i)
				}
				pin, done = got, true
			}
		}
		return pin, done
	}
	for i, ev := range []uint8{9, 9, 10, 2, 4, 16, 6, 8, 1, 0} {
		if _, done := press(uint32(1000*(i+1)), ev); done {
			t.Fatalf("the PIN completed before '#' (event %d)", ev)
		}
	}
	if c.pending() != "246810" {
		t.Fatalf("collected %q", c.pending())
	}
	pin, done := press(20000, 11)
	if !done || pin != "246810" {
		t.Fatalf("'#' gave %q, %v", pin, done)
	}
	if _, ok := c.add(21000, tone(3, false, 160)); ok {
		t.Fatal("a completed collector took more digits")
	}
	c.reset()
	press(22000, 7)
	if pin, done := press(23000, 11); !done || pin != "7" {
		t.Fatalf("after reset: %q, %v", pin, done)
	}
	// A malformed packet is ignored.
	c.reset()
	if _, ok := c.add(24000, []byte{11}); ok || c.pending() != "" {
		t.Fatal("a malformed packet counted")
	}
}

// FuzzToneEvent feeds telephone-event payloads from the network to the
// parser and the PIN collector.
func FuzzToneEvent(f *testing.F) {
	f.Add(uint32(1), []byte{5, 0x0a, 0x01, 0x40})
	f.Add(uint32(2), []byte{11, 0x8a, 0x03, 0x20})
	f.Add(uint32(3), []byte{})
	f.Add(uint32(4), []byte{1, 2, 3, 4, 5})
	var c pinCollector
	f.Fuzz(func(t *testing.T, ts uint32, payload []byte) {
		ev, err := ParseToneEvent(payload)
		if err != nil {
			if len(payload) == 4 {
				t.Fatalf("a 4-byte payload was refused: %v", err)
			}
			return
		}
		if ev.Volume > 63 || (ev.Digit() != 0) != (ev.Event <= 15) {
			t.Fatalf("%v parsed as %+v, digit %q", payload, ev, ev.Digit())
		}
		if pin, done := c.add(ts, payload); done {
			if len(pin) > maxPINDigits {
				t.Fatalf("a PIN of %d digits", len(pin))
			}
			for _, d := range []byte(pin) {
				if d < '0' || d > '9' {
					t.Fatalf("PIN %q holds a non-digit", pin)
				}
			}
			c.reset()
		}
	})
}
