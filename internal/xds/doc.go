// Package xds owns Pare's Envoy control plane: it turns the vendor contracts
// of a policies directory into the listener, routes and clusters an Envoy
// sidecar needs to send egress traffic through Pare's ext_proc filter, serves
// them over ADS with go-control-plane's snapshot cache, and writes the
// bootstrap that points an Envoy at it.
//
// The generated config is the transport half of the guarantee only: Envoy
// routes a request to a vendor cluster that originates verified TLS to the
// contract's host and port, and nothing else leaves; every request first
// passes the ext_proc filter (proxy extproc), which decides, minimizes and
// records exactly as proxy serve does. Whatever Envoy cannot route (an
// unknown host) or cannot hand to ext_proc fails closed.
package xds
