package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
)

// The engine evaluates its queries with OPA's topdown evaluator directly,
// not through the rego package: rego.PreparedEvalQuery starts a goroutine
// per evaluation to watch the context, builds a metrics registry and turns
// the result into Go maps (encoding/json style) that parseDecision would
// only walk again. Same compiler, store and builtins; the query result stays
// an AST value.

// query is one compiled query, "x = <ref>", and the variable bound to the
// ref's value.
type query struct {
	body ast.Body
	out  ast.Var
}

func compileQuery(c *ast.Compiler, ref ast.Ref) (*query, error) {
	out := ast.Var("__pare_out__")
	qc := c.QueryCompiler()
	body, err := qc.Compile(ast.NewBody(ast.Equality.Expr(ast.NewTerm(out), ast.NewTerm(ref))))
	if err != nil {
		return nil, fmt.Errorf("compile query %s: %w", ref, err)
	}
	for rewritten, orig := range qc.RewrittenVars() {
		if orig.Equal(out) {
			out = rewritten
		}
	}
	return &query{body: body, out: out}, nil
}

// evaluator holds what every evaluation of one policy shares.
type evaluator struct {
	compiler *ast.Compiler
	store    storage.Store
	static   *staticValues
	// nondet: the policy calls non-deterministic builtins (time.now_ns,
	// io.jwt.decode_verify, http.send ...). Each evaluation then records
	// whether it called one (see volatile).
	nondet bool
}

// result is one evaluation's value, and whether it depends on more than the
// input and the data: a non-deterministic builtin was called, or a builtin
// failed (an error can be transient). Such a result is not cached.
type result struct {
	value    *ast.Term
	volatile bool
}

// errUndefined: the query has no result.
var errUndefined = errors.New("undefined")

// eval evaluates q for input (nil: no input) and returns its single value.
// It is cancelled when ctx ends or timeout passes, whichever comes first,
// without a goroutine per evaluation.
func (ev *evaluator) eval(ctx context.Context, q *query, input *ast.Term, timeout time.Duration) (*ast.Term, error) {
	r, err := ev.evalResult(ctx, q, input, timeout)
	return r.value, err
}

// evalResult is eval that also says whether the result is volatile.
func (ev *evaluator) evalResult(ctx context.Context, q *query, input *ast.Term, timeout time.Duration) (result, error) {
	txn, err := ev.store.NewTransaction(ctx)
	if err != nil {
		return result{}, err
	}
	defer ev.store.Abort(ctx, txn)
	cancel := topdown.NewCancel()
	var timedOut atomic.Bool
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() { timedOut.Store(true); cancel.Cancel() })
		defer t.Stop()
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, cancel.Cancel)
		defer stop()
	}
	tq := topdown.NewQuery(q.body).
		WithCompiler(ev.compiler).
		WithStore(ev.store).
		WithTransaction(txn).
		WithCancel(cancel).
		WithMetrics(metrics.NoOp()).
		WithVirtualCache(ev.static.cache())
	if input != nil {
		tq = tq.WithInput(input)
	}
	// Topdown records every call of a non-deterministic builtin in an
	// NDBCache (for decision-log replay); here it tells whether the
	// evaluation called one. Failed builtins are listed too.
	var (
		ndb      builtins.NDBCache
		failures []topdown.Error
	)
	if ev.nondet {
		ndb = builtins.NDBCache{}
		tq = tq.WithNDBuiltinCache(ndb).WithBuiltinErrorList(&failures)
	}
	var (
		out *ast.Term
		n   int
	)
	err = tq.Iter(ctx, func(qr topdown.QueryResult) error {
		n++
		out = qr[q.out]
		return nil
	})
	r := result{volatile: len(ndb) > 0 || len(failures) > 0}
	switch {
	case err != nil && topdown.IsCancel(err):
		if timedOut.Load() || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return r, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return r, fmt.Errorf("%w: %w", context.Canceled, err)
	case err != nil:
		return r, err
	case n == 0 || out == nil:
		return r, errUndefined
	case n > 1:
		return r, fmt.Errorf("%d results, want one", n)
	}
	r.value = out
	return r, nil
}

// staticValues are the values of the policy's input-independent rules
// (analysis.static), computed once per load. Evaluations find them in their
// virtual cache, the place topdown keeps the rule values it has computed
// during one query, so each is a lookup instead of an evaluation.
type staticValues struct {
	byName map[string][]staticValue // by the last segment of the rule's ref
}

type staticValue struct {
	ref   ast.Ref
	value *ast.Term // nil: undefined
}

// staticQuery is a static rule's compiled query, kept with the policy so
// that binding it to other engine data (Policy.WithData) only evaluates.
type staticQuery struct {
	ref ast.Ref
	q   *query
}

// compileStatic compiles the queries of the static rules.
func compileStatic(c *ast.Compiler, refs []ast.Ref) ([]staticQuery, error) {
	out := make([]staticQuery, 0, len(refs))
	for _, ref := range refs {
		q, err := compileQuery(c, ref)
		if err != nil {
			return nil, err
		}
		out = append(out, staticQuery{ref: ref, q: q})
	}
	return out, nil
}

// computeStatic evaluates the static rules. A rule whose evaluation fails is
// left to be evaluated per request, where it fails the same way.
func computeStatic(ctx context.Context, ev *evaluator, queries []staticQuery) *staticValues {
	sv := &staticValues{byName: map[string][]staticValue{}}
	for _, s := range queries {
		v, err := ev.eval(ctx, s.q, nil, 0)
		switch {
		case errors.Is(err, errUndefined):
			v = nil
		case err != nil:
			continue
		}
		name := lastName(s.ref)
		sv.byName[name] = append(sv.byName[name], staticValue{ref: s.ref, value: v})
	}
	return sv
}

func lastName(ref ast.Ref) string {
	if s, ok := ref[len(ref)-1].Value.(ast.String); ok {
		return string(s)
	}
	return ""
}

func (sv *staticValues) cache() topdown.VirtualCache {
	inner := topdown.NewVirtualCache()
	if sv == nil || len(sv.byName) == 0 {
		return inner
	}
	return &layeredCache{static: sv, VirtualCache: inner}
}

// layeredCache serves the static values in front of the query's own virtual
// cache. Inside a `with` (Push) the data a rule reads may be replaced, so
// the static values are served at the outermost frame only.
type layeredCache struct {
	static *staticValues
	depth  int
	topdown.VirtualCache
}

func (c *layeredCache) Push() { c.depth++; c.VirtualCache.Push() }

func (c *layeredCache) Pop() { c.depth--; c.VirtualCache.Pop() }

func (c *layeredCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if c.depth == 0 && len(ref) > 0 {
		if s, ok := ref[len(ref)-1].Value.(ast.String); ok {
			for _, v := range c.static.byName[string(s)] {
				if v.ref.Equal(ref) {
					return v.value, v.value == nil
				}
			}
		}
	}
	return c.VirtualCache.Get(ref)
}
