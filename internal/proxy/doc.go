// Package proxy is Pare's built-in data plane: an HTTP egress proxy that a
// service sends its vendor calls through. For every request it asks the
// engine for a decision, applies it to the query, headers and body, records
// the disclosure in the ledger — durably, before anything leaves — and only
// then originates TLS to the vendor. Anything it cannot decide, filter or
// record is refused with a JSON error and nothing is sent.
//
// The proxy is a thin adapter: decisions and masks live in package engine
// and package filters, so other front ends refuse and minimize identically.
package proxy
