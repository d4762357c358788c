package filters

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
)

// The oracle for Mask.JSON is OPA's own json.filter: for wildcard-free masks
// both must give the same value. These helpers evaluate it.

var opaFilterQuery = sync.OnceValues(func() (rego.PreparedEvalQuery, error) {
	return rego.New(rego.Query("x := json.filter(input.doc, input.paths)")).PrepareForEval(context.Background())
})

// opaFilter evaluates json.filter(doc, paths), passing each path as an
// array of segments: the string form cannot address an empty key. A
// top-level array is wrapped in an object, since json.filter only takes
// objects.
func opaFilter(t testing.TB, doc ast.Value, paths [][]string) ast.Value {
	t.Helper()
	pq, err := opaFilterQuery()
	if err != nil {
		t.Fatal(err)
	}
	_, isArr := doc.(*ast.Array)
	terms := make([]*ast.Term, len(paths))
	for i, p := range paths {
		var segs []*ast.Term
		if isArr {
			segs = append(segs, ast.StringTerm("r"))
		}
		for _, s := range p {
			segs = append(segs, ast.StringTerm(s))
		}
		terms[i] = ast.ArrayTerm(segs...)
	}
	if isArr {
		doc = ast.NewObject(ast.Item(ast.StringTerm("r"), ast.NewTerm(doc)))
	}
	input := ast.NewObject(
		ast.Item(ast.StringTerm("doc"), ast.NewTerm(doc)),
		ast.Item(ast.StringTerm("paths"), ast.ArrayTerm(terms...)),
	)
	rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(input))
	if err != nil {
		t.Fatalf("json.filter: %v", err)
	}
	if len(rs) != 1 {
		t.Fatalf("json.filter: %d results", len(rs))
	}
	v, err := ast.InterfaceToValue(rs[0].Bindings["x"])
	if err != nil {
		t.Fatal(err)
	}
	if isArr {
		return v.(ast.Object).Get(ast.StringTerm("r")).Value
	}
	return v
}

// astOf parses JSON the way the engine feeds bodies to OPA.
func astOf(t testing.TB, doc []byte) ast.Value {
	t.Helper()
	var x any
	if err := util.UnmarshalJSON(doc, &x); err != nil {
		t.Fatalf("parse %q: %v", doc, err)
	}
	v, err := ast.InterfaceToValue(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// expandWildcards turns wildcard paths into the concrete paths they stand
// for in doc, so that json.filter can judge masks with "*" too.
func expandWildcards(doc any, paths []string, limit int) ([][]string, bool) {
	var out [][]string
	for _, p := range paths {
		segs, err := parsePath(p)
		if err != nil {
			return nil, false
		}
		var walk func(v any, i int, prefix []string) bool
		walk = func(v any, i int, prefix []string) bool {
			if i == len(segs) {
				out = append(out, prefix)
				return len(out) <= limit
			}
			next := func(seg string) []string {
				return append(prefix[:len(prefix):len(prefix)], seg)
			}
			if segs[i] != "*" {
				var child any
				switch x := v.(type) {
				case map[string]any:
					child = x[segs[i]]
				case []any:
					if n, err := strconv.Atoi(segs[i]); err == nil && strconv.Itoa(n) == segs[i] && n >= 0 && n < len(x) {
						child = x[n]
					}
				}
				return walk(child, i+1, next(segs[i]))
			}
			switch x := v.(type) {
			case map[string]any:
				keys := make([]string, 0, len(x))
				for k := range x {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					if !walk(x[k], i+1, next(k)) {
						return false
					}
				}
			case []any:
				for n, e := range x {
					if !walk(e, i+1, next(strconv.Itoa(n))) {
						return false
					}
				}
			}
			return true
		}
		if !walk(doc, 0, nil) {
			return nil, false
		}
	}
	return out, true
}

// checkAgainstOPA compares Mask.JSON with json.filter on one document. The
// mask must have no transforms and cards must be allowed.
func checkAgainstOPA(t testing.TB, doc []byte, paths []string, got []byte) {
	t.Helper()
	var generic any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&generic); err != nil {
		t.Fatalf("decode input: %v", err)
	}
	concrete, ok := expandWildcards(generic, paths, 2000)
	if !ok {
		return
	}
	want := opaFilter(t, astOf(t, doc), concrete)
	gotV := astOf(t, got)
	if ast.Compare(want, gotV) != 0 {
		t.Fatalf("mismatch with json.filter\ndoc:   %s\npaths: %q (expanded %q)\ngot:   %s\nwant:  %v", doc, paths, concrete, got, want)
	}
}

// TestOracleOPASuite runs the json.filter cases of OPA's own test suite.
func TestOracleOPASuite(t *testing.T) {
	info, ok := debug.ReadBuildInfo()
	dir := ""
	if ok {
		for _, d := range info.Deps {
			if d.Path == "github.com/open-policy-agent/opa" {
				dir = filepath.Join(gomodcache(t), "github.com/open-policy-agent/opa@"+d.Version, "v1/test/cases/testdata/v1/jsonfilter")
			}
		}
	}
	if dir == "" {
		dir = filepath.Join(gomodcache(t), "github.com/open-policy-agent/opa@v1.22.3/v1/test/cases/testdata/v1/jsonfilter")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Skipf("no OPA test cases in %s", dir)
	}
	n := 0
	for _, f := range files {
		bs, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var suite struct {
			Cases []struct {
				Note       string           `json:"note"`
				Modules    []string         `json:"modules"`
				WantResult []map[string]any `json:"want_result"`
			} `json:"cases"`
		}
		if err := util.Unmarshal(bs, &suite); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range suite.Cases {
			doc, paths, ok := extractFilterCall(t, c.Modules)
			if !ok || len(c.WantResult) != 1 {
				continue
			}
			n++
			t.Run(c.Note, func(t *testing.T) {
				m, err := Compile(paths, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := m.JSON(nil, doc, &Options{Cards: CardsAllow})
				if err != nil {
					t.Fatal(err)
				}
				want, err := ast.InterfaceToValue(c.WantResult[0]["x"])
				if err != nil {
					t.Fatal(err)
				}
				if ast.Compare(want, astOf(t, got)) != 0 {
					t.Fatalf("got %s, suite wants %v", got, want)
				}
				checkAgainstOPA(t, doc, paths, got)
			})
		}
	}
	if n == 0 {
		t.Fatal("no json.filter cases extracted")
	}
}

func gomodcache(t *testing.T) string {
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		return string(bytes.TrimSpace(out))
	}
	if d := os.Getenv("GOMODCACHE"); d != "" {
		return d
	}
	gp := os.Getenv("GOPATH")
	if gp == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skip("no GOMODCACHE")
		}
		gp = filepath.Join(home, "go")
	}
	return filepath.Join(strings.Split(gp, string(os.PathListSeparator))[0], "pkg", "mod")
}

// extractFilterCall finds json.filter(<doc>, <paths>, _) in the modules and
// returns its literal arguments, path arrays joined into string paths.
func extractFilterCall(t *testing.T, modules []string) ([]byte, []string, bool) {
	for _, src := range modules {
		mod, err := ast.ParseModule("case.rego", src)
		if err != nil {
			continue
		}
		var doc []byte
		var paths []string
		found := false
		ast.WalkExprs(mod, func(e *ast.Expr) bool {
			terms, ok := e.Terms.([]*ast.Term)
			if !ok || len(terms) < 3 || terms[0].String() != "json.filter" {
				return false
			}
			v, err := ast.JSON(terms[1].Value)
			if err != nil {
				return false
			}
			if doc, err = json.Marshal(v); err != nil {
				return false
			}
			var list []*ast.Term
			switch p := terms[2].Value.(type) {
			case ast.Set:
				list = p.Slice()
			case *ast.Array:
				for i := 0; i < p.Len(); i++ {
					list = append(list, p.Elem(i))
				}
			default:
				return false
			}
			for _, pt := range list {
				switch pv := pt.Value.(type) {
				case ast.String:
					paths = append(paths, string(pv))
				case *ast.Array:
					var b []byte
					for i := 0; i < pv.Len(); i++ {
						s, ok := pv.Elem(i).Value.(ast.String)
						if !ok {
							return false
						}
						if i > 0 {
							b = append(b, '/')
						}
						b = appendSegment(b, string(s))
					}
					paths = append(paths, string(b))
				default:
					return false
				}
			}
			found = true
			return true
		})
		if found {
			return doc, paths, true
		}
	}
	return nil, nil, false
}

// TestOracleTable adds the cases that json.filter's suite does not cover.
func TestOracleTable(t *testing.T) {
	cases := []struct {
		doc   string
		paths []string
	}{
		{`{"a":5,"b":{"c":"x"}}`, []string{"a/x", "b/c/d"}},                     // scalars on the way are kept
		{`{"a":{"x":1},"b":[]}`, []string{"a/b", "b/0"}},                        // empty containers stay
		{`{"a":[1,2,3,4]}`, []string{"a/3", "a/1"}},                             // compaction
		{`{"a":[1,2,3]}`, []string{"a/01", "a/-1", "a/3"}},                      // not indices
		{`{"a":{"01":1,"1":2}}`, []string{"a/01"}},                              // numeric object keys
		{`{"a/b":{"~c":1,"d":2},"e":3}`, []string{"a~1b/~0c"}},                  // escapes
		{`{"a":{"b":1,"c":2}}`, []string{"/a/b", "//a/c"}},                      // leading slashes
		{`{"a":{"b":{"c":1,"d":2}}}`, []string{"a/b/c", "a"}},                   // shorter path wins
		{`{"a\u002fb":1,"\u00e9":2,"c":3}`, []string{"a~1b", "é"}},              // keys compared unescaped
		{`{"items":[{"sku":1,"n":2},{"n":3}],"x":[]}`, []string{"items/*/sku"}}, // wildcard, expanded
		{`{"items":[],"x":{}}`, []string{"items/*/sku", "x/*"}},                 // wildcard over nothing
		{`{"a":{"x":5,"y":{"z":1}}}`, []string{"a/*/b"}},                        // wildcard then scalar
		{`{"a":{"x":{"b":{}}}}`, []string{"a/*/b/*"}},                           // nothing to expand deep down
		{`{"a":{"b":{"c":1,"d":2},"e":{"c":3}}}`, []string{"a/*/c", "a/b/d"}},   // literal and wildcard merged
		{`[{"email":"a","n":1},{"email":"b"},3]`, []string{"*/email"}},          // top-level array
		{`{"a":{"x":{}}}`, []string{"a/*/*", "a/x/y/z"}},                        // literal path survives
		{`{"a":{}}`, []string{"a/*/b", "a/x/*"}},                                // neither expands
	}
	for _, c := range cases {
		t.Run(c.doc, func(t *testing.T) {
			m, err := Compile(c.paths, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := m.JSON(nil, []byte(c.doc), &Options{Cards: CardsAllow})
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstOPA(t, []byte(c.doc), c.paths, got)
		})
	}
}
