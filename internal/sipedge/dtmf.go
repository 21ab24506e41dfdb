package sipedge

import (
	"errors"
	"fmt"
)

// DTMF from a telephone arrives as RTP telephone events (RFC 4733): one
// event is sent as several packets with the same RTP timestamp, the
// duration growing, the last ones (usually three) with the end bit set.

// ToneEvent is one telephone-event payload (RFC 4733, section 2.3).
type ToneEvent struct {
	// Event is the event code: 0-9 digits, 10 '*', 11 '#', 12-15 A-D,
	// 16 flash (RFC 4733, section 3.2).
	Event uint8
	// End marks the last packets of the event.
	End bool
	// Volume is the power level in -dBm0 (0-63).
	Volume uint8
	// Duration is the event's duration so far, in timestamp units.
	Duration uint16
}

// errToneEvent is returned for a payload that is not one telephone
// event.
var errToneEvent = errors.New("telephone event: the payload is not 4 bytes")

// ParseToneEvent reads a telephone-event RTP payload. Only the plain
// 4-byte form is accepted (no RFC 2198 redundancy); the reserved bit is
// ignored, as the RFC asks of receivers.
func ParseToneEvent(payload []byte) (ToneEvent, error) {
	if len(payload) != 4 {
		return ToneEvent{}, fmt.Errorf("%w (%d)", errToneEvent, len(payload))
	}
	return ToneEvent{
		Event:    payload[0],
		End:      payload[1]&0x80 != 0,
		Volume:   payload[1] & 0x3f,
		Duration: uint16(payload[2])<<8 | uint16(payload[3]),
	}, nil
}

// Digit is the key of a DTMF event: '0'-'9', '*', '#', 'A'-'D', or 0 for
// any other event.
func (e ToneEvent) Digit() byte {
	switch {
	case e.Event <= 9:
		return '0' + e.Event
	case e.Event == 10:
		return '*'
	case e.Event == 11:
		return '#'
	case e.Event <= 15:
		return 'A' + e.Event - 12
	}
	return 0
}

// maxPINDigits bounds what is collected (the protocol's PIN limit).
const maxPINDigits = 32

// pinCollector turns a telephone's events into a PIN: digits until '#'
// (or until the caller gives up waiting); '*' starts over. One key press
// counts once however many packets carry it: a press is the first packet
// of a new RTP timestamp.
type pinCollector struct {
	digits []byte
	lastTS uint32
	seen   bool
	done   bool
}

// add takes one telephone-event packet; it reports the PIN once '#'
// ends it (or the digits reach the limit).
func (c *pinCollector) add(timestamp uint32, payload []byte) (pin string, complete bool) {
	ev, err := ParseToneEvent(payload)
	if err != nil || c.done {
		return "", false
	}
	if c.seen && timestamp == c.lastTS {
		return "", false // the same key press, repeated or ending
	}
	c.seen, c.lastTS = true, timestamp
	switch d := ev.Digit(); {
	case d == '#':
		c.done = true
		return string(c.digits), true
	case d == '*':
		c.digits = c.digits[:0]
	case d >= '0' && d <= '9':
		c.digits = append(c.digits, d)
		if len(c.digits) == maxPINDigits {
			c.done = true
			return string(c.digits), true
		}
	}
	return "", false
}

// pending returns the digits collected so far (for a caller that stops
// waiting for '#').
func (c *pinCollector) pending() string { return string(c.digits) }

// reset starts a new PIN (after a wrong one).
func (c *pinCollector) reset() {
	c.digits = c.digits[:0]
	c.done = false
}
