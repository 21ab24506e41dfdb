package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestArchitectureMatchesTheCode keeps architecture.md true: every package
// under internal/ has its floor in the table, and every package, Go or
// JavaScript file the document names exists.
func TestArchitectureMatchesTheCode(t *testing.T) {
	raw, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	table := doc[strings.Index(doc, "## The floors"):strings.Index(doc, "## The seam")]
	ticked := regexp.MustCompile("`([a-z0-9_/.-]+)`")
	// The packages column of the floors' table.
	var packages strings.Builder
	for _, line := range strings.Split(table, "\n") {
		if cols := strings.Split(line, "|"); len(cols) > 3 {
			packages.WriteString(cols[2])
		}
	}

	// Every package has a floor (testutil's are described as a group).
	err = filepath.WalkDir("../internal", func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(filepath.ToSlash(path), "../internal/")
		if rel == "../internal" || strings.HasPrefix(rel, "testutil") || strings.Contains(rel, "testdata") {
			return nil
		}
		if !hasGo(path) {
			return nil
		}
		top := strings.SplitN(rel, "/", 2)[0]
		if !strings.Contains(packages.String(), "`"+rel+"`") && !strings.Contains(packages.String(), "`"+top+"`") {
			t.Errorf("internal/%s has no floor in docs/architecture.md: add it to the floors' table", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The packages and files the document names exist.
	for _, m := range ticked.FindAllStringSubmatch(packages.String(), -1) {
		if !exists("../internal/"+m[1]) && !exists("../"+m[1]) {
			t.Errorf("architecture.md names package %s, which is not in the repository", m[1])
		}
	}
	helpers := doc[strings.Index(doc, "`internal/testutil` holds"):strings.Index(doc, "## The seam")]
	for _, m := range ticked.FindAllStringSubmatch(helpers, -1) {
		if !strings.Contains(m[1], "/") && !exists("../internal/testutil/"+m[1]) {
			t.Errorf("architecture.md names test helper %s, which is not in internal/testutil", m[1])
		}
	}
	for _, m := range ticked.FindAllStringSubmatch(doc, -1) {
		name := m[1]
		if strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".mjs") || strings.HasSuffix(name, ".json") {
			if !found(t, name) {
				t.Errorf("architecture.md names %s, which is not in the repository", name)
			}
		} else if strings.HasPrefix(name, "internal/") && !exists("../"+name) {
			t.Errorf("architecture.md names %s, which is not in the repository", name)
		}
	}
}

func hasGo(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// found reports whether a file of this name (or path suffix) is in the
// repository.
func found(t *testing.T, name string) bool {
	t.Helper()
	ok := false
	filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil || ok {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(filepath.ToSlash(path), "/"+name) {
			ok = true
		}
		return nil
	})
	return ok
}
