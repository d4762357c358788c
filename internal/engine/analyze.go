package engine

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// inputRefs is what the compiled policy reads of its input. It is computed
// once per load, from the compiled modules, so that a policy that never looks
// at input.body never pays for parsing one, and so that the decision cache
// is keyed only on what can change a decision.
type inputRefs struct {
	all   bool            // input referred to as a whole or with a computed key
	paths map[string]bool // "purpose", "request" (whole), "request/host" ...
	body  bool
}

func (r inputRefs) has(top string, sub ...string) bool {
	if r.all || r.paths[top] {
		return true
	}
	return len(sub) > 0 && r.paths[top+"/"+sub[0]]
}

// nested lists the input objects whose members the cache key tracks one by
// one; any other top-level key is tracked whole.
var nested = map[string]bool{"request": true, "subject": true, "source": true}

func analyzeInput(modules map[string]*ast.Module) (refs inputRefs, deterministic bool) {
	refs.paths = map[string]bool{}
	deterministic = true
	visit := func(x any) bool {
		switch v := x.(type) {
		case ast.Ref:
			refs.add(v)
		case *ast.Expr:
			if v.IsCall() {
				if b, ok := ast.BuiltinMap[v.Operator().String()]; ok && b.Nondeterministic {
					deterministic = false
				}
			}
		case ast.Call:
			if len(v) > 0 {
				if b, ok := ast.BuiltinMap[v[0].String()]; ok && b.Nondeterministic {
					deterministic = false
				}
			}
		}
		return false
	}
	for _, m := range modules {
		ast.NewGenericVisitor(visit).Walk(m)
	}
	return refs, deterministic
}

func (r *inputRefs) add(ref ast.Ref) {
	if len(ref) == 0 || !ref[0].Equal(ast.InputRootDocument) {
		return
	}
	if len(ref) == 1 {
		r.all, r.body = true, true
		return
	}
	top, ok := ref[1].Value.(ast.String)
	if !ok {
		r.all, r.body = true, true
		return
	}
	if top == "body" {
		r.body = true
		return
	}
	if !nested[string(top)] || len(ref) < 3 {
		r.paths[string(top)] = true
		return
	}
	sub, ok := ref[2].Value.(ast.String)
	if !ok {
		r.paths[string(top)] = true
		return
	}
	r.paths[string(top)+"/"+string(sub)] = true
}
