// Package proxy is Pare's HTTP front end: the egress listener an app sends
// its vendor calls to — plain HTTP as an HTTP proxy (absolute-form) or by
// Host (origin-form), HTTPS through CONNECT tunnels (HTTPS_PROXY) and
// redirected TLS connections (the transparent listener), both terminated
// with certificates from the drop-in CA. Every request it receives goes
// through package pipeline; this package only turns HTTP into pipeline
// requests, sends what the pipeline allows over its verified upstream
// transport, and streams the vendor's answer back. It also serves the admin
// listener.
package proxy
