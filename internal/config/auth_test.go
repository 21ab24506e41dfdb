package config

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestAuthFlagsDocumented: every management-plane and sign-in flag, and
// its environment variable, is described in docs/admin.md.
func TestAuthFlagsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/admin.md")
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var c AuthConfig
	registerAuth(fs, &c)
	envRE := regexp.MustCompile(`\(env (CONCLAVE_[A-Z_]+)`)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(string(doc), "`--"+f.Name+"`") {
			t.Errorf("docs/admin.md does not describe --%s", f.Name)
		}
		m := envRE.FindStringSubmatch(f.Usage)
		if m == nil {
			t.Errorf("--%s names no environment variable", f.Name)
		} else if !strings.Contains(string(doc), m[1]) {
			t.Errorf("docs/admin.md does not name %s (--%s)", m[1], f.Name)
		}
	})
	if n < 20 {
		t.Fatalf("only %d flags", n)
	}
}
