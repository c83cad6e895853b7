package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestContributingIsTrue keeps CONTRIBUTING.md in step with the tree:
// every directory it cds into holds a go.mod, every script it runs exists,
// and its table of fuzz targets lists exactly the Fuzz functions there are,
// each in the package it names.
func TestContributingIsTrue(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "CONTRIBUTING.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)

	for _, m := range regexp.MustCompile(`(?m)^cd (\S+) `).FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.Join(root, m[1], "go.mod")); err != nil {
			t.Errorf("CONTRIBUTING.md runs tests in %s, which is not a module: %v", m[1], err)
		}
	}
	for _, script := range []string{".ci/run", ".ci/install-chromium.sh", "internal/autobahn/run.sh", "webclient/firetower.test.mjs"} {
		if !strings.Contains(doc, strings.TrimSuffix(script, "/firetower.test.mjs")) {
			t.Errorf("CONTRIBUTING.md does not mention %s", script)
		}
		if _, err := os.Stat(filepath.Join(root, script)); err != nil {
			t.Errorf("CONTRIBUTING.md: %v", err)
		}
	}

	// The fuzz targets: | `package` | `FuzzA`, `FuzzB` (...) |
	listed := map[string]string{} // target -> package dir
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| (.*Fuzz.*) \\|$")
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		for _, f := range regexp.MustCompile("`(Fuzz\\w+)`").FindAllStringSubmatch(m[2], -1) {
			listed[f[1]] = m[1]
		}
	}
	if len(listed) == 0 {
		t.Fatal("CONTRIBUTING.md has no table of fuzz targets")
	}
	found := map[string]string{}
	decl := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			found[m[1]] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, pkg := range found {
		if got, ok := listed[name]; !ok {
			t.Errorf("fuzz target %s (in %s) is missing from CONTRIBUTING.md", name, pkg)
		} else if got != pkg {
			t.Errorf("CONTRIBUTING.md puts %s in %s; it is in %s", name, got, pkg)
		}
	}
	for name := range listed {
		if _, ok := found[name]; !ok {
			t.Errorf("CONTRIBUTING.md lists fuzz target %s, which does not exist", name)
		}
	}
	if t.Failed() {
		names := make([]string, 0, len(found))
		for n := range found {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Logf("fuzz targets in the tree: %v", names)
	}
}
