package filters

import (
	"sort"
	"strings"
)

// internalHeaderPrefixes never leave, even when a contract lists them: they
// carry Pare's own inputs (purpose, subject, legal basis, approver), which
// describe the person and the decision, not the request to the vendor.
var internalHeaderPrefixes = []string{"x-data-", "x-legal-", "x-pare-"}

// Headers deletes in place every header of h whose name is not in allowed
// (compared case-insensitively); x-data-*, x-legal-* and x-pare-* are always
// deleted. Nothing is kept by default: content-type and accept leave only
// when a contract lists them (a content-type parameter can carry any text),
// and the front end sets the framing of the body it sends itself.
// http.Header converts to the argument type. Hop-by-hop headers are the
// proxy's business, not this function's. The report lists lower-cased names,
// sorted, since a map has no document order; header values are card-scanned
// by the caller (GuardCardsString), which knows the decision's guard.
func Headers(h map[string][]string, allowed []string) *Report {
	kept := make([]string, 0, len(h))
	var removed []string
	for name := range h {
		lower := LowerHeader(name)
		if headerAllowed(lower, allowed) {
			kept = append(kept, lower)
			continue
		}
		delete(h, name)
		removed = append(removed, lower)
	}
	rep := &Report{RemovedCount: len(removed)}
	rep.Kept = sortedUnique(kept)
	rep.Removed = sortedUnique(removed)
	return rep
}

// commonHeaders maps the canonical form of header names most requests carry
// to their lower case, so that lower-casing them allocates nothing. A fixed
// set: interning whatever names arrive would let any client grow it.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, h := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Encoding", "Content-Length", "Content-Type", "Cookie",
		"Date", "Expect", "Host", "Idempotency-Key", "If-Match", "If-None-Match",
		"Origin", "Proxy-Authorization", "Proxy-Connection", "Referer", "Traceparent",
		"Tracestate", "Transfer-Encoding", "User-Agent", "X-Api-Key", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Request-Id", "Stripe-Version", "Stripe-Account",
		"X-Data-Purpose", "X-Data-Subject", "X-Data-Requester", "X-Data-Gpc",
		"X-Legal-Basis", "X-Legal-Approver", "X-Pare-Dry-Run",
	} {
		m[h] = strings.ToLower(h)
	}
	return m
}()

// LowerHeader returns name in lower case, without allocating for common
// header names in canonical form (Go's server canonicalises them all) or
// names already in lower case.
func LowerHeader(name string) string {
	if l, ok := commonHeaders[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

func headerAllowed(lower string, allowed []string) bool {
	for _, p := range internalHeaderPrefixes {
		if strings.HasPrefix(lower, p) {
			return false
		}
	}
	for _, a := range allowed {
		if strings.EqualFold(a, lower) {
			return true
		}
	}
	return false
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	sort.Strings(s)
	out := s[:1]
	for _, v := range s[1:] {
		if v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}
