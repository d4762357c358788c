package engine_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/inputspace"
	"github.com/pare-dev/pare/policies"
)

// diffCases is how many cases of the input space the differential test
// takes: a quick sample by default; PARE_DIFF_CASES=N for N, =all for the
// whole space (see DEVELOPERS.md: the long run).
func diffCases(t *testing.T, sp *inputspace.Space, quick int) []int {
	switch v := os.Getenv("PARE_DIFF_CASES"); v {
	case "":
		if testing.Short() {
			quick /= 4
		}
		return sp.Sample(quick)
	case "all":
		return sp.Sample(sp.Len())
	default:
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("PARE_DIFF_CASES=%q: want a positive number or all", v)
		}
		return sp.Sample(n)
	}
}

// plain evaluates data.egress.decision of the policies in fsys with OPA's
// rego package and nothing else: no precomputed rules, no cache, no
// derived keys. The documented input goes in as JSON. It is the reference
// the engine's fast path must agree with.
type plain struct {
	pq rego.PreparedEvalQuery
}

func newPlain(t testing.TB, fsys fs.FS) *plain {
	t.Helper()
	res, err := loader.NewFileLoader().WithFS(fsys).WithRegoVersion(ast.RegoV1).Filtered([]string{"."},
		func(_ string, info fs.FileInfo, _ int) bool {
			return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
		})
	if err != nil {
		t.Fatal(err)
	}
	store, err := res.StoreWithOpts(inmem.OptReturnASTValuesOnRead(true))
	if err != nil {
		t.Fatal(err)
	}
	opts := []func(*rego.Rego){rego.Query(engine.Entrypoint), rego.Store(store)}
	for _, m := range res.ParsedModules() {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &plain{pq: pq}
}

func (p *plain) decide(t testing.TB, in *engine.Input) map[string]any {
	t.Helper()
	b, err := in.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := util.UnmarshalJSON(b, &v); err != nil {
		t.Fatal(err)
	}
	rs, err := p.pq.Eval(context.Background(), rego.EvalInput(v))
	if err != nil {
		t.Fatalf("plain evaluation: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil
	}
	m, _ := rs[0].Expressions[0].Value.(map[string]any)
	return m
}

// differ says how an engine decision differs from the plain one ("" when
// they agree on every key the policy returned).
func differ(d *engine.Decision, want map[string]any) string {
	if want == nil {
		if d.Allow || d.Code != engine.CodeDenied {
			return fmt.Sprintf("plain: undefined; engine: allow=%v code=%s", d.Allow, d.Code)
		}
		return ""
	}
	strs := func(x any) []string {
		var out []string
		for _, e := range x.([]any) {
			out = append(out, e.(string))
		}
		return out
	}
	transforms := map[string]string{}
	for k, v := range want["transforms"].(map[string]any) {
		transforms[k] = v.(string)
	}
	port, _ := strconv.Atoi(fmt.Sprint(want["port"]))
	got := map[string]any{
		"allow": d.Allow, "vendor": d.Vendor, "reason": d.Reason, "code": string(d.Code), "route": d.Route,
		"fields": d.Fields, "transforms": d.Transforms, "headers": d.Headers, "query": d.Query,
		"body": string(d.Body), "cards": d.Cards, "cards_code": string(d.CardsCode), "tls": d.TLS, "port": d.Port, "dry_run": d.DryRun,
	}
	exp := map[string]any{
		"allow": want["allow"], "vendor": want["vendor"], "reason": want["reason"], "code": want["code"], "route": want["route"],
		"fields": strs(want["fields"]), "transforms": transforms, "headers": strs(want["headers"]), "query": strs(want["query"]),
		"body": want["body"], "cards": want["cards"], "cards_code": want["cards_code"], "tls": want["tls"], "port": port, "dry_run": want["dry_run"],
	}
	var out []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range exp {
			if !yield(k) {
				return
			}
		}
	}) {
		g, w := got[k], exp[k]
		if gs, ok := g.([]string); ok && len(gs) == 0 {
			g = []string(nil)
		}
		if ws, ok := w.([]string); ok && len(ws) == 0 {
			w = []string(nil)
		}
		if gm, ok := g.(map[string]string); ok && len(gm) == 0 {
			g = map[string]string{}
		}
		if !reflect.DeepEqual(g, w) {
			out = append(out, fmt.Sprintf("%s: engine %#v, plain %#v", k, g, w))
		}
	}
	return strings.Join(out, "; ")
}

// runDifferential decides every sampled case of the input space with the
// engine (cache on, in the order given, so later cases hit what earlier
// ones cached) and with plain evaluation, and fails on the first
// differences. Each case is sent as drawn, again (its exact key is cached),
// rerolled (another resource id, subject, consent times and evidence,
// request id: its route key is cached), and followed by its neighbours
// (one dimension changed each: a key that missed it would answer them with
// the cached decision).
func runDifferential(t *testing.T, fsys fs.FS, quick int) (sampled, decisions int, stats engine.CacheStats) {
	ctx := context.Background()
	p, err := engine.Load(ctx, fsys, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A generous timeout: the machine may be shared; a timeout here would
	// be a refusal the plain evaluation does not make.
	e, err := engine.New(engine.Options{HMACKey: []byte("k"), EvalTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ref := newPlain(t, fsys)
	sp := inputspace.New(p.Contracts, inputspace.Options{Seed: 12})
	failures := 0
	for _, i := range diffCases(t, sp, quick) {
		sampled++
		c := sp.Case(i)
		var want map[string]any
		for k, variant := range append([]inputspace.Case{c, c, sp.Reroll(c, 1)}, sp.Neighbours(c)...) {
			in := variant.Input
			d, err := e.Decide(ctx, p, &in, nil)
			if err != nil {
				t.Fatalf("case %d (%+v): engine error: %v", i, c.Dims, err)
			}
			decisions++
			if k != 1 { // variant 1 is variant 0 again
				want = ref.decide(t, &in)
			}
			if diff := differ(d, want); diff != "" {
				failures++
				t.Errorf("case %d variant %d %+v\ninput %+v\n%s", i, k, c.Dims, in, diff)
				if failures >= 5 {
					t.Fatal("too many differences")
				}
			}
		}
	}
	return sampled, decisions, p.CacheStats()
}

// TestDifferential: the engine's decisions — precomputed input-independent
// rules, decisions cached under exact and route keys, inputs built with only
// what the policy reads — equal plain OPA evaluation of the same Rego, over
// a sample of the generated input space of the bundled policy. The whole
// space (several hundred thousand requests, minutes):
//
//	PARE_DIFF_CASES=all go test -run TestDifferential -timeout 2h ./internal/engine/
func TestDifferential(t *testing.T) {
	sampled, decisions, st := runDifferential(t, policies.FS, 400)
	t.Logf("%d cases, %d decisions: %+v", sampled, decisions, st)
	// Every case is sent twice and rerolled once: the fast path must have
	// answered those, or the test proved little.
	if st.ExactHits < uint64(sampled) || st.RouteHits < uint64(sampled)/3 {
		t.Errorf("%d cases, cache %+v: the fast path was barely exercised", sampled, st)
	}
}

// TestDifferentialPathReadElsewhere: a policy that reads the path outside
// route_match (a refusal of admin paths added in a file of its own) loses
// the route key — and its decisions still equal plain evaluation, the new
// refusal included.
func TestDifferentialPathReadElsewhere(t *testing.T) {
	fsys := withFile(t, "admin.rego", `package egress

deny contains {"rank": 45, "code": "route_not_allowed", "reason": "admin paths are refused"} if {
	contains(path, "/a")
}
`)
	p, err := engine.Load(context.Background(), fsys, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.CacheKey(), "request path") || strings.Contains(p.CacheKey(), "instead of") {
		t.Fatalf("cache key: %s; want the path, since admin.rego reads it", p.CacheKey())
	}
	if !strings.Contains(p.CacheKey(), "admin.rego:3") {
		t.Errorf("cache key: %s; want the rule that reads the path named", p.CacheKey())
	}
	runDifferential(t, fsys, 150)
}

// withFile is the bundled policies plus one more file.
func withFile(t *testing.T, name, src string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m[name] = &fstest.MapFile{Data: []byte(src)}
	return m
}

// TestDecideConcurrently decides the same cases from several goroutines at
// once, sharing one cache (run with -race): every decision equals the one
// made alone, whatever the interleaving of fills, generation changes and
// hits.
func TestDecideConcurrently(t *testing.T) {
	ctx := context.Background()
	p, err := engine.Load(ctx, policies.FS, engine.LoadOptions{CacheBytes: 64 << 10}) // small: generations turn over
	if err != nil {
		t.Fatal(err)
	}
	alone, err := engine.Load(ctx, policies.FS, engine.LoadOptions{CacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := engine.New(engine.Options{HMACKey: []byte("k"), EvalTimeout: time.Minute})
	sp := inputspace.New(p.Contracts, inputspace.Options{Seed: 5})
	idx := sp.Sample(300)
	// Each goroutine sends its own reroll of every case (another resource
	// id and subject): decided alone first, as the reference.
	cases := make([][]inputspace.Case, 4)
	want := make([][]*engine.Decision, 4)
	for g := range cases {
		for _, i := range idx {
			c := sp.Reroll(sp.Case(i), uint64(g))
			d, err := e.Decide(ctx, alone, &c.Input, nil)
			if err != nil {
				t.Fatal(err)
			}
			cases[g], want[g] = append(cases[g], c), append(want[g], d)
		}
	}
	errs := make(chan string, 4)
	for g := range 4 {
		go func() {
			for round := range 3 {
				for k := range idx {
					k := (k*(g+1) + round) % len(idx)
					c, w := cases[g][k], want[g][k]
					d, err := e.Decide(ctx, p, &c.Input, nil)
					if err != nil || d.Allow != w.Allow || d.Code != w.Code || d.Reason != w.Reason || d.Route != w.Route {
						errs <- fmt.Sprintf("case %d: %+v %v, want %+v", c.Index, d, err, w)
						return
					}
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if msg := <-errs; msg != "" {
			t.Error(msg)
		}
	}
	if st := p.CacheStats(); st.Bytes > 64<<10 || st.ExactHits+st.RouteHits == 0 {
		t.Errorf("cache %+v: over its budget, or never hit", st)
	}
}
