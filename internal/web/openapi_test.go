package web

import (
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
