// Package tlsscan runs testssl.sh (Debian package testssl.sh, command
// testssl) against a TLS listener on this machine and reads its findings,
// so that every TLS listener of Conclave is scanned by the tool evaluators
// use. The scan takes about a minute of mostly waiting.
package tlsscan

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Finding is one line of testssl's JSON report.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// Report is what a scan found.
type Report struct {
	Findings []Finding
	// Text is testssl's human-readable log.
	Text string
}

var rank = map[string]int{"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4, "FATAL": 5}

// AboveLow returns the findings of severity MEDIUM or more, and the
// problems that kept testssl from scanning.
func (r Report) AboveLow() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if rank[f.Severity] >= 2 || f.ID == "scanProblem" {
			out = append(out, f)
		}
	}
	return out
}

// Low returns the findings of severity LOW.
func (r Report) Low() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == "LOW" {
			out = append(out, f)
		}
	}
	return out
}

// Get returns the finding with this id, if any.
func (r Report) Get(id string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.ID == id {
			return f, true
		}
	}
	return Finding{}, false
}

// Scan runs testssl against target ("127.0.0.1:port"; loopback only),
// trusting caFile (PEM; empty for none), and returns its report. The test
// fails if testssl is not installed (scripts/test installs it) or the
// scan did not run.
func Scan(t testing.TB, target, caFile string) Report {
	t.Helper()
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("tlsscan: target %q: %v", target, err)
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		t.Fatalf("tlsscan: %s is not a loopback address; scans stay on this machine", target)
	}
	bin, err := exec.LookPath("testssl")
	if err != nil {
		t.Fatalf("tlsscan: testssl is not installed (Debian package testssl.sh; scripts/test installs it): %v", err)
	}
	dir := t.TempDir()
	jsonFile, logFile := filepath.Join(dir, "testssl.json"), filepath.Join(dir, "testssl.txt")
	args := []string{"--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
		"--jsonfile", jsonFile, "--logfile", logFile}
	if caFile != "" {
		args = append(args, "--add-ca", caFile)
	}
	cmd := exec.Command(bin, append(args, target)...)
	out, err := cmd.CombinedOutput()
	// testssl's exit status counts what it found; the JSON report decides.
	data, rerr := os.ReadFile(jsonFile)
	if rerr != nil {
		t.Fatalf("tlsscan: testssl wrote no report (%v): %v\n%s", err, rerr, out)
	}
	var r Report
	if err := json.Unmarshal(data, &r.Findings); err != nil {
		t.Fatalf("tlsscan: read %s: %v", jsonFile, err)
	}
	if len(r.Findings) < 20 {
		t.Fatalf("tlsscan: testssl reported only %d findings; the scan did not run:\n%s", len(r.Findings), out)
	}
	text, _ := os.ReadFile(logFile)
	r.Text = string(text)
	return r
}

// Summary is a few lines for logs and docs: the protocols, curves,
// session resumption and every finding above INFO.
func (r Report) Summary() string {
	var b strings.Builder
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "PFS_ECDHE_curves", "FS_ECDHE_curves", "TLS_session_ticket",
		"sessionresumption_ticket", "cert_chain_of_trust", "cert_revocation", "cert_crlDistributionPoints"} {
		if f, ok := r.Get(id); ok {
			fmt.Fprintf(&b, "%-28s %-8s %s\n", id, f.Severity, f.Finding)
		}
	}
	for _, f := range r.Findings {
		if rank[f.Severity] >= 1 {
			fmt.Fprintf(&b, "%-28s %-8s %s\n", f.ID, f.Severity, f.Finding)
		}
	}
	return b.String()
}
