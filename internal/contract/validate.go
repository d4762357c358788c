package contract

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pare-dev/pare/filters"
)

var (
	// purposeRe and serviceRe: identifiers as the app and the sidecar config spell them.
	purposeRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	serviceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	// hostRe: a lower-case DNS name, optionally with one leading "*." wildcard label.
	hostRe = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	// headerRe: a lower-case HTTP token (RFC 9110 field-name).
	headerRe = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]+$")
	// queryRe: a query parameter name as it appears before "=", brackets allowed (expand[]).
	queryRe = regexp.MustCompile(`^[A-Za-z0-9._~\[\]-]+$`)
)

var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// cardSegments are path segments that name card data. A field with one of them is card data: it
// may appear only in a payment processor's contract, and never over plain HTTP.
var cardSegments = map[string]bool{
	"card": true, "cards": true, "card_number": true, "cardnumber": true, "pan": true,
	"cvc": true, "cvc2": true, "cvv": true, "cvv2": true, "security_code": true,
}

func isCardField(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if cardSegments[strings.ToLower(s)] {
			return true
		}
	}
	return false
}

// forbiddenHeader says why a header name may never be listed: the app's instructions to Pare and
// the app's own session credentials are not the vendor's business.
func forbiddenHeader(h string) string {
	switch {
	case strings.HasPrefix(h, "x-data-"), strings.HasPrefix(h, "x-legal-"):
		return "is an instruction to Pare and never leaves"
	case h == "cookie", h == "proxy-authorization":
		return "carries the app's own credentials and never leaves"
	}
	return ""
}

// problems collects errors with the contract's line numbers.
type problems struct {
	c    *Contract
	file string
	errs []error
}

func (p *problems) add(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks one contract and reports every problem at once. Checks that span contracts
// (a host claimed twice) are done by LoadDir/LoadFS.
func (c *Contract) Validate() error {
	p := &problems{c: c, file: c.File}
	if p.file == "" {
		p.file = c.ID
	}
	top := c.line()

	if strings.TrimSpace(c.Name) == "" {
		p.add(top, "name is required (reasons name the vendor)")
	}
	if strings.TrimSpace(c.Reference) == "" {
		p.add(top, "reference is required (reasons name the contract, e.g. PSP-2024-03)")
	}
	if !slices.Contains(Roles, c.Role) {
		p.add(c.at("role"), "role %q: want one of %s", c.Role, strings.Join(Roles, ", "))
	}

	if len(c.Hosts) == 0 {
		p.add(c.at("hosts"), "hosts: at least one host is required")
	}
	seen := map[string]bool{}
	for i, h := range c.Hosts {
		switch {
		case h != strings.ToLower(h):
			p.add(c.at("hosts", i), "host %q must be lower-case", h)
		case strings.HasPrefix(h, "*.") && strings.Count(h, ".") < 2:
			p.add(c.at("hosts", i), "host %q: a wildcard needs at least two labels after *. (it would match a whole top-level domain)", h)
		case !hostRe.MatchString(h):
			p.add(c.at("hosts", i), "host %q: want a DNS name (no scheme, port or path), optionally with a leading *.", h)
		}
		if seen[h] {
			p.add(c.at("hosts", i), "host %q is listed twice", h)
		}
		seen[h] = true
	}

	p.purposes(c.Purposes, true, "purposes")
	switch c.OtherPurposes {
	case "", OtherPurposesConsent, OtherPurposesDeny:
	default:
		p.add(c.at("other_purposes"), "other_purposes %q: want consent or deny", c.OtherPurposes)
	}
	if c.Role == "marketing" && !c.Marketing {
		p.add(c.at("role"), "a contract of role marketing must say marketing: true (every request to it needs marketing consent)")
	}
	if c.Role == "legal" && (len(c.Purposes) != 1 || c.Purposes[0] != "legal") {
		p.add(c.at("purposes"), "a contract of role legal serves purpose legal only")
	}

	p.cards("", c.Cards, c.at("cards"))
	if c.Port < 0 || c.Port > 65535 {
		p.add(c.at("port"), "port %d: want 1-65535 (or omit it for 443, 80 with plaintext)", c.Port)
	}
	if c.Plaintext {
		if c.Role == "payment_processor" {
			p.add(c.at("plaintext"), "plaintext: a payment processor is reached over TLS only")
		}
		if c.Cards == CardsAllow {
			p.add(c.at("plaintext"), "plaintext: cards: allow needs TLS")
		}
	}
	p.headers(c.Headers, "headers")

	paths := map[string]bool{} // every field and transform path of every route
	for i := range c.Routes {
		p.route(i, paths)
	}
	if len(c.Routes) == 0 {
		p.add(c.at("routes"), "routes: at least one route is required (a contract with no routes allows nothing)")
	}

	for i, r := range c.NeedToKnow {
		p.needToKnow(i, r, paths)
	}
	p.privacy()
	return errors.Join(p.errs...)
}

func (p *problems) purposes(list []string, required bool, key ...any) {
	if required && len(list) == 0 {
		p.add(p.c.at(key...), "purposes: at least one purpose is required")
	}
	seen := map[string]bool{}
	for i, pu := range list {
		line := p.c.at(append(key, i)...)
		if !purposeRe.MatchString(pu) {
			p.add(line, "purpose %q: want lower-case letters, digits and _", pu)
		}
		if seen[pu] {
			p.add(line, "purpose %q is listed twice", pu)
		}
		seen[pu] = true
	}
}

func (p *problems) cards(prefix, v string, line int) {
	switch v {
	case "", CardsBlock, CardsRedact:
	case CardsAllow:
		if p.c.Role != "payment_processor" {
			p.add(line, "%scards: allow is only for a payment processor (role %s)", prefix, p.c.Role)
		}
		if p.c.Plaintext {
			p.add(line, "%scards: allow needs TLS, and the contract allows plaintext", prefix)
		}
	default:
		p.add(line, "%scards %q: want block, redact or allow", prefix, v)
	}
}

func (p *problems) headers(list []string, key ...any) {
	seen := map[string]bool{}
	for i, h := range list {
		line := p.c.at(append(key, i)...)
		switch {
		case !headerRe.MatchString(h):
			p.add(line, "header %q: want a lower-case header name", h)
		case forbiddenHeader(h) != "":
			p.add(line, "header %q %s", h, forbiddenHeader(h))
		}
		if seen[h] {
			p.add(line, "header %q is listed twice", h)
		}
		seen[h] = true
	}
}

// field checks one body path as the filters read it: "/"-separated, no empty segment.
func (p *problems) field(line int, what, f string) bool {
	if f == "" || strings.HasPrefix(f, "/") || strings.HasSuffix(f, "/") || strings.Contains(f, "//") {
		p.add(line, "%s %q: want a path like a/b/c or items/*/sku (no empty segment, no leading or trailing /)", what, f)
		return false
	}
	return true
}

func (p *problems) route(i int, paths map[string]bool) {
	c := p.c
	r := c.Routes[i]
	at := func(k ...any) int { return c.at(append([]any{"routes", i}, k...)...) }
	name := fmt.Sprintf("route %d (%s %s)", i+1, strings.Join(r.Methods, ","), r.Path)

	if len(r.Methods) == 0 {
		p.add(at("methods"), "%s: methods: at least one method is required", name)
	}
	for j, m := range r.Methods {
		if !slices.Contains(methods, m) {
			p.add(at("methods", j), "%s: method %q: want one of %s (upper-case)", name, m, strings.Join(methods, ", "))
		}
	}
	if msg := checkGlob(r.Path); msg != "" {
		p.add(at("path"), "%s: path %q: %s", name, r.Path, msg)
	}

	body := r.Body
	switch body {
	case "", BodyFilter, BodyOpaque, BodyNone:
	default:
		p.add(at("body"), "%s: body %q: want filter, opaque or none", name, body)
	}
	if (body == BodyOpaque || body == BodyNone) && (len(r.Fields) > 0 || len(r.Transforms) > 0) {
		p.add(at("body"), "%s: body %s sends no filtered fields: remove fields and transforms", name, body)
	}
	if (body == "" || body == BodyFilter) && len(r.Fields) == 0 && len(r.Transforms) == 0 {
		p.add(at("body"), "%s: a filter route with no fields or transforms sends an empty body: say body: none", name)
	}

	seen := map[string]bool{}
	pathsOK := true // every path and transform passed the checks below, so Compile can only add news
	for j, f := range r.Fields {
		line := at("fields", j)
		if p.field(line, name+": field", f) {
			paths[f] = true
		} else {
			pathsOK = false
		}
		if seen[f] {
			p.add(line, "%s: field %q is listed twice", name, f)
		}
		seen[f] = true
		if isCardField(f) && c.Role != "payment_processor" {
			p.add(line, "%s: field %q is card data, which only a payment processor may receive", name, f)
		}
		if isCardField(f) && c.Plaintext {
			p.add(line, "%s: field %q is card data and the contract allows plaintext: card data travels over TLS only", name, f)
		}
	}
	keys := make([]string, 0, len(r.Transforms))
	for k := range r.Transforms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line := at("transforms", k)
		if p.field(line, name+": transform path", k) {
			paths[k] = true
		} else {
			pathsOK = false
		}
		if seen[k] {
			p.add(line, "%s: %q is both a field and a transform: say which", name, k)
		}
		if _, err := filters.ParseTransform(r.Transforms[k]); err != nil {
			p.add(line, "%s: transform of %q: %v", name, k, err)
			pathsOK = false
		}
		if isCardField(k) && c.Role != "payment_processor" && r.Transforms[k] == "hmac" {
			// hmac keeps a card number linkable; redact, last4 or truncate are fine anywhere.
			p.add(line, "%s: transform path %q is card data: hmac it only for a payment processor", name, k)
		}
	}
	// The filters compile the same mask at request time; compiling it here turns whatever else
	// they would reject (e.g. a bad ~ escape) into a load-time error. Skipped when the checks
	// above already failed, not to report the same problem twice.
	if pathsOK {
		if _, err := filters.Compile(r.Fields, r.Transforms); err != nil {
			p.add(at(), "%s: %s", name, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}

	seen = map[string]bool{}
	for j, q := range r.Query {
		if !queryRe.MatchString(q) {
			p.add(at("query", j), "%s: query parameter %q: want a parameter name", name, q)
		}
		if seen[q] {
			p.add(at("query", j), "%s: query parameter %q is listed twice", name, q)
		}
		seen[q] = true
	}
	p.headers(r.Headers, "routes", i, "headers")

	p.purposes(r.Purposes, false, "routes", i, "purposes")
	for j, pu := range r.Purposes {
		if !slices.Contains(c.Purposes, pu) {
			p.add(at("purposes", j), "%s: purpose %q is not among the contract's purposes (a route can only narrow them)", name, pu)
		}
	}
	p.cards(name+": ", r.Cards, at("cards"))
	if r.OptOut && !c.Marketing {
		p.add(at("opt_out"), "%s: opt_out exempts a route from the marketing gates; the contract is not a marketing recipient", name)
	}
	if r.OptOut && len(r.Purposes) == 0 {
		p.add(at("opt_out"), "%s: an opt_out route must narrow its purposes (e.g. purposes: [opt_out]), or it would carry marketing without consent", name)
	}
	if r.OptOut && slices.Contains(r.Purposes, "marketing") {
		p.add(at("opt_out"), "%s: an opt_out route cannot serve purpose marketing", name)
	}
}

// checkGlob checks a route path glob: absolute, no dot segments, balanced {} and [].
func checkGlob(g string) string {
	switch {
	case !strings.HasPrefix(g, "/"):
		return "want an absolute path glob starting with /"
	case strings.ContainsAny(g, " \t\r\n?#"):
		return "no whitespace, ? or # (the query is not part of the path)"
	case strings.Contains(g, "//"):
		return "empty path segment"
	}
	for _, s := range strings.Split(g, "/") {
		if s == "." || s == ".." {
			return "dot segments are not allowed"
		}
	}
	depth := map[rune]int{}
	for _, r := range g {
		switch r {
		case '{', '[':
			depth[r]++
		case '}':
			if depth['{']--; depth['{'] < 0 {
				return "unbalanced }"
			}
		case ']':
			if depth['[']--; depth['['] < 0 {
				return "unbalanced ]"
			}
		}
	}
	if depth['{'] != 0 || depth['['] != 0 {
		return "unbalanced { or ["
	}
	return ""
}

func (p *problems) needToKnow(i int, r NeedToKnow, paths map[string]bool) {
	c := p.c
	at := func(k ...any) int { return c.at(append([]any{"need_to_know", i}, k...)...) }
	name := fmt.Sprintf("need_to_know %d", i+1)
	if len(r.Fields) == 0 {
		p.add(at("fields"), "%s: fields: at least one field is required", name)
	}
	if len(r.Services) == 0 {
		p.add(at("services"), "%s: services: at least one service is required (none would refuse every request)", name)
	}
	for j, s := range r.Services {
		if !serviceRe.MatchString(s) {
			p.add(at("services", j), "%s: service %q: want a lower-case service name", name, s)
		}
	}
	switch r.OnViolation {
	case "", ViolationDeny, ViolationStrip:
	default:
		p.add(at("on_violation"), "%s: on_violation %q: want strip or deny", name, r.OnViolation)
	}
	if r.Cards && c.Role != "payment_processor" {
		// Only a payment processor may receive card data at all; elsewhere the
		// card guard already blocks every service, and the rule would
		// suggest otherwise.
		p.add(at("cards"), "%s: cards: true only makes sense for a payment_processor contract", name)
	}
	for j, f := range r.Fields {
		line := at("fields", j)
		if !p.field(line, name+": field", f) {
			continue
		}
		if !paths[f] {
			// A guard on a path no route sends guards nothing, and most likely is a typo.
			p.add(line, "%s: field %q does not appear in any route's fields or transforms", name, f)
		}
		if r.OnViolation != ViolationStrip {
			continue
		}
		for ri, rt := range c.Routes {
			for _, rp := range append(slices.Clone(rt.Fields), mapKeys(rt.Transforms)...) {
				if above(rp, f) {
					p.add(line, "%s: cannot strip %q: route %d sends all of %q", name, f, ri+1, rp)
				}
			}
		}
	}
}

func mapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// above reports whether route path r is a strict ancestor of f ("*" matching any segment), the
// relation under which the policy cannot strip f and refuses instead.
func above(r, f string) bool {
	rs, fs := strings.Split(r, "/"), strings.Split(f, "/")
	if len(rs) >= len(fs) {
		return false
	}
	for i, s := range rs {
		if s != fs[i] && s != "*" && fs[i] != "*" {
			return false
		}
	}
	return true
}

// validateSet checks what spans contracts: every host belongs to one contract.
func validateSet(contracts map[string]*Contract) error {
	ids := make([]string, 0, len(contracts))
	for id := range contracts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	owner := map[string]string{}
	var errs []error
	for _, id := range ids {
		c := contracts[id]
		for i, h := range c.Hosts {
			if prev, ok := owner[h]; ok && prev != id {
				errs = append(errs, &Error{File: c.File, Line: c.at("hosts", i), Msg: fmt.Sprintf("host %q is also claimed by %s (%s): a host belongs to one contract", h, prev, contracts[prev].File)})
				continue
			}
			owner[h] = id
		}
	}
	return errors.Join(errs...)
}

// line is the contract's own line (its mapping node), or 0.
func (c *Contract) line() int {
	if c.node == nil {
		return 0
	}
	return c.node.Line
}

// at returns the line of the node at path (mapping keys as strings, sequence indexes as ints)
// below the contract, or of the deepest node on the way that exists; for a mapping key the line
// of the key itself. 0 when the contract was not parsed from a file.
func (c *Contract) at(path ...any) int {
	n := c.node
	if n == nil {
		return 0
	}
	line := n.Line
	for _, step := range path {
		switch k := step.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k < 0 || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}
