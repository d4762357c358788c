// Package inputspace generates the input space of Pare's policies from their
// contracts: for every contract, route and method, every combination of
// declared purpose, consent state, Global Privacy Control, source service and
// legal headers, each with a concrete host, path and port drawn for it (from
// the route's glob, with random resource ids, sometimes with dot segments or
// a segment too many), plus requests to hosts no contract covers and fully
// random requests.
//
// It is what evaluates two things "over every input that matters": the
// engine's differential test (the fast path against plain evaluation of the
// same Rego) and `proxy diff OLD NEW` (which fields and refusals change
// between two policies). A Space is indexed: Case(i) is a pure function of
// the contracts, the options and i, so a run can take every case, a sample
// (Sample), or one case again by its index; two policies evaluated over one
// Space (built from the union of their contracts, see Union) see the very
// same requests.
//
//	sp := inputspace.New(inputspace.Union(oldPolicy.Contracts, newPolicy.Contracts), inputspace.Options{})
//	for i := range sp.Len() {
//		c := sp.Case(i)
//		a, errA := oldEngine.Decide(ctx, oldPolicy, &c.Input, nil)
//		b, errB := newEngine.Decide(ctx, newPolicy, &c.Input, nil)
//		// group differences by c.Dims: vendor, route, purpose, service ...
//	}
package inputspace

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
)

// Options tune a Space. The zero value is usable.
type Options struct {
	// Seed makes the random parts (hosts, paths, ports, ids) of each case;
	// the same seed gives the same cases.
	Seed uint64
	// Random is how many fully random requests follow the systematic cases
	// (random methods, hosts, paths and headers). Default 1,000.
	Random int
	// Services are the source services tried, beyond those the contracts'
	// need-to-know rules name, "" (none) and "webapp" (a service no rule
	// names).
	Services []string
	// Purposes are declared purposes tried, beyond the contracts' own, "",
	// "marketing", "legal", "opt_out" and "analytics" (a purpose no bundled
	// contract serves).
	Purposes []string
}

// Dims names the combination a case stands for, for grouping results
// (`proxy diff` reports per vendor, route, purpose and service).
type Dims struct {
	Vendor  string // contract id; "" for a host no contract covers
	Route   int    // index of the route the path was drawn from; -1 for none
	Pattern string // that route's path glob
	Method  string
	Purpose string
	Consent string // the consent state, by name (ConsentStates)
	GPC     bool
	Service string
	Legal   string // the legal headers, by name (LegalStates)
	Random  bool   // a fully random request, outside the product
}

// Case is one generated request.
type Case struct {
	Index int
	Dims  Dims
	Input engine.Input
}

// ConsentStates are the consent states each case is tried with, by name:
// none, the declared purpose granted or withdrawn, marketing granted or
// withdrawn, a grant and a withdrawal of the declared purpose at once,
// both purposes granted, and the consent source failing.
var ConsentStates = []string{
	"none", "granted", "withdrawn", "marketing-granted", "marketing-withdrawn",
	"granted-and-withdrawn", "granted-with-marketing", "source-down",
}

// LegalStates are the legal header combinations: none, a basis with a
// requester and a second approver, the approver being the requester (in
// another case and with spaces), no approver, no requester, no basis.
var LegalStates = []string{"none", "basis-two-people", "approver-is-requester", "no-approver", "no-requester", "no-basis"}

var baseMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

type target struct {
	vendor   string
	c        *contract.Contract
	route    int // -1: no route (an unknown host)
	method   string
	unknown  string   // for an unknown host: which kind
	purposes []string // the declared purposes tried on this target
}

// Space is the indexed input space of a set of contracts.
type Space struct {
	opt      Options
	targets  []target
	purposes []string // every purpose tried somewhere
	services []string
	block    int   // cases per target and purpose: consent × GPC × service × legal
	offsets  []int // first case of each target
	product  int   // systematic cases
}

// Union merges contract sets (two policies' contracts, for `proxy diff`):
// ids in both take b's contract, with the routes, hosts, purposes and
// need-to-know rules of a's version that b's lacks added after b's own, so
// that every route, host and service of either is tried. A route both
// versions hold is tried once: two policies loaded apart hold equal
// contracts that are not the same pointer, and a doubled route would only
// double the cases.
func Union(a, b map[string]*contract.Contract) map[string]*contract.Contract {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]*contract.Contract{}
	}
	for id, c := range b {
		if old, ok := out[id]; ok && old != c {
			merged := *c
			merged.Routes = appendMissing(c.Routes, old.Routes)
			merged.Hosts = appendMissing(c.Hosts, old.Hosts)
			merged.Purposes = appendMissing(c.Purposes, old.Purposes)
			merged.NeedToKnow = appendMissing(c.NeedToKnow, old.NeedToKnow)
			c = &merged
		}
		out[id] = c
	}
	return out
}

// appendMissing returns a copy of dst with the elements of src that dst
// does not hold (reflect.DeepEqual) appended.
func appendMissing[T any](dst, src []T) []T {
	out := slices.Clone(dst)
	for _, x := range src {
		if !slices.ContainsFunc(out, func(y T) bool { return reflect.DeepEqual(x, y) }) {
			out = append(out, x)
		}
	}
	return out
}

// New builds the space of contracts. Each route and method is tried with
// the purposes its contract and the route name, the extra purposes (see
// Options.Purposes) and the purposes that exercise the special rules: none,
// marketing, legal, and one no contract serves.
func New(contracts map[string]*contract.Contract, opt Options) *Space {
	if opt.Random == 0 {
		opt.Random = 1000
	}
	s := &Space{opt: opt}
	extra := append([]string{"", "marketing", "legal", "analytics"}, opt.Purposes...)
	all := map[string]bool{}
	services := map[string]bool{"": true, "webapp": true}
	for _, sv := range opt.Services {
		services[sv] = true
	}
	for _, id := range slices.Sorted(maps.Keys(contracts)) {
		c := contracts[id]
		for _, n := range c.NeedToKnow {
			for _, sv := range n.Services {
				services[sv] = true
			}
		}
		for ri, r := range c.Routes {
			ps := map[string]bool{}
			for _, p := range slices.Concat(c.Purposes, r.Purposes, extra) {
				ps[p], all[p] = true, true
			}
			methods := map[string]bool{}
			for _, m := range slices.Concat(baseMethods, r.Methods) {
				methods[m] = true
			}
			for _, m := range slices.Sorted(maps.Keys(methods)) {
				s.targets = append(s.targets, target{vendor: id, c: c, route: ri, method: m, purposes: slices.Sorted(maps.Keys(ps))})
			}
		}
	}
	for _, p := range extra {
		all[p] = true
	}
	for _, kind := range []string{"subdomain", "random", "empty"} {
		for _, m := range []string{"GET", "POST"} {
			s.targets = append(s.targets, target{route: -1, method: m, unknown: kind, purposes: extra})
		}
	}
	s.purposes = slices.Sorted(maps.Keys(all))
	s.services = slices.Sorted(maps.Keys(services))
	s.block = len(ConsentStates) * 2 * len(s.services) * len(LegalStates)
	for _, t := range s.targets {
		s.offsets = append(s.offsets, s.product)
		s.product += len(t.purposes) * s.block
	}
	return s
}

// Len is the number of cases: the systematic product, then Options.Random
// random requests.
func (s *Space) Len() int { return s.product + s.opt.Random }

// Product is the number of systematic cases (every route and method × its
// purposes × consent state × GPC × service × legal headers).
func (s *Space) Product() int { return s.product }

// Sample returns n indexes spread over the whole space: a stride through
// the product (so each dimension's values all occur when n is not tiny),
// then a share of the random cases.
func (s *Space) Sample(n int) []int {
	if n >= s.Len() {
		out := make([]int, s.Len())
		for i := range out {
			out[i] = i
		}
		return out
	}
	random := min(s.opt.Random, n/10)
	systematic := n - random
	out := make([]int, 0, n)
	// A stride coprime with the product visits every part of it evenly;
	// rounded up, the sweep reaches its end.
	stride := (s.product + systematic - 1) / max(systematic, 1)
	for !coprime(stride, s.product) {
		stride++
	}
	for i := range systematic {
		out = append(out, i*stride%s.product)
	}
	for i := range random {
		out = append(out, s.product+i*s.opt.Random/max(random, 1))
	}
	return out
}

func coprime(a, b int) bool {
	for b != 0 {
		a, b = b, a%b
	}
	return a == 1
}

// Case returns case i (0 <= i < Len). The same space and i always give the
// same case.
func (s *Space) Case(i int) Case {
	rng := rand.New(rand.NewPCG(s.opt.Seed, uint64(i)))
	if i >= s.product {
		return s.random(i, rng)
	}
	ti, _ := slices.BinarySearch(s.offsets, i+1)
	t := s.targets[ti-1]
	n := i - s.offsets[ti-1]
	pick := func(k int) int { v := n % k; n /= k; return v }
	legal := pick(len(LegalStates))
	service := pick(len(s.services))
	gpc := pick(2) == 1
	consent := pick(len(ConsentStates))
	purpose := t.purposes[pick(len(t.purposes))]

	c := Case{Index: i, Dims: Dims{
		Vendor: t.vendor, Route: t.route, Method: t.method, Purpose: purpose,
		Consent: ConsentStates[consent], GPC: gpc, Service: s.services[service], Legal: LegalStates[legal],
	}}
	in := &c.Input
	in.Method = t.method
	if rng.IntN(20) == 0 {
		in.Method = strings.ToLower(t.method)
	}
	in.Host = s.host(t, rng)
	if t.c != nil {
		c.Dims.Pattern = t.c.Routes[t.route].Path
		in.Path = pathFor(c.Dims.Pattern, rng)
	} else {
		in.Path = randomPath(rng)
	}
	in.Scheme, in.Port = port(t.c, rng)
	in.Purpose = c.Dims.Purpose
	if in.Purpose != "" && rng.IntN(10) == 0 {
		in.Purpose = " " + strings.ToUpper(in.Purpose[:1]) + in.Purpose[1:] + " "
	}
	in.Subject = fmt.Sprintf("u-%d", rng.Uint32())
	in.GPC = gpc
	in.Consents, in.ConsentErr = consents(c.Dims.Consent, c.Dims.Purpose, rng)
	in.Service = c.Dims.Service
	in.LegalBasis, in.Requester, in.Approver = legalHeaders(c.Dims.Legal, i)
	in.Headers = map[string]string{"content-type": "application/json", "x-request-id": fmt.Sprintf("r-%d", rng.Uint64())}
	if rng.IntN(2) == 0 {
		in.Headers["authorization"] = "[present]"
	}
	if rng.IntN(4) == 0 {
		in.Query = map[string][]string{"expand": {"customer"}, "q": {token(rng)}}
	}
	return c
}

// Neighbours returns copies of c that differ from it in one dimension each
// — another declared purpose, consent state (two), GPC, source service,
// legal headers (two), port — and in nothing else: same host, path and ids. A decision
// cache whose key missed one of those dimensions would answer a neighbour
// with c's decision; the differential test sends them one after the other.
func (s *Space) Neighbours(c Case) []Case {
	if c.Dims.Random {
		return nil
	}
	rng := rand.New(rand.NewPCG(s.opt.Seed^0xe1, uint64(c.Index)))
	other := func(vals []string, cur string) string {
		for range 8 {
			if v := vals[rng.IntN(len(vals))]; v != cur {
				return v
			}
		}
		return cur
	}
	var out []Case
	add := func(f func(n *Case)) {
		n := c
		n.Input.Consents = slices.Clone(c.Input.Consents)
		f(&n)
		out = append(out, n)
	}
	add(func(n *Case) {
		n.Dims.Purpose = other(s.purposes, c.Dims.Purpose)
		n.Input.Purpose = n.Dims.Purpose
		n.Input.Consents, n.Input.ConsentErr = consents(n.Dims.Consent, n.Dims.Purpose, rng)
	})
	next := func(vals []string, cur string) string {
		return vals[(slices.Index(vals, cur)+1)%len(vals)]
	}
	for _, pickState := range []func([]string, string) string{next, other} {
		add(func(n *Case) {
			n.Dims.Consent = pickState(ConsentStates, c.Dims.Consent)
			n.Input.Consents, n.Input.ConsentErr = consents(n.Dims.Consent, n.Dims.Purpose, rng)
		})
	}
	add(func(n *Case) {
		n.Dims.GPC = !c.Dims.GPC
		n.Input.GPC = n.Dims.GPC
	})
	add(func(n *Case) {
		n.Dims.Service = other(s.services, c.Dims.Service)
		n.Input.Service = n.Dims.Service
	})
	for _, pickState := range []func([]string, string) string{next, other} {
		add(func(n *Case) {
			n.Dims.Legal = pickState(LegalStates, c.Dims.Legal)
			n.Input.LegalBasis, n.Input.Requester, n.Input.Approver = legalHeaders(n.Dims.Legal, c.Index)
		})
	}
	add(func(n *Case) {
		if n.Input.Port == 8443 {
			n.Input.Scheme, n.Input.Port = "http", 80
		} else {
			n.Input.Scheme, n.Input.Port = "https", 8443
		}
	})
	return out
}

// Reroll returns c with everything a decision should not depend on drawn
// again: another resource id in the path (from the same route glob), another
// subject, other consent times and evidence, another request id. A cached
// decision for c must equal the decision for Reroll(c); the differential
// test sends both.
func (s *Space) Reroll(c Case, salt uint64) Case {
	rng := rand.New(rand.NewPCG(s.opt.Seed^0x5eed, uint64(c.Index)<<16^salt))
	out := c
	in := &out.Input
	if c.Dims.Pattern != "" {
		in.Path = pathFor(c.Dims.Pattern, rng)
	}
	in.Subject = fmt.Sprintf("u-%d", rng.Uint32())
	in.Consents = slices.Clone(in.Consents)
	for i := range in.Consents {
		in.Consents[i].Time = in.Consents[i].Time.Add(time.Duration(rng.IntN(1000)) * time.Hour)
		in.Consents[i].Evidence.Action = "clicked " + token(rng)
		in.Consents[i].Evidence.Where = "page " + token(rng)
	}
	in.Headers = maps.Clone(in.Headers)
	in.Headers["x-request-id"] = fmt.Sprintf("r-%d", rng.Uint64())
	return out
}

func (s *Space) host(t target, rng *rand.Rand) string {
	if t.c == nil {
		switch t.unknown {
		case "subdomain":
			return "evil." + s.anyExactHost(rng)
		case "empty":
			return ""
		}
		return token(rng) + ".example"
	}
	h := t.c.Hosts[rng.IntN(len(t.c.Hosts))]
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		h = token(rng) + "." + rest
	}
	switch rng.IntN(10) {
	case 0:
		h = strings.ToUpper(h)
	case 1:
		h += "."
	}
	return h
}

func (s *Space) anyExactHost(rng *rand.Rand) string {
	for range 8 {
		t := s.targets[rng.IntN(len(s.targets))]
		if t.c != nil {
			h := t.c.Hosts[rng.IntN(len(t.c.Hosts))]
			return strings.TrimPrefix(h, "*.")
		}
	}
	return "example.com"
}

// port returns the scheme and port of the request the app sent its sidecar:
// usually plain HTTP on 80, sometimes HTTPS, no port, the contract's port,
// or a port nobody allows.
func port(c *contract.Contract, rng *rand.Rand) (string, int) {
	switch rng.IntN(10) {
	case 0:
		return "https", 443
	case 1:
		return "http", 0
	case 2:
		return "http", 8443
	case 3:
		if c != nil && c.Port != 0 {
			return "https", c.Port
		}
		return "https", 0
	}
	return "http", 80
}

func consents(state, purpose string, rng *rand.Rand) ([]engine.Consent, string) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(1<<20)) * time.Second)
	ev := func(p, status string) engine.Consent {
		return engine.Consent{Purpose: p, Status: status, Time: at,
			Evidence: engine.Evidence{Action: "checked a box " + token(rng), Where: "signup", PolicyVersion: "2026-09"}}
	}
	p := purpose
	if p == "" {
		p = "analytics"
	}
	switch state {
	case "granted":
		return []engine.Consent{ev(p, "granted")}, ""
	case "withdrawn":
		return []engine.Consent{ev(p, "withdrawn")}, ""
	case "marketing-granted":
		return []engine.Consent{ev("marketing", "granted")}, ""
	case "marketing-withdrawn":
		return []engine.Consent{ev("marketing", "withdrawn")}, ""
	case "granted-and-withdrawn":
		return []engine.Consent{ev(p, "granted"), ev(p, "withdrawn")}, ""
	case "granted-with-marketing":
		cs := []engine.Consent{ev("marketing", "granted")}
		if p != "marketing" {
			cs = append(cs, ev(p, "granted"))
		}
		return cs, ""
	case "source-down":
		return []engine.Consent{}, "consent source unavailable"
	}
	return []engine.Consent{}, ""
}

// legalHeaders returns the headers of a legal state. The basis is the same
// for every state of one case, so that two neighbours differ in who approved
// only.
func legalHeaders(state string, caseIndex int) (basis, requester, approver string) {
	basis = "Subpoena 2026-CV-" + fmt.Sprint(caseIndex%10000)
	requester = "anna.legal@webinar-co.example"
	switch state {
	case "basis-two-people":
		return basis, requester, "piotr.dpo@webinar-co.example"
	case "approver-is-requester":
		return basis, requester, " Anna.Legal@Webinar-Co.example "
	case "no-approver":
		return basis, requester, ""
	case "no-requester":
		return basis, "", "piotr.dpo@webinar-co.example"
	case "no-basis":
		return "", requester, "piotr.dpo@webinar-co.example"
	}
	return "", "", ""
}

// pathFor draws a concrete path from a route glob: "*" becomes a resource id
// or part of one, "**" zero to three segments, "{a,b}" one alternative. One
// path in ten then gets something a route must not match or must refuse: a
// dot segment (plain or percent-encoded), a segment too many, a trailing
// slash, a doubled slash.
func pathFor(glob string, rng *rand.Rand) string {
	var b strings.Builder
	expand(&b, glob, rng)
	p := b.String()
	switch rng.IntN(40) {
	case 0:
		return p + "/../secrets"
	case 1:
		return strings.Replace(p, "/", "/%2E%2e/", 1)
	case 2:
		return p + "/" + token(rng)
	case 3:
		return p + "/"
	case 4:
		return strings.Replace(p, "/", "//", 1)
	case 5:
		return "./" + p
	}
	return p
}

// expand writes one string the glob matches.
func expand(b *strings.Builder, g string, rng *rand.Rand) {
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				i++
				n := rng.IntN(4)
				for j := range n {
					if j > 0 {
						b.WriteByte('/')
					}
					b.WriteString(token(rng))
				}
				continue
			}
			b.WriteString(token(rng))
		case '{':
			end := closing(g, i, '{', '}')
			alts := splitTop(g[i+1 : end])
			expand(b, alts[rng.IntN(len(alts))], rng)
			i = end
		case '[':
			end := closing(g, i, '[', ']')
			class := g[i+1 : end]
			if strings.HasPrefix(class, "!") || strings.HasPrefix(class, "^") {
				b.WriteByte('~')
			} else if class != "" {
				b.WriteByte(class[0])
			}
			i = end
		case '\\':
			if i+1 < len(g) {
				i++
				b.WriteByte(g[i])
			}
		default:
			b.WriteByte(c)
		}
	}
}

func closing(g string, i int, open, close byte) int {
	depth := 0
	for j := i; j < len(g); j++ {
		switch g[j] {
		case open:
			depth++
		case close:
			if depth--; depth == 0 {
				return j
			}
		}
	}
	return len(g) - 1
}

// splitTop splits alternatives at the commas outside nested braces.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

var tokenKinds = []func(*rand.Rand) string{
	func(r *rand.Rand) string { return fmt.Sprintf("cus_%x", r.Uint32()) },
	func(r *rand.Rand) string { return fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()) }, // an md5-like member hash
	func(r *rand.Rand) string { return fmt.Sprint(r.IntN(1_000_000)) },
	func(r *rand.Rand) string { return fmt.Sprintf("a%x", r.Uint32()&0xffff) },
}

// token is a path segment: mostly an id like those in vendor APIs, now and
// then something a path checker must get right.
func token(rng *rand.Rand) string {
	if rng.IntN(50) == 0 {
		odd := []string{".", "..", "%2e", "%2E%2e", "a%2Fb", "x;y=1", "é", "a b", "*", "{x}", ""}
		return odd[rng.IntN(len(odd))]
	}
	return tokenKinds[rng.IntN(len(tokenKinds))](rng)
}

func randomPath(rng *rand.Rand) string {
	n := rng.IntN(5)
	var b strings.Builder
	for range n {
		b.WriteByte('/')
		b.WriteString(token(rng))
	}
	if n == 0 {
		if rng.IntN(2) == 0 {
			return "/"
		}
		return ""
	}
	return b.String()
}

// random is a request outside the product: random method, host, path,
// purpose, headers.
func (s *Space) random(i int, rng *rand.Rand) Case {
	methods := append(slices.Clone(baseMethods), "HEAD", "OPTIONS", "post", "", "CONNECT", "X-CUSTOM")
	c := Case{Index: i, Dims: Dims{Route: -1, Random: true}}
	in := &c.Input
	in.Method = methods[rng.IntN(len(methods))]
	if t := s.targets[rng.IntN(len(s.targets))]; t.c != nil && rng.IntN(2) == 0 {
		in.Host = s.host(t, rng)
		c.Dims.Vendor = t.vendor
		if rng.IntN(2) == 0 {
			c.Dims.Route, c.Dims.Pattern = t.route, t.c.Routes[t.route].Path
			in.Path = pathFor(c.Dims.Pattern, rng) + randomPath(rng)
		} else {
			in.Path = randomPath(rng)
		}
	} else {
		in.Host = token(rng) + "." + token(rng)
		in.Path = randomPath(rng)
	}
	in.Scheme, in.Port = port(nil, rng)
	in.Purpose = s.purposes[rng.IntN(len(s.purposes))]
	if rng.IntN(4) == 0 {
		in.Purpose = token(rng)
	}
	c.Dims.Method, c.Dims.Purpose = in.Method, in.Purpose
	in.Subject = token(rng)
	in.GPC = rng.IntN(3) == 0
	c.Dims.GPC = in.GPC
	c.Dims.Consent = ConsentStates[rng.IntN(len(ConsentStates))]
	in.Consents, in.ConsentErr = consents(c.Dims.Consent, in.Purpose, rng)
	in.Service = s.services[rng.IntN(len(s.services))]
	c.Dims.Service = in.Service
	c.Dims.Legal = LegalStates[rng.IntN(len(LegalStates))]
	in.LegalBasis, in.Requester, in.Approver = legalHeaders(c.Dims.Legal, i)
	in.Headers = map[string]string{token(rng): token(rng)}
	return c
}
