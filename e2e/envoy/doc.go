// Package envoy holds the end-to-end test of Pare behind a real Envoy:
// proxy xds configures the Envoy, proxy extproc filters for it, and a local
// TLS vendor stub stands in for the vendor. It runs when an `envoy` binary
// is on PATH and is skipped, saying so, when not; see README.md. The
// package holds tests only.
package envoy
