package secure

import (
	"path/filepath"
	"testing"

	"conclave/internal/e2ee"
)

// TestLogPinWithheld: a server that stops publishing the log key this
// client pinned must not switch its checks off silently: CheckLogPin
// reports it (review of issue 11), as it reports a changed key.
func TestLogPinWithheld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known-logs")
	k, _ := e2ee.GenerateDeviceKey()
	vkey, err := e2ee.LogVerifierKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, st, err := CheckLogPin(path, "meet.example:443", vkey); err != nil || st != PinNew {
		t.Fatalf("first use: %v, %v", st, err)
	}
	pinned, st, err := CheckLogPin(path, "meet.example:443", "")
	if err != nil || st != PinWithheld || pinned != vkey {
		t.Fatalf("withheld: %q, %v, %v; want the pin and PinWithheld", pinned, st, err)
	}
	if _, _, err := CheckLogPin(path, "other.example:443", ""); err == nil {
		t.Error("no log key and nothing pinned: want an error")
	}
	if _, st, _ := CheckLogPin(path, "meet.example:443", vkey); st != PinMatch {
		t.Errorf("the pin was not kept: %v", st)
	}
}
