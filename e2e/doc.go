// Package e2e holds Pare's end-to-end tests: they build the real binary
// (cmd/proxy) once, start `proxy serve` on free ports in front of local TLS
// vendor stubs (internal/vendorstub, reached through --resolve and
// --upstream-ca so the proxy's real certificate checks run) and assert, byte
// for byte, what each vendor received — plus the refusals, the ledger, hot
// reload, crash safety, metrics and every promise of the privacy policy.
//
// Run them with `go test ./e2e/`; `go test ./e2e/ -update` rewrites the
// golden files under testdata/golden/. Nothing here is imported by the
// product: the package holds tests only.
package e2e
