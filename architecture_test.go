package firetower_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestArchitectureNamesExist checks that every Go name ARCHITECTURE.md
// mentions exists in the repository's Go files: each `Name` or
// `Type.Member` in backticks, and each Type.Member in its text diagrams.
// Name is a top-level declaration or a package; Type.Member is a method,
// a struct field or an interface method of a type Type, or a top-level
// declaration of a package Type.
func TestArchitectureNamesExist(t *testing.T) {
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	decls := repoDecls(t, ".")
	names := architectureNames(string(doc))
	if len(names) < 30 {
		t.Fatalf("found only %d names in ARCHITECTURE.md: is the parsing broken? %q", len(names), names)
	}
	for _, n := range names {
		if !decls.has(n) {
			t.Errorf("ARCHITECTURE.md names %s, which is not declared in any Go file of the repository", n)
		}
	}
}

var (
	backticked = regexp.MustCompile("`([^`\n]+)`")
	goName     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)
	dottedName = regexp.MustCompile(`\b[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\b`)
)

// architectureNames returns the names doc mentions, once each.
func architectureNames(doc string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		n = strings.TrimSuffix(n, "()")
		if !goName.MatchString(n) || strings.HasSuffix(n, ".go") || strings.HasSuffix(n, ".md") || seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
	}
	inFence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			for _, m := range dottedName.FindAllString(line, -1) {
				add(m)
			}
			continue
		}
		for _, m := range backticked.FindAllStringSubmatch(line, -1) {
			add(m[1])
		}
	}
	return out
}

// decls are the names declared in a set of Go files.
type decls struct {
	pkgs    map[string]bool
	top     map[string]bool
	members map[string]map[string]bool // type or package -> member
}

func (d *decls) member(typ, name string) {
	if d.members[typ] == nil {
		d.members[typ] = map[string]bool{}
	}
	d.members[typ][name] = true
}

func (d *decls) has(name string) bool {
	typ, member, dotted := strings.Cut(name, ".")
	if !dotted {
		return d.top[name] || d.pkgs[name]
	}
	return d.members[typ][member]
}

// repoDecls parses every Go file under root (tests too; not testdata or
// hidden directories) and collects its declarations.
func repoDecls(t *testing.T, root string) *decls {
	t.Helper()
	d := &decls{pkgs: map[string]bool{}, top: map[string]bool{}, members: map[string]map[string]bool{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if n := e.Name(); path != root && (n == "testdata" || n == "node_modules" || strings.HasPrefix(n, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		pkg := f.Name.Name
		d.pkgs[pkg] = true
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.FuncDecl:
				if decl.Recv == nil {
					d.top[decl.Name.Name] = true
					d.member(pkg, decl.Name.Name)
				} else if typ := recvType(decl.Recv.List[0].Type); typ != "" {
					d.member(typ, decl.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range decl.Specs {
					switch spec := spec.(type) {
					case *ast.TypeSpec:
						d.top[spec.Name.Name] = true
						d.member(pkg, spec.Name.Name)
						typeMembers(d, spec.Name.Name, spec.Type)
					case *ast.ValueSpec:
						for _, n := range spec.Names {
							d.top[n.Name] = true
							d.member(pkg, n.Name)
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// typeMembers records the fields of a struct type and the methods of an
// interface type.
func typeMembers(d *decls, typ string, e ast.Expr) {
	var list *ast.FieldList
	switch e := e.(type) {
	case *ast.StructType:
		list = e.Fields
	case *ast.InterfaceType:
		list = e.Methods
	default:
		return
	}
	for _, f := range list.List {
		for _, n := range f.Names {
			d.member(typ, n.Name)
		}
	}
}

// recvType is the name of a method's receiver type.
func recvType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
