package sip_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSIPTLSPortPassesTestssl scans the SIP-TLS port with testssl.sh, as an
// evaluator would, trusting the device CA that devices receive at
// enrolment (it issues the edge's certificate too). Nothing may be rated
// above LOW.
func TestSIPTLSPortPassesTestssl(t *testing.T) {
	if _, err := exec.LookPath("testssl"); err != nil {
		t.Fatal("testssl is not installed (scripts/test installs the testssl.sh package)")
	}
	// testssl opens hundreds of connections without a client
	// certificate; the break-in guard would quarantine it after 20.
	srv := startSIPServerWith(t, nil, false, []string{"127.0.0.1"})
	dir := t.TempDir()
	ca := filepath.Join(dir, "device-ca.pem")
	if err := os.WriteFile(ca, srv.DeviceCA().CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "testssl.json")
	cmd := exec.Command("testssl", "--quiet", "--color", "0", "--warnings", "batch", "--add-ca", ca,
		"-p", "-s", "-f", "-S", "-U", "--jsonfile", out, srv.SIPAddr().String())
	cmd.Env = append(os.Environ(), "TERM=dumb")
	log, err := cmd.CombinedOutput()
	if _, statErr := os.Stat(out); statErr != nil {
		t.Fatalf("testssl wrote no report (%v):\n%s", err, log)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var findings []struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
		Finding  string `json:"finding"`
	}
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("testssl report: %v", err)
	}
	if len(findings) < 20 {
		t.Fatalf("testssl reported only %d findings; it did not scan:\n%s", len(findings), log)
	}
	for _, f := range findings {
		switch f.Severity {
		case "MEDIUM", "HIGH", "CRITICAL":
			t.Errorf("testssl: %s %s: %s", f.Severity, f.ID, f.Finding)
		case "LOW", "WARN":
			t.Logf("testssl: %s %s: %s", f.Severity, f.ID, f.Finding)
		}
	}
}
