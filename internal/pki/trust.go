package pki

import (
	"fmt"
	"strings"
)

// TrustInstructions returns a few lines for the startup message: where the
// local CA certificate is, its SHA-256 fingerprint, and how to make Debian,
// Chromium and Firefox trust it. When the operator provided the server
// certificate it says so and gives that certificate's fingerprint instead.
func TrustInstructions(m *Material) string {
	var b strings.Builder
	if m.CACert == nil {
		b.WriteString("TLS: using the operator-provided server certificate.\n")
		fmt.Fprintf(&b, "  SHA-256 fingerprint: %s\n", m.Fingerprint)
		b.WriteString("  Clients must trust the CA that issued it; nothing was generated.\n")
		return b.String()
	}
	b.WriteString("TLS: server certificate issued by the local Conclave CA.\n")
	fmt.Fprintf(&b, "  CA certificate:      %s\n", m.CAPath)
	fmt.Fprintf(&b, "  CA name:             %s\n", m.CACert.Subject.CommonName)
	fmt.Fprintf(&b, "  SHA-256 fingerprint: %s\n", m.Fingerprint)
	b.WriteString("  Check the fingerprint, then make clients trust this CA:\n")
	fmt.Fprintf(&b, "    Debian/Ubuntu: cp %s /usr/local/share/ca-certificates/conclave.crt && update-ca-certificates\n", shellQuote(m.CAPath))
	b.WriteString("    Chromium:      Settings > Privacy and security > Security > Manage certificates > Authorities > Import\n")
	b.WriteString("    Firefox:       Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import\n")
	return b.String()
}

// shellQuote quotes p for a POSIX shell when it contains anything other than
// characters that are safe unquoted.
func shellQuote(p string) string {
	safe := true
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+:@%,=", c)) {
			safe = false
			break
		}
	}
	if safe && p != "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
