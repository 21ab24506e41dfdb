package turn

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseUsername: TURN usernames come from anyone who reaches the TURN
// port. A username is accepted only in the form the server issues, and
// what is accepted formats back to a username of the same participant
// and expiry.
func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1767225600:3f2a9c0d11e4b7a8", "1:p", ":p", "1:", "p", "9999999999999999999999:p",
		"1767225600:a:b", "1767225600:" + strings.Repeat("a", 65), "-1:p", "1767225600:p\x00", "01:p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		expiry, participant, err := parseUsername(s)
		if err != nil {
			return
		}
		if participant == "" || len(participant) > maxParticipantLen || strings.ContainsAny(participant, ":\x00 ") {
			t.Fatalf("%q: participant %q accepted", s, participant)
		}
		if expiry.Before(time.Unix(0, 0)) {
			t.Fatalf("%q: expiry %v before 1970", s, expiry)
		}
		again := strconv.FormatInt(expiry.Unix(), 10) + ":" + participant
		e2, p2, err := parseUsername(again)
		if err != nil || !e2.Equal(expiry) || p2 != participant {
			t.Fatalf("%q: formats back to %q, which parses to %v %q %v", s, again, e2, p2, err)
		}
	})
}
