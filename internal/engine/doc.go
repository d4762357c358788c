// Package engine makes Pare's decisions: it loads a policies directory (Rego
// plus YAML/JSON contracts) with OPA's loader, compiles it, evaluates
// data.egress.decision per request with OPA's topdown evaluator, validates
// what the policy returned, caches it, and applies the resulting masks to a
// request through package filters.
//
// Speed without a second copy of the rules: when a policy loads, the engine
// analyses its compiled rule graph (analyze.go) for what decisions depend on
// — the input paths read, the rules that read no input (computed once and
// served to every evaluation), and whether the request path is read only
// through data.egress.route_match — and keys its byte-bounded decision cache
// on exactly that (Engine.Decide). TestDifferential proves the result equal
// to plain OPA evaluation of the same Rego over the generated input space
// (package inputspace).
//
// The engine knows nothing of any transport: the HTTP proxy and other front
// ends build an Input, call Decide, and apply the Decision to the body,
// query and headers they hold. Everything that can go wrong maps to a stable
// Code with an HTTP-like status, so every front end refuses the same way.
package engine
