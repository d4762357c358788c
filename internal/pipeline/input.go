package pipeline

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/engine"
)

// check validates what the request names before anything is decided and
// returns the decoded path the policy sees — which is also exactly the path
// the vendor receives (see cleanPath).
func (x *Exchange) check() (string, error) {
	r := x.req
	if !validMethod(r.Method) {
		return "", malformed(engine.CodeBadRequest, "the method is not an upper-case HTTP token")
	}
	if r.Scheme != "http" && r.Scheme != "https" {
		return "", malformed(engine.CodeBadRequest, fmt.Sprintf("scheme %q is not supported", r.Scheme))
	}
	if err := checkHost(r.Host); err != nil {
		return "", err
	}
	if r.Port < 0 || r.Port > 65535 {
		return "", malformed(engine.CodeBadRequest, "bad port")
	}
	for _, h := range []string{"X-Data-Requester", "X-Legal-Approver"} {
		if v := r.Header.Get(h); v != "" {
			if _, err := personName(v); err != nil {
				return "", malformed(engine.CodeBadRequest, fmt.Sprintf("%s is not a valid name: %v", h, err))
			}
		}
	}
	return cleanPath(r.Path)
}

// personName is the form in which the legal rule compares requester and
// approver: the comparison key of the PRECIS Nickname profile (RFC 8266,
// golang.org/x/text/secure/precis) — NFKC, case folded, spaces collapsed
// and trimmed — so that "ＡＮＮＡ@x" (fullwidth) is "anna@x". Zero-width
// and other default-ignorable code points are not mapped away but
// refused: a name that differs from another only by invisible characters
// is an attempt to pass as a second person.
func personName(s string) (string, error) {
	if len(s) > 256 {
		return "", fmt.Errorf("longer than 256 bytes")
	}
	k, err := precis.Nickname.CompareKey(s)
	if err != nil {
		return "", fmt.Errorf("characters a person's name cannot have (PRECIS Nickname, RFC 8266)")
	}
	return k, nil
}

func malformed(code engine.Code, reason string) *engine.Error {
	return &engine.Error{Code: code, Reason: reason}
}

// validMethod accepts upper-case tokens only. Methods are case-sensitive
// (RFC 9110 9.1) and the policy matches routes by upper-case name, so a
// "post" would be decided as one method and sent as another; front ends
// upper-case the standard methods before they get here.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// NormalizeMethod upper-cases the standard methods, so that a client's
// "post" is decided and sent as POST. Anything else is returned unchanged
// and refused by the pipeline unless it is already an upper-case token.
func NormalizeMethod(m string) string {
	switch u := strings.ToUpper(m); u {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return u
	}
	return m
}

// maxHost is the longest DNS name (RFC 1035); it also bounds what a refused
// request's host puts in the ledger.
const maxHost = 253

// checkHost accepts a lower-case DNS name or IP literal. Front ends
// lower-case the host and cut a trailing dot; anything else (spaces,
// control bytes, user info, a 60 KB "host") is refused before it reaches
// the policy, the ledger or a log line.
func checkHost(h string) error {
	if h == "" {
		return malformed(engine.CodeBadRequest, "the request names no host (absolute URL or Host header)")
	}
	if len(h) > maxHost {
		return malformed(engine.CodeBadRequest, fmt.Sprintf("the host name is %d bytes long; at most %d are allowed", len(h), maxHost))
	}
	if h[0] == '[' { // IPv6 literal
		if h[len(h)-1] != ']' || strings.Trim(h[1:len(h)-1], "0123456789abcdef:.") != "" {
			return malformed(engine.CodeBadRequest, "the host is not a valid IPv6 literal")
		}
		return nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' {
			return malformed(engine.CodeBadRequest, "the host name has characters a DNS name cannot have")
		}
	}
	return nil
}

// maxPath bounds the request path. Vendor APIs use short paths; a longer one
// is an attempt to fill the ledger, the decision cache or a log line.
const maxPath = 8 << 10

// cleanPath checks the escaped path of the request target and returns it
// decoded. Servers disagree about encoded separators, backslashes, matrix
// parameters and dot segments, so a path that means one thing to the policy
// could mean another to the vendor; Pare refuses such paths (400
// malformed_path) before the decision, in the spirit of Envoy's
// normalize_path with path_with_escaped_slashes_action REJECT_REQUEST:
//
//   - encoded "/" "\" "?" "#" and NUL (any case) inside a segment: refused;
//   - raw "\" and ";" anywhere, control characters, invalid
//     percent-encoding, invalid UTF-8 after decoding: refused;
//   - "." and ".." segments, encoded or not: refused (a well-behaved client
//     never sends them; resolving them would hide a traversal attempt);
//   - runs of slashes are merged into one (Envoy's merge_slashes), as
//     SDKs that join a base URL ending in "/" with a path starting with one
//     produce them.
//
// The result is what the policy matches routes against and, re-encoded by
// net/url, what the vendor receives: both see the same path.
func cleanPath(raw string) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if len(raw) > maxPath {
		return "", malformed(engine.CodeMalformedPath, fmt.Sprintf("the path is %d bytes long; at most %d are allowed", len(raw), maxPath))
	}
	if raw[0] != '/' {
		return "", malformed(engine.CodeMalformedPath, "the path does not start with /")
	}
	var b strings.Builder
	b.Grow(len(raw))
	segs := strings.Split(raw[1:], "/")
	for i, seg := range segs {
		if seg == "" && i < len(segs)-1 {
			continue // merge slashes; a trailing slash is kept
		}
		if strings.ContainsAny(seg, `\;`) {
			return "", malformed(engine.CodeMalformedPath, `the path has a backslash or a ";" parameter`)
		}
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return "", malformed(engine.CodeMalformedPath, "the path has invalid percent-encoding")
		}
		for j := 0; j < len(dec); j++ {
			if c := dec[j]; c < 0x20 || c == 0x7f || c == '/' || c == '\\' || c == '?' || c == '#' {
				return "", malformed(engine.CodeMalformedPath, `the path has an encoded "/", "\", "?", "#" or control character in a segment`)
			}
		}
		if !utf8.ValidString(dec) {
			return "", malformed(engine.CodeMalformedPath, "the path is not UTF-8 once decoded")
		}
		if dec == "." || dec == ".." {
			return "", malformed(engine.CodeMalformedPath, "the path has a dot segment")
		}
		b.WriteByte('/')
		b.WriteString(dec)
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// purposeOf is the declared purpose in the form the policy decides on
// (egress.rego: lower(trim_space(p)), the same functions), so that the
// ledger, the logs and the metrics name the purpose that was decided:
// "Payment" is a payment, and recorded as one.
func purposeOf(v string) string { return strings.ToLower(strings.TrimSpace(v)) }

// nameOf is personName for a header check has accepted.
func nameOf(v string) string {
	if v == "" {
		return ""
	}
	k, _ := personName(v)
	return k
}

// credentialHeaders are put in the policy input by name only.
var credentialHeaders = map[string]bool{"authorization": true, "cookie": true, "proxy-authorization": true}

// input builds the policy input for a checked request.
func (p *Pipeline) input(r *Request, path string) *engine.Input {
	h := r.Header
	port := r.Port
	if port == 0 {
		port = 80
		if r.Scheme == "https" {
			port = 443
		}
	}
	in := &engine.Input{
		Method:     r.Method,
		Scheme:     r.Scheme,
		Host:       r.Host,
		Port:       port,
		Path:       path,
		Headers:    make(map[string]string, len(h)),
		Purpose:    purposeOf(h.Get("X-Data-Purpose")),
		Subject:    strings.TrimSpace(h.Get("X-Data-Subject")),
		GPC:        strings.TrimSpace(h.Get("X-Data-GPC")) == "1",
		LegalBasis: strings.TrimSpace(h.Get("X-Legal-Basis")),
		Requester:  nameOf(h.Get("X-Data-Requester")),
		Approver:   nameOf(h.Get("X-Legal-Approver")),
		Service:    p.cfg.Service,
	}
	if r.RawQuery != "" {
		if q, err := url.ParseQuery(r.RawQuery); err == nil {
			in.Query = q
		}
	}
	for k, vs := range h {
		lk := filters.LowerHeader(k)
		if credentialHeaders[lk] {
			in.Headers[lk] = "[present]"
			continue
		}
		in.Headers[lk] = strings.Join(vs, ", ")
	}
	return in
}
