package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

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

	query     rego.PreparedEvalQuery
	refs      inputRefs
	cacheable bool
	cache     *decisionCache
}

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
	// CacheSize bounds the decision cache (entries); 0 means the default,
	// negative disables the cache.
	CacheSize int
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

	compiler := ast.NewCompiler().WithEnablePrintStatements(false)
	compiler.Compile(res.ParsedModules())
	if compiler.Failed() {
		return nil, fmt.Errorf("compile policies: %w", compiler.Errors)
	}
	if len(compiler.GetRulesForVirtualDocument(ast.MustParseRef(Entrypoint))) == 0 {
		return nil, fmt.Errorf("compile policies: no rule defines %s", Entrypoint)
	}
	// Policy data is read on every evaluation: keep it as AST values so
	// reads don't convert the contracts from Go values each time.
	store, err := res.StoreWithOpts(inmem.OptReturnASTValuesOnRead(true), inmem.OptRoundTripOnWrite(false))
	if err != nil {
		return nil, fmt.Errorf("load policy data: %w", err)
	}
	pq, err := rego.New(
		rego.Query(Entrypoint),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.StoreReadAST(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", Entrypoint, err)
	}

	refs, deterministic := analyzeInput(compiler.Modules)
	p := &Policy{
		Revision:  l.revision,
		Files:     l.files,
		Vendors:   map[string][]string{},
		Purposes:  map[string]bool{},
		Contracts: contracts,
		LoadedAt:  time.Now(),
		query:     pq,
		refs:      refs,
		cacheable: deterministic && !refs.body && opt.CacheSize >= 0,
	}
	for id, c := range contracts {
		hosts := append([]string(nil), c.Hosts...)
		sort.Strings(hosts)
		p.Vendors[id] = hosts
		for _, pu := range c.Purposes {
			p.Purposes[pu] = true
		}
	}
	if p.cacheable {
		p.cache = newDecisionCache(opt.CacheSize)
	}
	return p, nil
}
