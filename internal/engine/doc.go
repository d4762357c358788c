// Package engine makes Pare's decisions: it loads a policies directory (Rego
// plus YAML/JSON contracts) with OPA's loader, compiles and prepares
// data.egress.decision once, evaluates it per request, validates what the
// policy returned, and applies the resulting masks to a request through
// package filters.
//
// The engine knows nothing of any transport: the HTTP proxy and other front
// ends build an Input, call Decide, and apply the Decision to the body,
// query and headers they hold. Everything that can go wrong maps to a stable
// Code with an HTTP-like status, so every front end refuses the same way.
package engine
