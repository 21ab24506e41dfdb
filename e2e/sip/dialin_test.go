package sip_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"conclave/internal/auth"
	"conclave/internal/sipedge"
	"conclave/internal/store"
	"conclave/internal/testutil/browser"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/wait"
)

const (
	boardHostPIN  = "975310"
	boardGuestPIN = "246810"
)

// createBoardRoom adds the PIN room "board".
func createBoardRoom(t *testing.T, srv *testserver.Server) {
	t.Helper()
	hostHash, err := auth.HashPIN(boardHostPIN)
	if err != nil {
		t.Fatal(err)
	}
	guestHash, _ := auth.HashPIN(boardGuestPIN)
	if _, err := srv.Store().CreateRoom(context.Background(), store.Room{Alias: "board", DisplayName: "Board", Access: store.AccessPIN,
		HostPINHash: hostHash, GuestPINHash: guestHash, AllowGuests: true, GuestsMayUnmute: true}); err != nil {
		t.Fatal(err)
	}
}

// hostPage opens the room in a browser and enters with the host PIN.
func hostPage(t *testing.T, srv *testserver.Server) *browser.Page {
	t.Helper()
	p := browser.Start(t).NewPage(t, "Hana")
	if err := p.Navigate(srv.URL() + "/r/board"); err != nil {
		t.Fatal(err)
	}
	p.WaitJS(t, "Hana: prejoin ready", `!!document.querySelector('#join') && !document.querySelector('#join').disabled && !!document.querySelector('#pin')`, 15*time.Second)
	if err := p.SetValue("#name", "Hana"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetValue("#pin", boardHostPIN); err != nil {
		t.Fatal(err)
	}
	if err := p.Click("#join"); err != nil {
		t.Fatal(err)
	}
	p.WaitJS(t, "Hana: in the meeting, end-to-end", `!document.querySelector('#screen-meeting').hidden && document.querySelector('#e2ee-state').dataset.state === 'e2ee'`, 20*time.Second)
	return p
}

// answerKnock waits for the telephone's knock in the lobby panel and
// answers it ("admit" or "deny").
func answerKnock(t *testing.T, p *browser.Page, answer string) {
	t.Helper()
	p.WaitJS(t, "Hana: the telephone knocks, marked not end-to-end",
		`!!document.querySelector('#lobby-list li[data-gateway="sip"]') && /not end-to-end/.test(document.querySelector('#lobby-list li[data-gateway="sip"]').textContent)`, 30*time.Second)
	var open bool
	p.Eval(`!document.querySelector('#lobby-list').closest('[hidden]')`, &open)
	if !open {
		if err := p.Click("#toggle-lobby"); err != nil {
			t.Fatal(err)
		}
	}
	sel := `#lobby-list li[data-gateway="sip"] button.` + answer
	p.WaitJS(t, "Hana: "+answer+" button", fmt.Sprintf(`(() => { const b = document.querySelector(%q); return !!b && !b.disabled && b.offsetParent !== null; })()`, sel), 10*time.Second)
	if err := p.Click(sel); err != nil {
		t.Fatal(err)
	}
}

// inboundAudio sums what the page receives of remote audio.
const inboundAudioJS = `(async () => {
  const out = {packets: 0, energy: 0};
  for (const pc of (window.__pcs || [])) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') { out.packets += s.packetsReceived || 0; out.energy += s.totalAudioEnergy || 0; }
    });
  }
  return out;
})()`

type inbound struct {
	Packets float64 `json:"packets"`
	Energy  float64 `json:"energy"`
}

// A telephone (baresip, with a certificate from the registration
// authority through the token and CSR flow) dials the PIN room "board",
// where a browser is host:
//   - with the PIN in the address, the host denies it and the call is
//     refused;
//   - with the PIN on the keypad (RFC 4733), the host admits it: the
//     browser hears the telephone (audio energy) and the telephone's sink
//     receives the browser's audio; while it is there the browser shows
//     the meeting as not end-to-end, and after it hangs up the browser
//     rotates its sender key and shows end-to-end again.
func TestDialInToAMeetingWithTheHostsConsent(t *testing.T) {
	srv := startSIPServer(t, nil, false, "alice")
	createBoardRoom(t, srv)
	cert, enrol := enrolDevice(t, srv, "alice")
	host := hostPage(t, srv)

	phone := startPhone(t, phoneConfig{name: "alice", aor: "sip:alice@" + domain, proxy: srv.SIPAddr().String(),
		certPEM: cert, caPEM: []byte(enrol.CA), toneHz: 440, mediaEnc: "dtls_srtp", codecs: "opus"})
	phone.waitEvent(20*time.Second, "REGISTER_OK")

	// Without consent: refused.
	phone.command("dial", "sip:board*"+boardGuestPIN+"@"+domain)
	answerKnock(t, host, "deny")
	ev := phone.waitEvent(30*time.Second, "CALL_CLOSED", "CALL_ESTABLISHED")
	if ev["type"] != "CALL_CLOSED" {
		t.Fatalf("the denied call was answered: %v", ev)
	}
	t.Logf("denied call closed: %v", ev["param"])
	if n := countDialIns(t, srv, 603); n != 1 {
		t.Errorf("%d call records of a declined dial-in", n)
	}

	// With consent, PIN on the keypad.
	phone.command("dial", "sip:board@"+domain)
	// Keys are typed once the call is answered and its media secured
	// (DTLS-SRTP), as a person would when the line opens.
	phone.waitEvents(30*time.Second, "CALL_ESTABLISHED", "CALL_MENC")
	phone.command("sndcode", boardGuestPIN+"#")
	answerKnock(t, host, "admit")
	host.WaitJS(t, "Hana: the meeting is not end-to-end while the telephone is in it",
		`document.querySelector('#e2ee-state').dataset.state === 'not-e2ee' && /telephone connected through the server/.test(document.querySelector('#e2ee-warning').textContent)`, 20*time.Second)
	var before inbound
	host.Eval(inboundAudioJS, &before)
	var heard inbound
	wait.Until(t, 20*time.Second, func() bool {
		host.Eval(inboundAudioJS, &heard)
		return heard.Packets > before.Packets+100 && heard.Energy > before.Energy+0.01
	}, func() string { return fmt.Sprintf("the browser to hear the telephone (now %+v)", heard) })
	t.Logf("the browser receives the telephone: %.0f audio packets, energy %.3g", heard.Packets, heard.Energy)
	var report struct {
		SendingSince map[string]float64 `json:"sendingSince"`
		Participants map[string]struct {
			Decrypted, Auth int
		} `json:"participants"`
	}
	if err := host.Eval(browser.E2EEWorkerReportJS, &report); err != nil {
		t.Fatal(err)
	}
	// What the browser plays came through the SFU in SFrame, under the
	// gateway's sender key, not in clear.
	if len(report.Participants) != 1 {
		t.Fatalf("the browser decrypts %d participants' media, want the telephone's: %+v", len(report.Participants), report.Participants)
	}
	for id, r := range report.Participants {
		if r.Decrypted < 50 || r.Auth != 0 {
			t.Fatalf("the browser's decryption of the telephone (%s): %+v", id, r)
		}
		t.Logf("the browser decrypted %d frames of the telephone, none failing authentication", r.Decrypted)
	}
	// A copy: json.Unmarshal adds to the map it finds, so the next reports
	// must not write into this one.
	gen := maps.Clone(report.SendingSince)

	// Let the telephone hear a few seconds of the browser, then hang up.
	calls := srv.SIP().ActiveCalls()
	if len(calls) != 1 {
		t.Fatalf("%d calls in progress", len(calls))
	}
	wait.For(t, "the telephone to receive 150 frames of the meeting", 20*time.Second, func() bool {
		c := srv.SIP().ActiveCalls()
		return len(c) == 1 && c[0].Packets[1] >= 150
	})
	left := time.Now()
	phone.command("hangup", "")
	phone.waitEvent(20*time.Second, "CALL_CLOSED")
	host.WaitJS(t, "Hana: end-to-end again after the telephone left",
		`document.querySelector('#e2ee-state').dataset.state === 'e2ee' && !/telephone/.test(document.querySelector('#e2ee-warning').textContent)`, 20*time.Second)
	wait.Until(t, 10*time.Second, func() bool {
		report.SendingSince = nil
		host.Eval(browser.E2EEWorkerReportJS, &report)
		for g, at := range report.SendingSince {
			if _, old := gen[g]; !old && time.UnixMilli(int64(at)).After(left.Add(-time.Second)) {
				t.Logf("the browser encrypts with generation %s since %s, %.0f ms after the hang-up", g, time.UnixMilli(int64(at)).Format(time.StampMilli), float64(time.UnixMilli(int64(at)).Sub(left).Milliseconds()))
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("a key rotation after the telephone left (generations %v, before %v)", report.SendingSince, gen)
	})

	// The telephone's sink holds the browser's audio.
	s, rate := wavSamples(t, phone.receivedAudio())
	_, rms := toneEnergy(s, rate, 1000)
	t.Logf("the telephone received %.1f s of audio, RMS %.0f", float64(len(s))/float64(rate), rms)
	if len(s) < rate || rms < 100 {
		t.Errorf("the telephone does not hear the meeting: %d samples, RMS %.0f", len(s), rms)
	}
	if n := countDialIns(t, srv, 200); n != 1 {
		t.Errorf("%d call records of an answered dial-in", n)
	}
}

// countDialIns counts the ended dial-in call records with a final
// status, once there is one: the record is written when the edge has
// ended the call, which may be just after the telephone saw it end.
func countDialIns(t *testing.T, srv *testserver.Server, status int) int {
	t.Helper()
	var ended []sipedge.Record
	wait.Within(10*time.Second, func() bool {
		recs, err := srv.SIP().CallRecords(context.Background(), 20)
		if err != nil {
			return false
		}
		ended = ended[:0]
		for _, r := range recs {
			if r.Kind == "dial-in" && r.Status == status && !r.Ended.IsZero() {
				ended = append(ended, r)
			}
		}
		return len(ended) > 0
	})
	for _, r := range ended {
		if r.EndToEnd {
			t.Errorf("dial-in record %s says end-to-end", r.ID)
		}
	}
	return len(ended)
}
