package secure

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"conclave/internal/client"
	"conclave/internal/client/secure"
	"conclave/internal/server"
	"conclave/internal/testutil/wait"
)

// TestRotationTiming: 20 native participants, each sending small video
// frames at 15 frames/s; one leaves. Measured for every remaining
// (receiver, sender) pair: the time from the leave until the receiver
// decrypts the sender's first frame under its new generation. The whole of
// it, debounce and switch delay included, must stay under 1 s; no receiver
// may lose a frame for lack of a key during the rotation (the switch delay,
// and the receivers' wait for a key that a frame overtook, are there for
// that).
func TestRotationTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("20 participants")
	}
	if raceEnabled {
		t.Skip("a timing measurement; run it without -race")
	}
	const n = 20
	srv := startServer(t, server.Options{}, nil, "big")
	ms := make([]*member, n)
	start := time.Now()
	for i := range ms {
		ms[i] = join(t, srv, "big", fmt.Sprintf("P%02d", i), joinOpts{
			video: &repeatSource{frame: tinyKeyFrame(), codec: client.CodecVP8}, dialTimout: 30 * time.Second})
	}
	waitVerified(t, ms...)
	wait.For(t, "every pair to decrypt", 30*time.Second, func() bool {
		for _, at := range ms {
			for _, from := range ms {
				if at != from && at.e2eeStats(from.Self().ID).Decrypted == 0 {
					return false
				}
			}
		}
		return true
	})
	t.Logf("%d participants joined, verified and decrypting each other in %v", n, time.Since(start).Round(100*time.Millisecond))

	stay, leaver := ms[:n-1], ms[n-1]
	noKeyBefore := noKeyCounts(stay)
	left := time.Now()
	if err := leaver.Leave(); err != nil {
		t.Fatal(err)
	}
	// Each sender's rotation: its pending key after the leave, and when
	// it switched to it.
	type rotation struct {
		gen               uint8
		rotated, switched time.Time
	}
	rot := map[string]rotation{}
	wait.For(t, "every sender to rotate and switch", 15*time.Second, func() bool {
		for _, s := range stay {
			var r rotation
			for _, e := range s.keyEvents(secure.OwnKey) {
				if e.Pending && e.At.After(left) {
					r.gen, r.rotated = e.Key.Generation, e.At
				}
			}
			for _, e := range s.keyEvents(secure.Switched) {
				if !r.rotated.IsZero() && e.Key.Generation == r.gen {
					r.switched = e.At
				}
			}
			if r.switched.IsZero() {
				return false
			}
			rot[s.Self().ID] = r
		}
		return true
	})
	var fromLeave, fromRotation, fromSwitch []time.Duration
	wait.For(t, "every receiver to decrypt every sender's new generation", 15*time.Second, func() bool {
		fromLeave, fromRotation, fromSwitch = fromLeave[:0], fromRotation[:0], fromSwitch[:0]
		for _, at := range stay {
			first := map[string]time.Time{}
			for _, e := range at.keyEvents(secure.FirstDecrypt) {
				if r, ok := rot[e.Participant]; ok && e.Key.Generation == r.gen && first[e.Participant].IsZero() {
					first[e.Participant] = e.At
				}
			}
			for _, from := range stay {
				if from == at {
					continue
				}
				id := from.Self().ID
				d, ok := first[id]
				if !ok {
					return false
				}
				fromLeave = append(fromLeave, d.Sub(left))
				fromRotation = append(fromRotation, d.Sub(rot[id].rotated))
				fromSwitch = append(fromSwitch, d.Sub(rot[id].switched))
			}
		}
		return true
	})
	lost := 0
	for i, c := range noKeyCounts(stay) {
		lost += int(c - noKeyBefore[i])
	}
	t.Logf("%d pairs; leave -> new generation decrypted: %s", len(fromLeave), summary(fromLeave))
	t.Logf("rotation (after the %v debounce) -> decrypted: %s", secure.DefaultRotationDebounce, summary(fromRotation))
	t.Logf("switch (%v after the rotation) -> decrypted: %s", secure.DefaultSwitchDelay, summary(fromSwitch))
	t.Logf("frames dropped for lack of a key during the rotation: %d", lost)
	if m := slices.Max(fromLeave); m >= time.Second {
		t.Errorf("a receiver decrypted a sender's new generation %v after the leave, want < 1 s", m)
	}
	if lost != 0 {
		t.Errorf("%d frames dropped for lack of a key during the rotation", lost)
	}
	leaveAll(stay)
}

// leaveAll makes members leave at once (each Leave may wait a second for
// the server's bye).
func leaveAll(ms []*member) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { m.Leave() })
	}
	wg.Wait()
}

func noKeyCounts(ms []*member) []uint64 {
	var out []uint64
	for _, m := range ms {
		var sum uint64
		for _, st := range m.sec.Stats() {
			sum += st.NoKey
		}
		out = append(out, sum)
	}
	return out
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("p50 %v, p90 %v, max %v", s[len(s)/2].Round(time.Millisecond),
		s[len(s)*9/10].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
