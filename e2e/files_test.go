package e2e

import (
	"fmt"
	"testing"
	"time"
)

// shareFile makes p share a text file of marker repeated copies times
// through the chat's file input, as a person picking a file does.
func shareFile(t *testing.T, p *participant, marker string, copies int) {
	t.Helper()
	err := p.Eval(fmt.Sprintf(`(() => {
	  const input = document.querySelector('#chat-file');
	  const dt = new DataTransfer();
	  dt.items.add(new File([%q.repeat(%d)], 'minutes.txt', {type: 'text/plain'}));
	  input.files = dt.files;
	  input.dispatchEvent(new Event('change', {bubbles: true}));
	  return true;
	})()`, marker, copies), nil)
	if err != nil {
		t.Fatalf("%s shares a file: %v", p.name, err)
	}
}

// downloadLastFile makes p click the download of the last file offered in
// its chat and returns the decrypted text, or the error the page shows
// ("" when it shows none).
func downloadLastFile(t *testing.T, p *participant) (text, shown string) {
	t.Helper()
	p.WaitJS(t, p.name+": file offered", `!!document.querySelector('#chat-log li[data-file] a.file-download')`, 20*time.Second)
	// The page offers the decrypted file as a blob: URL (which the CSP
	// rightly forbids fetching); the test keeps the Blob it was made from.
	var out struct {
		Text  string `json:"text"`
		Error string `json:"error"`
	}
	err := p.Eval(`(async () => {
	  if (!window.__keepBlobs) {
	    window.__keepBlobs = true;
	    const make = URL.createObjectURL;
	    URL.createObjectURL = (b) => { window.__lastBlob = b; return make.call(URL, b); };
	  }
	  window.__lastBlob = null;
	  const all = document.querySelectorAll('#chat-log li[data-file]');
	  const li = all[all.length - 1];
	  const a = li.querySelector('a.file-download');
	  const shown = () => { const e = li.querySelector('.file-error'); return e && !e.hidden ? e.textContent : ''; };
	  a.click();
	  for (let i = 0; i < 150 && !window.__lastBlob && !shown(); i++) await new Promise(r => setTimeout(r, 100));
	  return { text: window.__lastBlob ? await window.__lastBlob.text() : '', error: shown() };
	})()`, &out)
	if err != nil {
		t.Fatalf("%s downloads the file: %v", p.name, err)
	}
	return out.Text, out.Error
}
