package meeting

import (
	"testing"
	"time"

	"conclave/internal/conn"
	"conclave/internal/signal"
)

// Joining: the newcomer is welcomed with the others listed, the others
// learn of it, and each receives the others' tracks as the room decides:
// a participant's microphone and camera in one stream, its screen in
// another, a screen ranked first.
func TestJoin(t *testing.T) {
	w := newWorld(t, roleGate{rules: Rules{GuestsMayPresent: true}})
	alice, aw := w.join("board", "Alice", "")
	must(t, aw.Type == signal.TypeWelcome && len(aw.Participants) == 0 && aw.RoomInfo.Name == "Room board",
		"Alice: got %+v, want a welcome to an empty room", aw)
	pa := w.media.publisher(t, alice.id)
	mic := pa.start("0", conn.Microphone)
	cam := pa.start("1", conn.Camera)

	bob, bw := w.join("board", "Bob", "")
	must(t, bw.Type == signal.TypeWelcome && ids(bw.Participants) == "Alice", "Bob: got %+v, want a welcome listing Alice", bw)
	m := alice.next()
	must(t, m.Type == signal.TypeParticipantJoined && m.Participant.ID == bob.id, "Alice: got %+v, want Bob's arrival", m)

	// Bob receives what Alice already sends; Alice what Bob starts.
	subB := w.media.sub(1)
	for _, tr := range []*fakeTrack{mic, cam} {
		o, ok := subB.options(tr)
		must(t, ok, "Bob does not receive Alice's %s", tr.source)
		must(t, o.Stream == alice.id && o.Priority == priorityOther, "Alice's %s reaches Bob with %+v", tr.source, o)
	}
	pb := w.media.publisher(t, bob.id)
	screen := pb.start("2", conn.Screen)
	screenAudio := pb.start("3", conn.ScreenAudio)
	subA := w.media.sub(0)
	o, ok := subA.options(screen)
	must(t, ok && o.Stream == bob.id+"-screen" && o.Priority == priorityScreen, "Bob's screen reaches Alice with %+v (%v)", o, ok)
	o, ok = subA.options(screenAudio)
	must(t, ok && o.Stream == bob.id+"-screen", "Bob's screen audio reaches Alice with %+v (%v)", o, ok)
	must(t, !subB.forwarding(screen), "Bob receives his own screen")
	alice.quiet(signal.TypeParticipantUpdated)
	bob.quiet()
}

// Leaving: the others are told at once, the leaver's connections close,
// and its tracks stop reaching anyone.
func TestLeave(t *testing.T) {
	w := newWorld(t, roleGate{})
	alice, _ := w.join("board", "Alice", "")
	bob, _ := w.join("board", "Bob", "")
	alice.next() // Bob joined
	cam := w.media.publisher(t, alice.id).start("0", conn.Camera)
	subB := w.media.sub(1)
	must(t, subB.forwarding(cam), "Bob does not receive Alice's camera")

	alice.send(`{"v":1,"type":"leave"}`)
	m := alice.next()
	must(t, m.Type == signal.TypeBye && m.Reason == "left", "Alice: got %+v, want bye left", m)
	m = bob.next()
	must(t, m.Type == signal.TypeParticipantLeft && m.Participant.ID == alice.id, "Bob: got %+v, want Alice's leave", m)
	<-alice.done // her connection's handling of the leave is over
	must(t, !subB.forwarding(cam), "Alice's camera still reaches Bob after she left")
	must(t, w.media.publisher(t, alice.id).isClosed() && w.media.sub(0).isClosed(), "Alice's connections are still open")
	must(t, w.m.Participants("board") == 1, "%d participants after the leave, want 1", w.m.Participants("board"))
	bob.quiet()
}

// A host's mute stops the media core forwarding the microphone at once;
// a guest may unmute only when the room allows it, and then forwarding
// resumes.
func TestHostMute(t *testing.T) {
	w := newWorld(t, roleGate{})
	host, _ := w.join("board", "Hana", hostPIN)
	guest, _ := w.join("board", "Gina", guestPIN)
	host.next(signal.TypeRoomState) // Gina joined
	mic := w.media.publisher(t, guest.id).start("0", conn.Microphone)
	cam := w.media.publisher(t, guest.id).start("1", conn.Camera)
	guest.send(`{"v":1,"type":"state","state":{"audio":true,"video":true,"screen":false}}`)
	m := host.next()
	must(t, m.Type == signal.TypeParticipantUpdated && m.Participant.Audio, "host: got %+v, want Gina's microphone on", m)
	subH := w.media.sub(0)
	must(t, subH.forwarding(mic), "Gina's microphone does not reach the host")

	host.send(`{"v":1,"type":"mute","target":"` + guest.id + `"}`)
	host.quiet(signal.TypeParticipantUpdated)
	m = guest.next()
	must(t, m.Type == signal.TypeMuted && m.By == host.id, "Gina: got %+v, want muted by Hana", m)
	must(t, !subH.forwarding(mic), "Gina's microphone still forwarded after the host's mute")
	must(t, subH.forwarding(cam), "the host's mute stopped Gina's camera")

	// The room does not let guests unmute: the microphone stays off.
	guest.send(`{"v":1,"type":"state","state":{"audio":true,"video":true,"screen":false}}`)
	m = guest.next(signal.TypeParticipantUpdated)
	must(t, m.Type == signal.TypeError && m.Code == signal.CodeForbidden, "Gina unmuting: got %+v, want forbidden", m)
	m = host.next()
	must(t, m.Type == signal.TypeParticipantUpdated && m.Participant.Muted && !m.Participant.Audio, "host: got %+v, want Gina still muted", m)
	must(t, !subH.forwarding(mic), "a guest lifted the host's mute")

	// The host lets guests unmute; Gina does, and is heard again.
	host.send(`{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":true,"guestsMayPresent":false}}`)
	m = guest.next()
	must(t, m.Type == signal.TypeRoomState && m.RoomState.GuestsMayUnmute, "Gina: got %+v, want the new rules", m)
	guest.send(`{"v":1,"type":"state","state":{"audio":true,"video":true,"screen":false}}`)
	guest.quiet(signal.TypeParticipantUpdated)
	m = host.next(signal.TypeRoomState)
	must(t, m.Type == signal.TypeParticipantUpdated && m.Participant.Audio && !m.Participant.Muted, "host: got %+v, want Gina unmuted", m)
	must(t, subH.forwarding(mic), "Gina's microphone not forwarded after she unmuted")

	// A microphone that starts after the mute starts muted.
	host.send(`{"v":1,"type":"mute","target":"` + guest.id + `"}`)
	host.quiet(signal.TypeParticipantUpdated, signal.TypeRoomState)
	w.media.publisher(t, guest.id).stop(mic)
	mic2 := w.media.publisher(t, guest.id).start("2", conn.Microphone)
	must(t, mic2.isMuted() && !subH.forwarding(mic2), "a new microphone escaped the host's mute")
}

// Layers: the sizes a subscriber shows tracks at reach its media core
// connection, and the media core's dynacast reaches the publisher as a
// layers message naming its track's mid.
func TestLayers(t *testing.T) {
	w := newWorld(t, roleGate{})
	alice, _ := w.join("board", "Alice", "")
	bob, _ := w.join("board", "Bob", "")
	alice.next() // Bob joined
	cam := w.media.publisher(t, alice.id).start("4", conn.Camera)

	bob.send(`{"v":1,"type":"layout","layout":{"7":{"width":320,"height":180},"8":{"width":0,"height":0}}}`)
	bob.quiet()
	subB := w.media.sub(1)
	subB.mu.Lock()
	sizes := subB.sizes
	subB.mu.Unlock()
	must(t, sizes["7"] == [2]int{320, 180} && sizes["8"] == [2]int{0, 0}, "Bob's media connection got sizes %v", sizes)

	w.media.publisher(t, alice.id).events.LayersNeeded(cam, []bool{true, false, false})
	m := alice.next()
	must(t, m.Type == signal.TypeLayers && m.Mid == "4" && len(m.Active) == 3 && m.Active[0] && !m.Active[1] && !m.Active[2],
		"Alice: got %+v, want layers for mid 4: the low one only", m)
	bob.quiet()
}

// The active speaker: the loudest microphone takes the floor at once when
// nobody has it, a challenger only after leading for the hold time, and
// silence keeps the last speaker. Everyone is told, and the speaker's
// video gets priority in every subscriber's allocation (the previous
// speaker's loses it).
func TestSpeaker(t *testing.T) {
	w := newWorld(t, roleGate{})
	alice, _ := w.join("board", "Alice", "")
	bob, _ := w.join("board", "Bob", "")
	carol, _ := w.join("board", "Carol", "")
	alice.next()
	alice.next()
	bob.next() // Carol joined
	micA := w.media.publisher(t, alice.id).start("0", conn.Microphone)
	camA := w.media.publisher(t, alice.id).start("1", conn.Camera)
	micB := w.media.publisher(t, bob.id).start("0", conn.Microphone)
	camB := w.media.publisher(t, bob.id).start("1", conn.Camera)
	subC := w.media.sub(2)
	step := func(la, lb float64, n int) {
		for range n {
			micA.setLevel(la)
			micB.setLevel(lb)
			w.clock.Advance(200 * time.Millisecond)
		}
	}
	priority := func(tr *fakeTrack) int {
		o, ok := subC.options(tr)
		must(t, ok, "Carol does not receive %s", tr.id)
		return o.Priority
	}

	step(0, 0, 3)
	carol.quiet()
	step(90, 0, 1) // the first voice takes the floor at once
	for _, c := range []*client{alice, bob, carol} {
		m := c.next()
		must(t, m.Type == signal.TypeSpeaker && m.From == alice.id, "%s: got %+v, want Alice speaking", c.name, m)
	}
	must(t, priority(camA) == prioritySpeaker && priority(camB) == priorityOther, "priorities %d, %d with Alice speaking", priority(camA), priority(camB))

	step(80, 100, 4) // Bob leads, not yet for a second
	carol.quiet()
	step(80, 100, 2)
	m := carol.next()
	must(t, m.Type == signal.TypeSpeaker && m.From == bob.id, "Carol: got %+v, want Bob speaking after leading 1 s", m)
	must(t, priority(camB) == prioritySpeaker && priority(camA) == priorityOther, "priorities %d, %d with Bob speaking", priority(camA), priority(camB))

	step(0, 0, 10) // silence keeps the last speaker
	carol.quiet()

	// A newcomer learns who speaks, and receives the speaker first.
	dave, _ := w.join("board", "Dave", "")
	m = dave.next()
	must(t, m.Type == signal.TypeSpeaker && m.From == bob.id, "Dave: got %+v, want Bob speaking", m)
	o, _ := w.media.sub(3).options(camB)
	must(t, o.Priority == prioritySpeaker, "Dave receives the speaker's camera with %+v", o)

	// A host's mute silences a microphone for the detector too.
	bob.send(`{"v":1,"type":"leave"}`)
	carol.next(signal.TypeParticipantJoined)
	step(60, 0, 1)
	m = carol.next(signal.TypeParticipantJoined, signal.TypeParticipantLeft)
	must(t, m.Type == signal.TypeSpeaker && m.From == alice.id, "Carol: got %+v, want Alice speaking after Bob left", m)
}

// Guests may present only if the room lets them: a guest's screen is not
// forwarded, and is withdrawn when a host takes the right away.
func TestGuestsMayPresent(t *testing.T) {
	w := newWorld(t, roleGate{rules: Rules{GuestsMayPresent: false}})
	host, _ := w.join("board", "Hana", hostPIN)
	guest, _ := w.join("board", "Gina", guestPIN)
	host.next(signal.TypeRoomState) // Gina joined
	screen := w.media.publisher(t, guest.id).start("0", conn.Screen)
	m := guest.next()
	must(t, m.Type == signal.TypeError && m.Code == signal.CodeForbidden, "Gina sharing: got %+v, want forbidden", m)
	subH := w.media.sub(0)
	must(t, !subH.forwarding(screen), "a guest's screen reached the host against the room's rules")

	// quiet: the host's connection has handled the settings in full.
	host.send(`{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":false,"guestsMayPresent":true}}`)
	host.quiet(signal.TypeRoomState)
	must(t, subH.forwarding(screen), "the guest's screen is not forwarded once guests may present")
	host.send(`{"v":1,"type":"room-settings","settings":{"guestsMayUnmute":false,"guestsMayPresent":false}}`)
	host.quiet(signal.TypeRoomState)
	must(t, !subH.forwarding(screen), "the guest's screen still forwarded after the host took the right away")
}
