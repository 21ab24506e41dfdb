package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
)

const (
	vaultHostPIN  = "246810"
	vaultGuestPIN = "135790"
)

// createPINRoom adds a PIN room with a host and a guest PIN.
func createPINRoom(t *testing.T, st store.Store, alias string) {
	t.Helper()
	hostHash, err := auth.HashPIN(vaultHostPIN)
	if err != nil {
		t.Fatal(err)
	}
	guestHash, _ := auth.HashPIN(vaultGuestPIN)
	_, err = st.CreateRoom(context.Background(), store.Room{Alias: alias, DisplayName: "Vault", Access: store.AccessPIN,
		HostPINHash: hostHash, GuestPINHash: guestHash, AllowGuests: true, GuestsMayUnmute: true, GuestsMayPresent: true})
	if err != nil {
		t.Fatal(err)
	}
}

// knock opens the meeting page, types name and PIN and clicks join,
// without waiting for any outcome.
func knock(t *testing.T, b *browser.Browser, base, room, name, pin string) *participant {
	t.Helper()
	p := &participant{Page: b.NewPage(t, name), t: t, name: name}
	if err := p.Navigate(base + "/r/" + room); err != nil {
		t.Fatalf("%s: open meeting page: %v", name, err)
	}
	p.submitJoin(pin)
	return p
}

func (p *participant) submitJoin(pin string) {
	p.t.Helper()
	p.WaitJS(p.t, p.name+": prejoin ready", `!!document.querySelector('#join') && !document.querySelector('#join').disabled && !!document.querySelector('#pin')`, 15*time.Second)
	if err := p.SetValue("#name", p.name); err != nil {
		p.t.Fatalf("%s: type name: %v", p.name, err)
	}
	if err := p.SetValue("#pin", pin); err != nil {
		p.t.Fatalf("%s: type PIN: %v", p.name, err)
	}
	if err := p.Click("#join"); err != nil {
		p.t.Fatalf("%s: click join: %v", p.name, err)
	}
}

// inMeeting waits until the page shows the meeting and records the id.
func (p *participant) inMeeting(timeout time.Duration) {
	p.t.Helper()
	p.WaitJS(p.t, p.name+": in the meeting", `(document.querySelector('.tile[data-self="true"]')?.dataset.participant || '') !== '' && !document.querySelector('#screen-meeting').hidden`, timeout)
	p.id = p.selfID()
}

func (p *participant) click(sel string) {
	p.t.Helper()
	p.WaitJS(p.t, p.name+": "+sel+" present", fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && !e.disabled && e.offsetParent !== null; })()`, sel), 10*time.Second)
	if err := p.Click(sel); err != nil {
		p.t.Fatalf("%s: click %s: %v", p.name, sel, err)
	}
}

func (p *participant) text(sel string) string {
	var s string
	p.Eval(fmt.Sprintf(`document.querySelector(%q)?.textContent || ''`, sel), &s)
	return s
}

// TestAccessInBrowser: a wrong PIN gives a clear error; a guest waits for
// the host and then meets; a locked room sends a newcomer to the lobby and
// the host admits it; a host's mute stops the others receiving that
// microphone; a removed guest cannot come back.
func TestAccessInBrowser(t *testing.T) {
	srv := startServer(t)
	createPINRoom(t, srv.Store(), "vault")
	b := browser.Start(t)
	base := srv.URL()

	// Wrong PIN: a clear error on the prejoin screen, and a retry works.
	gina := knock(t, b, base, "vault", "Gina", "000000")
	gina.WaitJS(t, "Gina: wrong PIN explained", `(() => { const e = document.querySelector('#join-error'); return !!e && !e.hidden && /not available/i.test(e.textContent) && /PIN/.test(e.textContent); })()`, 10*time.Second)
	t.Logf("wrong PIN shows: %q", gina.text("#join-error"))

	// With the guest PIN Gina waits for the host.
	gina.submitJoin(vaultGuestPIN)
	gina.WaitJS(t, "Gina: waiting for the host", `!document.querySelector('#screen-waiting').hidden && /waiting for the host/i.test(document.querySelector('#waiting-message').textContent)`, 10*time.Second)

	hana := knock(t, b, base, "vault", "Hana", vaultHostPIN)
	hana.inMeeting(15 * time.Second)
	gina.inMeeting(15 * time.Second)
	gina.waitMedia(hana, "camera", true)
	hana.waitMedia(gina, "camera", true)

	// Hana locks; Kim knocks and sees nothing of the meeting meanwhile.
	hana.click("#toggle-lock")
	hana.WaitJS(t, "Hana: room locked", `document.querySelector('#toggle-lock').getAttribute('aria-pressed') === 'true'`, 5*time.Second)
	kim := knock(t, b, base, "vault", "Kim", vaultGuestPIN)
	kim.WaitJS(t, "Kim: in the lobby", `!document.querySelector('#screen-waiting').hidden && /locked/i.test(document.querySelector('#waiting-message').textContent)`, 10*time.Second)
	var lobbyView struct {
		Inbound float64
		Tiles   int
	}
	kim.Eval(`(async () => {
	  let inbound = 0;
	  for (const pc of (window.__pcs || [])) (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp') inbound += s.packetsReceived || 0; });
	  return {Inbound: inbound, Tiles: document.querySelectorAll('.tile:not([data-self="true"])').length};
	})()`, &lobbyView)
	if lobbyView.Inbound != 0 || lobbyView.Tiles != 0 {
		t.Errorf("Kim in the lobby receives %v packets and sees %d tiles; want nothing", lobbyView.Inbound, lobbyView.Tiles)
	}
	hana.click("#toggle-lobby")
	hana.WaitJS(t, "Hana: Kim knocks", `!!document.querySelector('#lobby-list li[data-participant] button.admit')`, 10*time.Second)
	hana.click("#lobby-list li[data-participant] button.admit")
	kim.inMeeting(15 * time.Second)
	kim.waitMedia(hana, "camera", true)
	kim.waitMedia(gina, "camera", true)

	// Hana mutes Gina: Kim and Hana stop receiving Gina's audio.
	hana.click("#toggle-participants")
	hana.click(fmt.Sprintf(`button.mute[data-target=%q]`, gina.id))
	gina.WaitJS(t, "Gina: told she was muted", `document.querySelector('#toggle-mic').getAttribute('aria-pressed') === 'false'`, 5*time.Second)
	for _, p := range []*participant{kim, hana} {
		p.waitAudioStops(gina)
	}

	// Hana removes Kim, who cannot come back.
	hana.click(fmt.Sprintf(`button.remove[data-target=%q]`, kim.id))
	hana.click("#confirm-remove-yes")
	kim.WaitJS(t, "Kim: told she was removed", `/removed you/i.test(document.querySelector('#left-message')?.textContent || '')`, 10*time.Second)
	if err := kim.Navigate(base + "/r/vault"); err != nil {
		t.Fatal(err)
	}
	kim.submitJoin(vaultGuestPIN)
	kim.WaitJS(t, "Kim: rejoin refused", `/removed you/i.test(document.querySelector('#left-message')?.textContent || '') && !document.querySelector('#left-message').closest('[hidden]')`, 10*time.Second)
	hana.WaitJS(t, "Hana: Kim gone", fmt.Sprintf(`!document.querySelector('.tile[data-participant=%q]')`, kim.id), 5*time.Second)
}

// waitAudioStops waits until the audio received from `from` stops growing:
// two readings one second apart are equal.
func (p *participant) waitAudioStops(from *participant) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := p.media(from, "camera").AudioPackets
	for {
		time.Sleep(time.Second)
		now := p.media(from, "camera").AudioPackets
		if now == last {
			p.t.Logf("%s no longer receives %s's microphone (%.0f packets, unchanged for 1 s)", p.name, from.name, now)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s still receives %s's microphone after the mute (%.0f -> %.0f packets)", p.name, from.name, last, now)
		}
		last = now
	}
}

// TestGuestsMayPresent: in a room whose guests may present, a guest shares
// her screen and the host decodes it; when the host turns that off for the
// meeting, the guest's share stops for everyone and her button goes away;
// turned back on, she can share again.
func TestGuestsMayPresent(t *testing.T) {
	srv := startServer(t)
	createPINRoom(t, srv.Store(), "vault")
	b := browser.Start(t)
	base := srv.URL()
	hana := knock(t, b, base, "vault", "Hana", vaultHostPIN)
	hana.inMeeting(15 * time.Second)
	gina := knock(t, b, base, "vault", "Gina", vaultGuestPIN)
	gina.inMeeting(15 * time.Second)

	gina.click("#toggle-screen")
	hana.waitMedia(gina, "screen", false)

	// Hana, for this meeting: guests may not share their screen.
	hana.click("#toggle-settings")
	hana.WaitJS(t, "Hana: the setting shows the room's default", `document.querySelector('#guests-may-present').checked`, 5*time.Second)
	hana.click("#guests-may-present")
	noScreen := fmt.Sprintf(`!document.querySelector('.tile[data-participant=%q][data-source="screen"]')`, gina.id)
	hana.WaitJS(t, "Hana: Gina's screen gone", noScreen, 10*time.Second)
	gina.WaitJS(t, "Gina: her share stopped and its button gone",
		`document.querySelector('#toggle-screen').hidden && document.querySelector('#toggle-screen').getAttribute('aria-pressed') === 'false'`, 10*time.Second)

	// Allowed again: Gina shares, Hana decodes it.
	hana.click("#guests-may-present")
	gina.click("#toggle-screen")
	hana.waitMedia(gina, "screen", false)
}
