package e2e

import (
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/testutil/testserver"
	"conclave/internal/testutil/tlsscan"
)

// TestTLSScanHTTPS: testssl.sh, the scanner evaluators use, finds nothing
// above LOW on the HTTPS listener and on the management listener
// (--admin-listen): TLS 1.2 and 1.3 only, ECDHE with
// AES-GCM, P-256 and P-384 only, no session tickets, a certificate chain
// to the local CA with a CRL distribution point (docs/hardening.md).
// The HTTPS port is scanned with TURN over TLS multiplexed on it (the
// default): TURN allocations over TLS on that port work before and after
// the scan, so the findings are those of the port as deployed.
// Other TLS listeners call tlsscan.Scan the same way.
func TestTLSScanHTTPS(t *testing.T) {
	// The management listener on localhost:0: the same address as the
	// other, but --admin-listen must not be written like --listen.
	srv := testserver.Start(t, testserver.Options{Config: func(c *config.Config) { c.Auth.AdminListen = "localhost:0" }})
	for name, url := range map[string]string{"https": srv.URL(), "admin": srv.AdminURL()} {
		t.Run(name, func(t *testing.T) {
			if name == "https" {
				allocateOverTLS(t, srv, "before the scan")
				defer allocateOverTLS(t, srv, "after the scan")
			}
			scanListener(t, strings.TrimPrefix(url, "https://"), srv.TLS().CAPath)
		})
	}
}

// scanListener scans one TLS listener and checks the findings.
func scanListener(t *testing.T, target, ca string) {
	r := tlsscan.Scan(t, target, ca)
	t.Logf("testssl summary:\n%s", r.Summary())
	for _, f := range r.AboveLow() {
		t.Errorf("testssl: %s %s: %s", f.Severity, f.ID, f.Finding)
	}
	curves := ""
	for _, line := range strings.Split(r.Text, "\n") {
		if strings.Contains(line, "Elliptic curves offered:") {
			curves = strings.Join(strings.Fields(strings.SplitN(line, ":", 2)[1]), " ")
		}
	}
	if curves != "prime256v1 secp384r1" {
		t.Errorf("elliptic curves offered: %q, want prime256v1 and secp384r1 only", curves)
	}
	for _, id := range []string{"TLS1", "TLS1_1", "SSLv3"} {
		if f, ok := r.Get(id); ok && !strings.Contains(f.Finding, "not offered") {
			t.Errorf("%s: %s", id, f.Finding)
		}
	}
}
