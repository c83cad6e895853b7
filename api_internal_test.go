package firetower

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

const modulePath = "github.com/firetower-go/firetower"

// TestPublicAPIOwnTypes checks that the exported API of the root package
// names no transport or internal type, and that of transport no internal
// type: each can be used, and implemented, from outside the module.
func TestPublicAPIOwnTypes(t *testing.T) {
	for _, tc := range []struct {
		dir       string
		forbidden []string // import paths, or prefixes ending in "/"
	}{
		{".", []string{modulePath + "/transport", modulePath + "/internal/"}},
		{"transport", []string{modulePath + "/internal/"}},
	} {
		for _, leak := range exportedLeaks(t, tc.dir, tc.forbidden) {
			t.Errorf("%s: %s", tc.dir, leak)
		}
	}
}

// exportedLeaks parses the package in dir (without its tests) and returns
// every exported declaration whose type mentions a package in forbidden.
func exportedLeaks(t *testing.T, dir string, forbidden []string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var leaks []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]string{} // local import name -> path
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !isForbidden(path, forbidden) {
				continue
			}
			local := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				local = imp.Name.Name
			}
			bad[local] = path
		}
		if len(bad) == 0 {
			continue
		}
		check := func(what string, n ast.Node) {
			if n == nil || reflect.ValueOf(n).IsNil() {
				return
			}
			ast.Inspect(n, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && bad[id.Name] != "" {
						leaks = append(leaks, leakAt(fset, sel, what, id.Name+"."+sel.Sel.Name))
					}
				}
				return true
			})
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() || (d.Recv != nil && !exportedRecv(d.Recv)) {
					continue
				}
				check(d.Name.Name, d.Type)
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					switch sp := sp.(type) {
					case *ast.TypeSpec:
						if sp.Name.IsExported() {
							checkType(sp.Name.Name, sp.Type, check)
						}
					case *ast.ValueSpec:
						for _, n := range sp.Names {
							if n.IsExported() {
								check(n.Name, sp.Type)
								break
							}
						}
					}
				}
			}
		}
	}
	return leaks
}

// checkType checks the exported parts of a type: a struct's exported
// fields, an interface's methods, anything else whole.
func checkType(name string, typ ast.Expr, check func(string, ast.Node)) {
	switch tt := typ.(type) {
	case *ast.StructType:
		for _, f := range tt.Fields.List {
			if len(f.Names) == 0 { // embedded: exported if its type name is
				if id := typeName(f.Type); id != nil && id.IsExported() {
					check(name+"."+id.Name, f.Type)
				}
				continue
			}
			for _, n := range f.Names {
				if n.IsExported() {
					check(name+"."+n.Name, f.Type)
				}
			}
		}
	case *ast.InterfaceType:
		for _, m := range tt.Methods.List {
			check(name, m.Type)
		}
	default:
		check(name, typ)
	}
}

func typeName(e ast.Expr) *ast.Ident {
	switch e := e.(type) {
	case *ast.Ident:
		return e
	case *ast.StarExpr:
		return typeName(e.X)
	case *ast.SelectorExpr:
		return e.Sel
	}
	return nil
}

func exportedRecv(fl *ast.FieldList) bool {
	id := typeName(fl.List[0].Type)
	if ix, ok := fl.List[0].Type.(*ast.IndexExpr); ok {
		id = typeName(ix.X)
	}
	return id != nil && id.IsExported()
}

func isForbidden(path string, forbidden []string) bool {
	for _, f := range forbidden {
		if path == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(path, f)) {
			return true
		}
	}
	return false
}

func leakAt(fset *token.FileSet, n ast.Node, decl, ref string) string {
	return fset.Position(n.Pos()).String() + ": exported " + decl + " uses " + ref
}

// TestTransportStatsFields checks that TransportStats has every counter of
// transport.Stats, under the same name, and that transportStats copies
// each one.
func TestTransportStatsFields(t *testing.T) {
	var ts transport.Stats
	v := reflect.ValueOf(&ts).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Uint64:
			f.SetUint(uint64(i + 1))
		case reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Array:
			for j := range f.Len() {
				f.Index(j).SetUint(uint64(100*i + j))
			}
		case reflect.Struct: // Compression: counters one level down
			for j := range f.NumField() {
				switch sf := f.Field(j); sf.Kind() {
				case reflect.Uint64:
					sf.SetUint(uint64(1000*i + j + 1))
				case reflect.Int64:
					sf.SetInt(int64(1000*i + j + 1))
				default:
					t.Fatalf("transport.Stats.%s.%s: kind %s not covered by this test", v.Type().Field(i).Name, f.Type().Field(j).Name, sf.Kind())
				}
			}
		default:
			t.Fatalf("transport.Stats.%s: kind %s not covered by this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	got := reflect.ValueOf(transportStats(ts))
	if got.NumField() != v.NumField() {
		t.Errorf("TransportStats has %d fields, transport.Stats %d", got.NumField(), v.NumField())
	}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		g := got.FieldByName(name)
		if !g.IsValid() {
			t.Errorf("TransportStats has no field %s", name)
			continue
		}
		if g.Kind() == reflect.Array {
			for j := range g.Len() {
				if g.Index(j).Uint() != v.Field(i).Index(j).Uint() {
					t.Errorf("%s[%d] = %d, want %d", name, j, g.Index(j).Uint(), v.Field(i).Index(j).Uint())
				}
			}
			continue
		}
		if g.Kind() == reflect.Struct {
			w := v.Field(i)
			if g.NumField() != w.NumField() {
				t.Errorf("%s has %d fields, want %d", name, g.NumField(), w.NumField())
			}
			for j := range w.NumField() {
				sub := w.Type().Field(j).Name
				if gf := g.FieldByName(sub); !gf.IsValid() || gf.Interface() != w.Field(j).Interface() {
					t.Errorf("%s.%s not copied (got %v, want %v)", name, sub, gf, w.Field(j).Interface())
				}
			}
			continue
		}
		if g.Interface() != v.Field(i).Interface() {
			t.Errorf("%s = %v, want %v", name, g.Interface(), v.Field(i).Interface())
		}
	}
}

// TestPolicyMapping checks the one place where the root's slow-consumer
// policy and close code become the transport's.
func TestPolicyMapping(t *testing.T) {
	for p, want := range map[SlowConsumerPolicy]transport.SlowPolicy{SlowClose: transport.SlowClose, SlowDrop: transport.SlowDrop} {
		cfg := defaultConfig()
		cfg.slowPolicy = p
		tc := cfg.transportConfig(nil)
		if tc.SlowPolicy != want || tc.SlowCloseCode != CloseSlowConsumer {
			t.Errorf("policy %d: transport policy %d, close code %d; want %d, %d", p, tc.SlowPolicy, tc.SlowCloseCode, want, CloseSlowConsumer)
		}
	}
	if CloseSlowConsumer != 4000 { // PROTOCOL.md, section 7
		t.Errorf("CloseSlowConsumer = %d, want 4000", CloseSlowConsumer)
	}
}

// TestDeliveryFrameJSON checks that a delivery frame built with the
// protocol encoder has a header that matches its payload, for topics the
// JSON encoding escapes too, and that building one allocates nothing once
// the frame pool is warm.
func TestDeliveryFrameJSON(t *testing.T) {
	tw, err := New(WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"n":1,"s":"x"}`)
	for _, topic := range []string{"/chat/room", `odd "quoted" \ topic`, "tab\tand é 日本", "/x"} {
		subs := &subscribers{quoted: string(protocol.AppendJSONString(nil, topic))}
		f := tw.deliveryFrameJSON(subs, topic, data)
		r := bytes.NewReader(f.B)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("%q: header: %v", topic, err)
		}
		payload := f.B[len(f.B)-r.Len():]
		if h.OpCode != ws.OpText || !h.Fin || h.Masked || int(h.Length) != len(payload) {
			t.Errorf("%q: header %+v for a %d-byte payload", topic, h, len(payload))
		}
		if want := protocol.AppendDeliveryJSON(nil, topic, data); !bytes.Equal(payload, want) {
			t.Errorf("%q: payload %s, want %s", topic, payload, want)
		}
		var env struct {
			Type, Topic string
			Data        json.RawMessage
		}
		if err := json.Unmarshal(payload, &env); err != nil || env.Type != "publish" || env.Topic != topic || string(env.Data) != string(data) {
			t.Errorf("%q: envelope %s decodes to %+v (%v)", topic, payload, env, err)
		}
		f.Release()
	}
	subs := &subscribers{quoted: `"/chat/room"`}
	if n := testing.AllocsPerRun(100, func() {
		tw.deliveryFrameJSON(subs, "/chat/room", data).Release()
	}); n != 0 && !raceEnabled {
		t.Errorf("building a delivery frame: %v allocations, want 0", n)
	}
}
