package web

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPICoverage: docs/openapi.yaml is a valid OpenAPI 3 document,
// every API route of the route table is in it with the same method, it
// describes no route the server lacks, and each management operation
// names the permission the route table checks (x-permission).
func TestOpenAPICoverage(t *testing.T) {
	doc, err := OpenAPIDocument()
	if err != nil {
		t.Fatalf("docs/openapi.yaml does not validate: %v", err)
	}
	documented := map[string]string{} // "METHOD /path" -> x-permission
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			p, _ := op.Extensions["x-permission"].(string)
			documented[method+" "+path] = p
		}
	}
	served := map[string]bool{}
	for _, rt := range (&Server{}).Routes() {
		if !rt.API() {
			continue
		}
		key := rt.Method + " " + rt.Path
		served[key] = true
		p, ok := documented[key]
		if !ok {
			t.Errorf("%s is served but not in docs/openapi.yaml", key)
			continue
		}
		if p != string(rt.Perm) {
			t.Errorf("%s needs permission %q, the document says %q", key, rt.Perm, p)
		}
		if rt.Manage != nil && rt.Perm == "" {
			t.Errorf("management route %s names no permission", key)
		}
	}
	var extra []string
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("docs/openapi.yaml describes routes the server lacks: %s", strings.Join(extra, ", "))
	}
	if len(served) < 40 {
		t.Errorf("only %d API routes", len(served))
	}
}

// TestAdminUIUsesDocumentedAPI: every API path the admin page's modules
// call is an operation of docs/openapi.yaml (issue 14: "the admin UI uses
// only this API"). Paths are read from the modules' string literals; a
// ${...} in a template is one path segment of any value.
func TestAdminUIUsesDocumentedAPI(t *testing.T) {
	doc, err := OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	var documented [][]string
	for path := range doc.Paths.Map() {
		documented = append(documented, strings.Split(path, "/"))
	}
	segmentOK := func(got, doc string) bool {
		return got == doc || got == "*" || strings.HasPrefix(doc, "{") && strings.HasSuffix(doc, "}")
	}
	files, _ := filepath.Glob("../../web/static/js/admin*.mjs")
	files = append(files, "../../web/static/js/api.mjs")
	lit := regexp.MustCompile("`(/api/[^`?]*)|['\"](/api/[^'\"?]*)")
	tmpl := regexp.MustCompile(`\$\{[^}]*\}`)
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".test.mjs") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(tmpl.ReplaceAllString(string(src), "*"), -1) {
			path := m[1] + m[2]
			seen++
			segs := strings.Split(path, "/")
			prefix := strings.HasSuffix(path, "/") // a path completed by concatenation
			if prefix {
				segs = segs[:len(segs)-1]
			}
			found := false
			for _, d := range documented {
				if len(d) < len(segs) || !prefix && len(d) != len(segs) {
					continue
				}
				ok := true
				for i, s := range segs {
					ok = ok && segmentOK(s, d[i])
				}
				found = found || ok
			}
			if !found {
				t.Errorf("%s calls %s, which docs/openapi.yaml does not describe", filepath.Base(f), m[0])
			}
		}
	}
	if seen < 30 {
		t.Fatalf("found only %d API paths in the admin modules", seen)
	}
}
