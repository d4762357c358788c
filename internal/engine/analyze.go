package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// RouteKeyRule is the rule through which a policy may read the request path
// (see analysis.pathKey): when every rule that reads input.request.path is
// reached from the entrypoint only through it, the decision cache keys on
// its value instead of the path.
const RouteKeyRule = "data.egress.route_match"

// inputRefs is what the compiled policy reads of its input, as path
// patterns ("request/host", "subject/consents/*/status"; "*" is an index or
// key the policy chose at evaluation time). It is computed once per load,
// from the compiled modules, so that a policy that never looks at input.body
// never pays for parsing one, and so that the decision cache is keyed only on
// what can change a decision.
type inputRefs struct {
	all   bool // input referred to as a whole
	body  bool
	paths [][]string
}

// reads reports whether the policy may read anything at or below the input
// path leaf, or anything above it (which includes it).
func (r inputRefs) reads(leaf ...string) bool {
	if r.all {
		return true
	}
	for _, p := range r.paths {
		if overlaps(p, leaf) {
			return true
		}
	}
	return false
}

// has is reads for a top-level key and an optional sub-key (the older
// spelling, kept for the accessors that use it).
func (r inputRefs) has(top string, sub ...string) bool {
	return r.reads(append([]string{top}, sub...)...)
}

// overlaps reports whether two input paths meet: one is a prefix of the
// other, "*" matching any one segment.
func overlaps(a, b []string) bool {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] && a[i] != "*" && b[i] != "*" {
			return false
		}
	}
	return true
}

// refPattern turns an input ref into a path pattern; ok is false for input
// itself.
func refPattern(ref ast.Ref) (pattern []string, ok bool) {
	if len(ref) < 2 {
		return nil, false
	}
	pattern = make([]string, 0, len(ref)-1)
	for _, t := range ref[1:] {
		if s, isStr := t.Value.(ast.String); isStr {
			pattern = append(pattern, string(s))
		} else {
			pattern = append(pattern, "*")
		}
	}
	return pattern, true
}

// analysis is what the engine learns from a compiled policy at load.
type analysis struct {
	refs inputRefs
	// deterministic: no non-deterministic builtin (time, rand, http) is
	// called, so a decision is a function of the input and the data.
	deterministic bool
	// nondet names the non-deterministic builtins called, sorted.
	nondet []string
	// with: some rule uses `with`; the input-independent rules are then
	// still precomputed (the evaluator serves them only outside a `with`),
	// but no key is derived.
	with bool
	// static are the complete rules reachable from the entrypoint that read
	// no input, directly or through the rules and functions they use: their
	// values depend on the data alone, so they are evaluated once per load.
	static []ast.Ref
	// pathKey is RouteKeyRule when the decision depends on the request path
	// only through it; pathKeyWhy says why not otherwise.
	pathKey    ast.Ref
	pathKeyWhy string
	// pathKeyRefs is what pathKey's rule reads of the input: all an input
	// for its evaluation needs.
	pathKeyRefs inputRefs
}

// ruleFacts are what one rule (or else branch) reads and calls directly.
type ruleFacts struct {
	input         [][]string
	inputAll      bool
	body          bool
	nondetermined bool
	nondet        []string // the non-deterministic builtins it calls
	with          bool
}

func factsOf(rule *ast.Rule) ruleFacts {
	var f ruleFacts
	visit := func(x any) bool {
		switch v := x.(type) {
		case *ast.Rule:
			// Else branches are rules of their own in the dependency graph.
			return v != rule
		case *ast.With:
			f.with = true
			if v.Target.IsGround() {
				if ref, ok := v.Target.Value.(ast.Ref); ok && ref[0].Equal(ast.InputRootDocument) {
					f.inputAll = true
				}
			}
		case ast.Ref:
			if len(v) == 0 || !v[0].Equal(ast.InputRootDocument) {
				return false
			}
			p, ok := refPattern(v)
			if !ok {
				f.inputAll = true
				return false
			}
			if p[0] == "body" || p[0] == "*" {
				f.body = true
			}
			f.input = append(f.input, p)
		case *ast.Expr:
			if v.IsCall() && nondeterministic(v.Operator()) {
				f.nondetermined = true
				f.nondet = append(f.nondet, v.Operator().String())
			}
		case ast.Call:
			if len(v) > 0 {
				if ref, ok := v[0].Value.(ast.Ref); ok && nondeterministic(ref) {
					f.nondetermined = true
					f.nondet = append(f.nondet, ref.String())
				}
			}
		}
		return false
	}
	ast.NewGenericVisitor(visit).Walk(rule)
	return f
}

func nondeterministic(op ast.Ref) bool {
	b, ok := ast.BuiltinMap[op.String()]
	return ok && b.Nondeterministic
}

// analyze computes the analysis of the compiled policy for entrypoint.
func analyze(c *ast.Compiler, entrypoint ast.Ref) analysis {
	a := analysis{deterministic: true}
	facts := map[*ast.Rule]ruleFacts{}
	var rules []*ast.Rule
	for _, name := range util.KeysSorted(c.Modules) {
		ast.WalkRules(c.Modules[name], func(r *ast.Rule) bool {
			facts[r] = factsOf(r)
			rules = append(rules, r)
			return false
		})
	}
	g := c.Graph
	entry := rulesAt(rules, entrypoint)
	reach := reachable(g, entry)
	// Only what the entrypoint reaches can change a decision (test modules
	// loaded by `proxy check`, say, cannot).
	for _, r := range rules {
		if !reach[r] {
			continue
		}
		f := facts[r]
		a.refs.all = a.refs.all || f.inputAll
		a.refs.body = a.refs.body || f.body || f.inputAll
		a.refs.paths = append(a.refs.paths, f.input...)
		a.deterministic = a.deterministic && !f.nondetermined
		for _, b := range f.nondet {
			if !slices.Contains(a.nondet, b) {
				a.nondet = append(a.nondet, b)
			}
		}
		a.with = a.with || f.with
	}

	// Rules that read input or are not deterministic, and everything that
	// uses them, are per-request; the rest of what the entrypoint reaches
	// depends on the data alone.
	perRequest := taint(g, rules, func(r *ast.Rule) bool {
		f := facts[r]
		return f.inputAll || len(f.input) > 0 || f.nondetermined || f.with
	}, nil)
	// A rule is precomputed by its ground prefix ("data.egress.route_table"
	// for route_table[id][i] := ...): the whole document at that ref, when
	// every rule that contributes to it is input-independent.
	seen := map[string]bool{}
	for _, r := range rules {
		if !reach[r] || perRequest[r] || len(r.Head.Args) > 0 || !isDataRef(r.Ref()) {
			continue
		}
		prefix := r.Ref().GroundPrefix()
		k := prefix.String()
		if seen[k] || len(prefix) < 2 {
			continue
		}
		seen[k] = true
		if staticDocument(prefix, rules, perRequest) {
			a.static = append(a.static, prefix)
		}
	}
	slices.SortFunc(a.static, func(x, y ast.Ref) int { return x.Compare(y) })

	a.pathKey, a.pathKeyWhy = pathKey(g, rules, facts, entry, a)
	if a.pathKey != nil {
		for r := range reachable(g, rulesAt(rules, a.pathKey)) {
			f := facts[r]
			a.pathKeyRefs.all = a.pathKeyRefs.all || f.inputAll
			a.pathKeyRefs.body = a.pathKeyRefs.body || f.body || f.inputAll
			a.pathKeyRefs.paths = append(a.pathKeyRefs.paths, f.input...)
		}
	}
	return a
}

func isDataRef(ref ast.Ref) bool {
	return len(ref) > 0 && ref[0].Equal(ast.DefaultRootDocument)
}

// staticDocument reports whether every rule that defines part of the
// document at prefix (another definition, an else branch, the default, a
// rule with a longer ref) is input-independent and no function, and none
// defines a document above it: the document's value then depends on the
// data alone.
func staticDocument(prefix ast.Ref, rules []*ast.Rule, perRequest map[*ast.Rule]bool) bool {
	for _, o := range rules {
		ref := o.Ref()
		under := ref.HasPrefix(prefix)
		above := prefix.HasPrefix(ref.GroundPrefix()) && len(ref.GroundPrefix()) < len(prefix)
		if (under || above) && (perRequest[o] || len(o.Head.Args) > 0) {
			return false
		}
		if above {
			return false
		}
	}
	return true
}

// rulesAt returns every rule and else branch that defines ref.
func rulesAt(rules []*ast.Rule, ref ast.Ref) []*ast.Rule {
	var out []*ast.Rule
	for _, r := range rules {
		if r.Ref().Equal(ref) {
			out = append(out, r)
		}
	}
	return out
}

// taint returns the rules for which seed holds and every rule that depends
// on one of them, not following dependents through the rules in stop.
func taint(g *ast.Graph, rules []*ast.Rule, seed func(*ast.Rule) bool, stop map[*ast.Rule]bool) map[*ast.Rule]bool {
	out := map[*ast.Rule]bool{}
	var queue []*ast.Rule
	for _, r := range rules {
		if seed(r) {
			out[r] = true
			queue = append(queue, r)
		}
	}
	for len(queue) > 0 {
		r := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if stop[r] {
			continue
		}
		for d := range g.Dependents(r) {
			dr, ok := d.(*ast.Rule)
			if !ok || out[dr] {
				continue
			}
			out[dr] = true
			queue = append(queue, dr)
		}
	}
	return out
}

// reachable returns the rules the given ones depend on, transitively,
// themselves included.
func reachable(g *ast.Graph, from []*ast.Rule) map[*ast.Rule]bool {
	out := map[*ast.Rule]bool{}
	queue := append([]*ast.Rule(nil), from...)
	for _, r := range from {
		out[r] = true
	}
	for len(queue) > 0 {
		r := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for d := range g.Dependencies(r) {
			dr, ok := d.(*ast.Rule)
			if !ok || out[dr] {
				continue
			}
			out[dr] = true
			queue = append(queue, dr)
		}
	}
	return out
}

// pathKey decides whether the decision depends on the request path only
// through RouteKeyRule: every rule that reads the path, and every rule that
// uses one of those, transitively, stopping at RouteKeyRule, must be out of
// the entrypoint's way. The check is on the dependency graph of the
// compiled policy, so a rule added later that reads the path (or a rule
// computed from it) elsewhere turns the derived key off instead of being
// skipped by it.
func pathKey(g *ast.Graph, rules []*ast.Rule, facts map[*ast.Rule]ruleFacts, entry []*ast.Rule, a analysis) (ast.Ref, string) {
	keyRef := ast.MustParseRef(RouteKeyRule)
	key := rulesAt(rules, keyRef)
	switch {
	case !a.refs.reads("request", "path"):
		return nil, "the policy does not read the path"
	case a.refs.all:
		return nil, "the policy reads input as a whole"
	case a.with:
		return nil, "the policy uses `with`"
	case len(key) == 0:
		return nil, fmt.Sprintf("the policy defines no %s", RouteKeyRule)
	}
	for _, r := range key {
		if len(r.Head.Args) > 0 || r.Head.RuleKind() != ast.SingleValue {
			return nil, fmt.Sprintf("%s is not a complete rule", RouteKeyRule)
		}
	}
	stop := map[*ast.Rule]bool{}
	for _, r := range key {
		stop[r] = true
	}
	readsPath := func(r *ast.Rule) bool {
		f := facts[r]
		if f.inputAll {
			return true
		}
		for _, p := range f.input {
			if overlaps(p, []string{"request", "path"}) {
				return true
			}
		}
		return false
	}
	pathUsers := taint(g, rules, readsPath, stop)
	for _, r := range entry {
		if pathUsers[r] {
			// Name where the fix goes: the rules outside the key rule's reach
			// that read the path, or use a rule within its reach that does.
			inKey := reachable(g, key)
			culprits := map[*ast.Rule]bool{}
			for r := range pathUsers {
				if inKey[r] {
					continue
				}
				if readsPath(r) {
					culprits[r] = true
					continue
				}
				for d := range g.Dependencies(r) {
					if dr, ok := d.(*ast.Rule); ok && inKey[dr] && pathUsers[dr] && !stop[dr] {
						culprits[r] = true
					}
				}
			}
			return nil, "the decision reads the path other than through " + RouteKeyRule + ": " + pathCulprits(rules, culprits)
		}
	}
	return keyRef, ""
}

// pathCulprits names rules, for the load report.
func pathCulprits(rules []*ast.Rule, culprits map[*ast.Rule]bool) string {
	var names []string
	for _, r := range rules {
		if !culprits[r] {
			continue
		}
		loc := ""
		if r.Location != nil {
			loc = fmt.Sprintf("%s:%d ", r.Location.File, r.Location.Row)
		}
		names = append(names, loc+r.Head.Ref().String())
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > 6 {
		names = append(names[:6], fmt.Sprintf("and %d more", len(names)-6))
	}
	return strings.Join(names, ", ")
}
