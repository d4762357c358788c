// Package policies holds Pare's bundled policy: the generic Rego (package egress, entrypoint
// data.egress.decision), the special rules (legal.rego), the vendor contracts as YAML data
// (contracts/<vendor>.yaml → data.contracts.<vendor>) and their Rego tests.
//
// FS embeds all of it so the binary decides on its bundled policies without a checkout; a
// --policies directory with the same layout replaces it. README.md documents the policy input,
// the decision and the contract schema.
package policies

import "embed"

// FS is the bundled policies directory: *.rego (the *_test.rego files included, for `proxy
// check`; the engine leaves them out when deciding) and contracts/*. Paths are relative to the
// policies directory ("egress.rego", "contracts/stripe.yaml").
//
//go:embed *.rego contracts
var FS embed.FS
