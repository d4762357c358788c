package policies

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
)

// TestRego runs every Rego test of the embedded policies (what the binary ships) through OPA's
// tester, one failing Go test line per failing Rego test, with its location.
func TestRego(t *testing.T) {
	res, err := loader.NewFileLoader().WithFS(FS).WithRegoVersion(ast.RegoV1).All([]string{"."})
	if err != nil {
		t.Fatalf("load policies: %v", err)
	}
	store, err := res.Store()
	if err != nil {
		t.Fatalf("policy data: %v", err)
	}
	ctx := context.Background()
	ch, err := tester.NewRunner().SetStore(store).CapturePrintOutput(true).SetModules(res.ParsedModules()).RunTests(ctx, nil)
	if err != nil {
		t.Fatalf("run Rego tests: %v", err)
	}
	n := 0
	for r := range ch {
		n++
		switch {
		case r.Error != nil:
			t.Errorf("%s: %s.%s: error: %v", r.Location, r.Package, r.Name, r.Error)
		case r.Fail:
			t.Errorf("%s: %s.%s: FAIL%s", r.Location, r.Package, r.Name, output(r.Output))
		}
	}
	// A loader or naming mistake must not turn into a green run of nothing.
	if n < 100 {
		t.Errorf("ran %d Rego tests, want at least 100", n)
	}
}

func output(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return "\n" + string(b)
}

// TestRegoFormatted is `opa fmt -l` for the Rego files: the source must be what the v1
// formatter prints.
func TestRegoFormatted(t *testing.T) {
	files, err := filepath.Glob("*.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("no .rego files (%v)", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.SourceWithOpts(f, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted: run `go tool opa fmt -w policies/`", f)
		}
	}
}

// TestContracts validates every bundled contract strictly, as `proxy check` does.
func TestContracts(t *testing.T) {
	cs, err := contract.LoadFS(FS, "contracts")
	if err != nil {
		t.Fatalf("bundled contracts:\n%v", err)
	}
	want := []string{"eventbrite", "hosting", "legal", "mailchimp", "sister", "stripe", "zendesk"}
	var got []string
	for id := range cs {
		got = append(got, id)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("bundled vendors: got %v, want %v", got, want)
	}
}

// TestEmbedded checks that FS holds every policy file of the directory, so the binary and
// `opa test policies/` see the same policy.
func TestEmbedded(t *testing.T) {
	var onDisk, embedded []string
	for _, pattern := range []string{"*.rego", "contracts/*"} {
		m, _ := filepath.Glob(pattern)
		onDisk = append(onDisk, m...)
	}
	err := fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded = append(embedded, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range onDisk {
		onDisk[i] = filepath.ToSlash(onDisk[i])
	}
	slices.Sort(onDisk)
	slices.Sort(embedded)
	if !slices.Equal(onDisk, embedded) {
		t.Errorf("embedded %v, on disk %v", embedded, onDisk)
	}
}

// TestPolicyReadsNoBody keeps decisions independent of payloads: the policy modules (tests
// aside) never refer to input.body, nor to input as a whole, so the engine neither parses bodies
// for them nor keys its decision cache on anything but the paths read.
func TestPolicyReadsNoBody(t *testing.T) {
	files, _ := filepath.Glob("*.rego")
	modules := map[string]*ast.Module{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.rego") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		modules[f], err = ast.ParseModuleWithOpts(f, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Compiled, as the engine analyses them: a bare `input` is a ref only after compilation.
	c := ast.NewCompiler()
	if c.Compile(modules); c.Failed() {
		t.Fatal(c.Errors)
	}
	for _, m := range c.Modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			loc := r[0].Location
			if len(r) == 1 {
				t.Errorf("%s:%d: refers to input as a whole", loc.File, loc.Row)
			} else if s, ok := r[1].Value.(ast.String); !ok || s == "body" {
				t.Errorf("%s:%d: refers to %v", loc.File, loc.Row, r)
			}
			return false
		})
	}
}

// BenchmarkDecision measures one uncached decision of the bundled policy (test modules left out)
// for a typical request: a card payment from billing to Stripe. The engine caches decisions;
// this is the cost of a cache miss, and what a policy change makes faster or slower.
func BenchmarkDecision(b *testing.B) {
	res, err := loader.NewFileLoader().WithFS(FS).WithRegoVersion(ast.RegoV1).All([]string{"."})
	if err != nil {
		b.Fatal(err)
	}
	modules := map[string]*ast.Module{}
	for name, m := range res.ParsedModules() {
		if !strings.HasSuffix(name, "_test.rego") {
			modules[name] = m
		}
	}
	c := ast.NewCompiler()
	if c.Compile(modules); c.Failed() {
		b.Fatal(c.Errors)
	}
	store, err := res.Store()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pq, err := rego.New(rego.Query("data.egress.decision"), rego.Compiler(c), rego.Store(store)).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	input := ast.MustParseTerm(`{
		"request": {"method": "POST", "scheme": "http", "host": "api.stripe.com", "port": 80,
		            "path": "/v1/payment_intents", "query": {}, "headers": {"content-type": "application/x-www-form-urlencoded"}},
		"purpose": "payment",
		"subject": {"id": "u-123", "gpc": false, "consents": [], "consents_error": ""},
		"legal_basis": "", "requester": "", "approver": "",
		"source": {"service": "billing"}
	}`).Value
	b.ReportAllocs()
	for b.Loop() {
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
		if err != nil || len(rs) != 1 {
			b.Fatalf("eval: %v %v", rs, err)
		}
	}
}

// TestBundledDecisionsAreCacheable keeps the bundled policy fast on real traffic: the engine can
// key its decision cache on route_match instead of the path (so a new resource id in a known route
// is not a new decision), and on the purposes and statuses of the subject's consents only (so a
// new subject with the same consent state is not either). A rule that reads input.request.path
// outside route_match, or consents as whole records, fails this test: see README.md, "Writing
// fast, cacheable Rego".
func TestBundledDecisionsAreCacheable(t *testing.T) {
	p, err := engine.Load(context.Background(), FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := p.CacheKey()
	for _, want := range []string{"on " + engine.RouteKeyRule + " instead of the path", "subject.consents[](purpose, status)"} {
		if !strings.Contains(key, want) {
			t.Errorf("cache key: %s\nwant it to contain %q", key, want)
		}
	}
	for _, never := range []string{"subject.id", "request.headers", "time", "evidence"} {
		if strings.Contains(key, never) {
			t.Errorf("cache key: %s\nholds %s, which the bundled policy must not read", key, never)
		}
	}
}
