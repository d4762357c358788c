package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/pare-dev/pare/internal/contract"
)

// Entrypoint is the rule every policy must define.
const Entrypoint = "data.egress.decision"

// Policy is one compiled, immutable version of a policies directory. A
// reload builds a new Policy beside the old one; requests keep the Policy
// they started with.
type Policy struct {
	Revision  string              // hex SHA-256 over every loaded file's name and content
	Files     []string            // loaded files, relative to the policies directory
	Vendors   map[string][]string // vendor id -> hosts, from the contracts
	Contracts map[string]*contract.Contract
	Purposes  map[string]bool // every purpose some contract serves: bounded metric labels
	LoadedAt  time.Time

	ev            *evaluator
	decisionQuery *query
	routeQuery    *query // RouteKeyRule, when the path is read only through it
	refs          inputRefs
	plan          keyPlan
	routePlan     keyPlan // what routeQuery reads
	keyInfo       string
	cacheable     bool
	cache         *decisionCache
	masks         *maskCache

	// What WithData needs to bind the compiled policy to other engine data.
	compiler *ast.Compiler
	docs     map[string]any // the policy's data documents, as loaded; never modified
	static   []staticQuery
	nondet   bool
	// nondetBuiltins names the non-deterministic builtins it calls, sorted.
	nondetBuiltins []string
	cacheBytes     int64
	data           map[string]any // data.pare

	exactHits, routeHits, misses atomic.Uint64
}

// CacheStats are a policy's decision cache counters since it was loaded.
type CacheStats struct {
	ExactHits uint64 // the same request (by what the policy reads) was decided before
	RouteHits uint64 // another resource id of a route, the same everything else
	Misses    uint64 // evaluated in full
	Bytes     int64  // the cache's accounted size
	Entries   int
}

// CacheStats returns the decision cache's counters (zero without a cache).
func (p *Policy) CacheStats() CacheStats {
	s := CacheStats{ExactHits: p.exactHits.Load(), RouteHits: p.routeHits.Load(), Misses: p.misses.Load()}
	if p.cache != nil {
		s.Bytes, s.Entries = p.cache.bytes(), p.cache.len()
	}
	return s
}

// CacheKey describes what the decision cache keys on, for `proxy check` and
// /debug/policy: whether a request's path is replaced by RouteKeyRule's
// value, or why not.
func (p *Policy) CacheKey() string { return p.keyInfo }

// Reads lists the parts of the input the policy's decision reads (those its
// decision cache keys on, plus "body" and "input" for a policy that reads
// the body or the input as a whole), and NondeterministicRead(name) for each
// non-deterministic builtin it calls (the clock, randomness, http.send,
// io.jwt.decode_verify, which checks expiry against the clock), for `proxy
// diff`: a new policy that reads what the old one did not may decide on
// what the diff's input space never varies. Builtins are named one by one
// because the bundled legal rule verifies tokens: a single "calls the
// clock" entry would be in every policy and flag nothing new.
func (p *Policy) Reads() []string {
	out := p.plan.paths()
	if p.refs.body {
		out = append(out, "body")
	}
	if p.refs.all {
		out = append(out, "input")
	}
	for _, b := range p.nondetBuiltins {
		out = append(out, NondeterministicRead(b))
	}
	return out
}

// NondeterministicRead is Policy.Reads's entry for a policy that calls the
// non-deterministic builtin name.
func NondeterministicRead(name string) string { return "non-deterministic builtin " + name }

// NeedsBody reports whether the policy refers to input.body; only then does
// a front end parse the body before deciding.
func (p *Policy) NeedsBody() bool { return p.refs.body }

// NeedsConsents reports whether the policy reads input.subject.consents, so
// a front end only asks the consent source when the answer can matter.
func (p *Policy) NeedsConsents() bool { return p.refs.has("subject", "consents") }

// policyFile says which files of a policies directory are policy: Rego
// modules (tests excluded — they belong to `proxy check`, not to the data
// plane) and YAML/JSON data. Everything else (README, Go files) is ignored.
func policyFile(name string, withTests bool) bool {
	base := path.Base(name)
	if strings.HasPrefix(base, ".") {
		return false
	}
	switch path.Ext(base) {
	case ".rego":
		return withTests || !strings.HasSuffix(base, "_test.rego")
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// LoadOptions tune Load.
type LoadOptions struct {
	// WithTests also compiles *_test.rego modules (proxy check).
	WithTests bool
	// CacheBytes bounds the decision cache (bytes, keys and decisions); 0
	// means DefaultCacheBytes, negative disables the cache.
	CacheBytes int64
	// Data is the document data.pare: what the engine, not the policy
	// author, gives the policy (the identity provider's keys for the legal
	// rule, say, as data.pare.legal). No policy file may define anything
	// under data.pare. It is not part of the revision (it is no policy),
	// nor of the decision cache's key: a Policy is bound to one Data, and
	// other Data is another Policy (WithData) with a cache of its own.
	Data map[string]any
}

// loaded is what a policies directory holds, before compilation.
type loaded struct {
	res      *loader.Result
	files    []string
	revision string
}

func loadFiles(fsys fs.FS, withTests bool) (*loaded, error) {
	var files []string
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return fs.SkipDir
			}
			return nil
		}
		if !policyFile(name, withTests) {
			return nil
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		files = append(files, name)
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("read policies: no .rego or data files found")
	}
	skip := func(name string, info fs.FileInfo, depth int) bool {
		if info.IsDir() {
			return depth > 0 && (strings.HasPrefix(info.Name(), ".") || info.Name() == "testdata")
		}
		return !policyFile(name, withTests)
	}
	res, err := loader.NewFileLoader().WithFS(fsys).WithRegoVersion(ast.RegoV1).Filtered([]string{"."}, skip)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	return &loaded{res: res, files: files, revision: hex.EncodeToString(h.Sum(nil))}, nil
}

// Load compiles the policies in fsys (rooted at the policies directory) and
// prepares the entrypoint. Errors carry file:line.
func Load(ctx context.Context, fsys fs.FS, opt LoadOptions) (*Policy, error) {
	l, err := loadFiles(fsys, opt.WithTests)
	if err != nil {
		return nil, err
	}
	res := l.res
	contracts, err := contract.LoadFS(fsys, "contracts")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := checkReserved(fsys, l); err != nil {
		return nil, err
	}
	data, err := normalizeData(opt.Data)
	if err != nil {
		return nil, err
	}

	compiler := ast.NewCompiler().WithEnablePrintStatements(false)
	compiler.Compile(res.ParsedModules())
	if compiler.Failed() {
		return nil, fmt.Errorf("compile policies: %w", compiler.Errors)
	}
	if len(compiler.GetRulesForVirtualDocument(ast.MustParseRef(Entrypoint))) == 0 {
		return nil, fmt.Errorf("compile policies: no rule defines %s", Entrypoint)
	}
	entry := ast.MustParseRef(Entrypoint)
	an := analyze(compiler, entry)
	static, err := compileStatic(compiler, an.static)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", Entrypoint, err)
	}
	decisionQuery, err := compileQuery(compiler, entry)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", Entrypoint, err)
	}
	p := &Policy{
		Revision:       l.revision,
		Files:          l.files,
		Vendors:        map[string][]string{},
		Purposes:       map[string]bool{},
		Contracts:      contracts,
		LoadedAt:       time.Now(),
		decisionQuery:  decisionQuery,
		refs:           an.refs,
		plan:           newKeyPlan(an.refs),
		cacheable:      !an.refs.body && opt.CacheBytes >= 0,
		masks:          newMaskCache(),
		compiler:       compiler,
		docs:           res.Documents,
		static:         static,
		nondet:         !an.deterministic,
		nondetBuiltins: slices.Sorted(slices.Values(an.nondet)),
		cacheBytes:     opt.CacheBytes,
	}
	switch {
	case !p.cacheable:
		p.keyInfo = "no decision cache: the policy reads input.body or input as a whole, or the cache is off"
	case an.pathKey != nil:
		if p.routeQuery, err = compileQuery(compiler, an.pathKey); err != nil {
			return nil, fmt.Errorf("prepare %s: %w", an.pathKey, err)
		}
		p.routePlan = newKeyPlan(an.pathKeyRefs)
		p.keyInfo = "the decision cache keys on " + p.plan.describe() + "; for a new path, on " + RouteKeyRule + " instead of the path"
	case !p.plan.path:
		p.keyInfo = "the decision cache keys on " + p.plan.describe()
	default:
		p.keyInfo = "the decision cache keys on " + p.plan.describe() + ", with the whole request path: " + an.pathKeyWhy
	}
	if p.nondet && p.cacheable {
		p.keyInfo += "; decisions that call a non-deterministic builtin are not cached"
	}
	for id, c := range contracts {
		hosts := append([]string(nil), c.Hosts...)
		sort.Strings(hosts)
		p.Vendors[id] = hosts
		for _, pu := range c.Purposes {
			p.Purposes[pu] = true
		}
	}
	p.bind(ctx, data)
	return p, nil
}

// WithData returns p bound to other engine data (LoadOptions.Data): the same
// compiled policy, files and revision, with its own store, precomputed
// rules and an empty decision cache. p itself is unchanged, so requests
// deciding under it finish under the data they started with.
func (p *Policy) WithData(ctx context.Context, data map[string]any) (*Policy, error) {
	d, err := normalizeData(data)
	if err != nil {
		return nil, err
	}
	return p.rebind(ctx, d), nil
}

// rebind is WithData for data normalizeData has accepted.
func (p *Policy) rebind(ctx context.Context, data map[string]any) *Policy {
	q := &Policy{
		Revision: p.Revision, Files: p.Files, Vendors: p.Vendors, Contracts: p.Contracts, Purposes: p.Purposes,
		LoadedAt: p.LoadedAt, decisionQuery: p.decisionQuery, routeQuery: p.routeQuery, refs: p.refs,
		plan: p.plan, routePlan: p.routePlan, keyInfo: p.keyInfo, cacheable: p.cacheable, masks: p.masks,
		compiler: p.compiler, docs: p.docs, static: p.static, nondet: p.nondet, cacheBytes: p.cacheBytes,
	}
	q.bind(ctx, data)
	return q
}

// bind gives p its store (the policy's documents and data.pare), its
// precomputed rules and its decision cache. It cannot fail: everything that
// can was checked by Load and normalizeData.
func (p *Policy) bind(ctx context.Context, data map[string]any) {
	docs := p.docs
	if data != nil {
		docs = make(map[string]any, len(p.docs)+1)
		maps.Copy(docs, p.docs)
		docs[reservedEngine] = data
	}
	// Policy data is read on every evaluation: keep it as AST values so
	// reads don't convert the contracts from Go values each time.
	store := inmem.NewFromObjectWithOpts(docs, inmem.OptReturnASTValuesOnRead(true), inmem.OptRoundTripOnWrite(false))
	ev := &evaluator{compiler: p.compiler, store: store, nondet: p.nondet}
	ev.static = computeStatic(ctx, ev, p.static)
	p.ev, p.data = ev, data
	if p.cacheable {
		n := p.cacheBytes
		if n == 0 {
			n = DefaultCacheBytes
		}
		p.cache = newDecisionCache(n)
	}
}

// Data returns the engine data the policy is bound to (LoadOptions.Data).
// The caller must not modify it.
func (p *Policy) Data() map[string]any { return p.data }

// normalizeData turns engine data into the JSON values the store holds,
// refusing what JSON cannot express.
func normalizeData(data map[string]any) (map[string]any, error) {
	if data == nil {
		return nil, nil
	}
	var v any = data
	if err := util.RoundTrip(&v); err != nil {
		return nil, fmt.Errorf("engine data (data.%s): %w", reservedEngine, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("engine data (data.%s) is not an object", reservedEngine)
	}
	return m, nil
}
