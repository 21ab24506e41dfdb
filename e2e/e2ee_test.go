package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/testutil/browser"
)

// e2eeState is what a page shows about end-to-end encryption.
type e2eeState struct {
	State string `json:"state"`
	Code  string `json:"code"`
}

func (p *participant) e2ee() e2eeState {
	var s e2eeState
	p.Eval(`({state: document.querySelector('#e2ee-state')?.dataset.state || '', code: document.querySelector('#meeting-code')?.dataset.code || ''})`, &s)
	return s
}

// waitE2EE waits until the page shows the meeting end-to-end encrypted and
// returns its meeting code.
func (p *participant) waitE2EE() string {
	p.t.Helper()
	p.WaitJS(p.t, p.name+": end-to-end encrypted", `document.querySelector('#e2ee-state')?.dataset.state === 'e2ee' && /^\d{3} \d{3} \d{3} \d{3}$/.test(document.querySelector('#meeting-code')?.dataset.code || '')`, 20*time.Second)
	return p.e2ee().Code
}

// sameCode waits until every page shows the same meeting code and returns it.
func sameCode(t *testing.T, people ...*participant) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		codes := map[string][]string{}
		for _, p := range people {
			c := p.waitE2EE()
			codes[c] = append(codes[c], p.name)
		}
		if len(codes) == 1 {
			for c := range codes {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("meeting codes differ: %v", codes)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestE2EEBrowsers: three browsers meet with E2EE on: each decodes the
// others' video and audio through the encrypting transforms, all show the
// same meeting code, which changes when someone leaves; chat and a file
// reach the others, and neither plaintext is on the server's disk or in its
// logs.
func TestE2EEBrowsers(t *testing.T) {
	logs := &syncBuffer{}
	srv := startServerLogging(t, logs, "alpha")
	b := browser.Start(t)
	alice := join(t, b, srv.URL(), "alpha", "Alice")
	bob := join(t, b, srv.URL(), "alpha", "Bob")
	carol := join(t, b, srv.URL(), "alpha", "Carol")
	people := []*participant{alice, bob, carol}
	code3 := sameCode(t, people...)
	t.Logf("meeting code with three: %s", code3)
	for _, p := range people {
		var transform string
		p.Eval(`window.conclaveE2EE?.transform || ''`, &transform)
		if transform != "script-transform" && transform != "encoded-streams" {
			t.Fatalf("%s encrypts media with %q; want a frame transform", p.name, transform)
		}
	}
	for _, p := range people {
		for _, q := range people {
			if p != q {
				p.waitMedia(q, "camera", true)
			}
		}
	}
	for _, p := range people {
		p.WaitJS(t, p.name+": everyone verified", `document.querySelectorAll('#participants li[data-participant][data-e2ee="verified"]').length >= 2`, 10*time.Second)
	}

	// Chat and a file, with markers that must never reach the server in clear.
	const chatMarker = "PLAINTEXT-CHAT-7f3a9c"
	const fileMarker = "PLAINTEXT-FILE-51d0e8"
	if err := alice.SetValue("#chat-input", chatMarker); err != nil {
		t.Fatal(err)
	}
	alice.click("#toggle-chat")
	alice.click("#chat-send")
	for _, p := range []*participant{bob, carol} {
		p.WaitJS(t, p.name+": chat received", fmt.Sprintf(`[...document.querySelectorAll('#chat-log li')].some(li => li.textContent.includes(%q))`, chatMarker), 10*time.Second)
	}
	shareFile(t, alice, fileMarker, 5000)
	got, shown := downloadLastFile(t, bob)
	if !strings.HasPrefix(got, fileMarker) || len(got) != len(fileMarker)*5000 {
		t.Fatalf("Bob's decrypted file: %d bytes (%.40q); the page shows %q", len(got), got, shown)
	}

	// Carol leaves: the code changes, the same for the two who stay.
	carol.click("#leave")
	alice.WaitJS(t, "Alice: code changed", fmt.Sprintf(`(document.querySelector('#meeting-code')?.dataset.code || %q) !== %q`, code3, code3), 10*time.Second)
	code2 := sameCode(t, alice, bob)
	if code2 == code3 {
		t.Fatalf("meeting code did not change when Carol left: %s", code2)
	}
	alice.waitMedia(bob, "camera", true)
	bob.waitMedia(alice, "camera", true)

	// Neither plaintext is anywhere on the server's disk or in its logs.
	for _, marker := range []string{chatMarker, fileMarker} {
		if logs.Contains(marker) {
			t.Errorf("server logs contain %q", marker)
		}
		filepath.WalkDir(srv.DataDir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(path)
			if bytes.Contains(data, []byte(marker)) {
				t.Errorf("%s contains %q", path, marker)
			}
			return nil
		})
	}
}
