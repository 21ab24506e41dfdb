package meeting

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"conclave/internal/signal"
)

// FuzzDeliver feeds what another node sends about a meeting (an Event, as
// internal/cascade decodes it from a link's JSON control message) to a
// node holding that meeting with a participant of its own. A node's
// certificate is no reason to trust every byte it sends: nothing it says
// may crash this node or wedge the room, whose participant must still be
// served afterwards. In the seeds, $MEETING and $ANN stand for the
// meeting's id and the local participant's.
func FuzzDeliver(f *testing.F) {
	for _, s := range []string{
		`{"kind":"state","meeting":"$MEETING","room":{"alias":"board","name":"Board"},"state":{"rev":9,"locked":true,"rules":{},"banned":["x"],"muted":["$ANN"],"members":[{"info":{"id":"p-b1","name":"Bob","role":"host"},"resumeHash":"00"}]}}`,
		`{"kind":"member","meeting":"$MEETING","room":{"alias":"board","name":"Board"},"member":{"info":{"id":"p-b2","name":"Cat","role":"guest"},"wait":"lobby","addr":"192.0.2.1"}}`,
		`{"kind":"member","meeting":"$MEETING","member":{"info":{"id":"p-b1","name":"Bob","role":"host"},"replaces":"$ANN"}}`,
		`{"kind":"gone","meeting":"$MEETING","id":"p-b1","reason":"left"}`,
		`{"kind":"message","meeting":"$MEETING","type":"chat","from":"p-b1","to":"$ANN","payload":"e30="}`,
		`{"kind":"message","meeting":"$MEETING","type":"key","from":"$ANN","to":"$ANN","payload":""}`,
		`{"kind":"command","meeting":"$MEETING","type":"remove","host":{"id":"p-b1","name":"Bob"},"target":"$ANN"}`,
		`{"kind":"command","meeting":"$MEETING","type":"set-role","host":{"id":"p-b1","name":"Bob"},"target":"$ANN","role":"guest"}`,
		`{"kind":"room-state","meeting":"$MEETING","state":{"rev":18446744073709551615,"rules":{"guestsMayUnmute":true}}}`,
		`{"kind":"end","meeting":"$MEETING","reason":"ended"}`,
		`{"kind":"state","meeting":"other","room":{"alias":"BOARD","name":""},"state":{"rev":1,"members":[{"info":{"id":"$ANN"}}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWorld(t, roleGate{})
		ann, welcome := w.join("board", "Ann", hostPIN)
		data = []byte(strings.NewReplacer("$MEETING", welcome.Meeting, "$ANN", ann.id).Replace(string(data)))
		var ev Event
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		w.m.Deliver("node-b", "board", ev)
		if ev.Room != nil {
			w.m.Deliver("node-b", ev.Room.Alias, ev)
		}
		// The node still serves its participant, unless the event
		// legitimately ended the meeting or sent her away (the
		// connection is closed then).
		ann.send(`{"v":1,"type":"ping","id":"after"}`)
		for {
			select {
			case data := <-ann.c.out:
				var m signal.Message
				if json.Unmarshal(data, &m) == nil && m.Type == signal.TypePong && m.ID == "after" {
					return
				}
			case <-ann.c.closed:
				return
			case <-time.After(5 * time.Second):
				t.Fatalf("no answer to a ping after the event %s", data)
			}
		}
	})
}
