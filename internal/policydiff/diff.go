package policydiff

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/inputspace"
)

// Options tune Compare.
type Options struct {
	// Seed draws the random parts of the input space (inputspace.Options).
	// The same seed gives the same cases, so a report can be reproduced.
	Seed uint64
	// Sample, when positive and smaller than the space, evaluates about that
	// many cases spread over it (inputspace.Space.Sample) instead of all:
	// a quick look, which can miss differences.
	Sample int
	// Jobs is how many cases are decided at once; 0 is GOMAXPROCS.
	Jobs int
	// Filter, when set, keeps only the cases it accepts (a focused run, for
	// tests and for an author trying one vendor's change); Scope names it
	// in the report, which says that differences elsewhere are not shown.
	Filter func(inputspace.Dims) bool
	Scope  string
}

// SideInfo describes one policy of a report.
type SideInfo struct {
	Source   string `json:"source"`
	Kind     string `json:"kind"`
	Commit   string `json:"commit,omitempty"`
	Revision string `json:"revision"`
}

// Count is how many groups and cases have one effect.
type Count struct {
	Groups int `json:"groups"`
	Cases  int `json:"cases"`
}

// Report is the result of Compare.
type Report struct {
	Old SideInfo `json:"old"`
	New SideInfo `json:"new"`
	// Seed, SpaceCases, Evaluated, Sampled: which cases were decided.
	Seed       uint64 `json:"seed"`
	SpaceCases int    `json:"space_cases"`
	Evaluated  int    `json:"evaluated"`
	Sampled    bool   `json:"sampled"`
	// Identical: both policies are the same files (the same revision), so
	// nothing was evaluated: every decision is the same.
	Identical bool `json:"identical"`
	// Differing is how many evaluated cases differ in any way.
	Differing int `json:"differing_cases"`
	// Widens: some case widens disclosure (see Effect), or NEW decides on
	// parts of the input the diff cannot vouch for (Unverified).
	Widens bool `json:"widens"`
	// Unverified lists what NEW reads that OLD does not (engine.Policy.Reads),
	// and "body" when NEW reads the body (the input space has none): NEW may
	// let more out on values of those the input space never tries, so the
	// report counts as widening and a reviewer must read the Rego.
	Unverified []string         `json:"unverified"`
	Counts     map[Effect]Count `json:"counts"`
	// Vendors added and removed: contracts in one policy only.
	VendorsAdded   []string `json:"vendors_added"`
	VendorsRemoved []string `json:"vendors_removed"`
	Notes          []string `json:"notes"`
	// Groups, widening first, then narrowing, neutral and info; each in a
	// stable order. Every differing case is in exactly one group.
	Groups []Group `json:"groups"`
	// Elapsed is how long the evaluation took (not in the JSON: the output
	// of a run is a function of its inputs).
	Elapsed time.Duration `json:"-"`
	// Jobs is how many cases were decided at once (not in the JSON either).
	Jobs int `json:"-"`
}

// Group is every case of one vendor and route whose decisions differ the
// same way (the same Changes), under the conditions listed.
type Group struct {
	Effect Effect `json:"effect"`
	// Vendor is the contract the case's request was drawn for ("" a host no
	// contract covers); Route the route pattern its path was drawn from.
	Vendor     string `json:"vendor"`
	VendorName string `json:"vendor_name,omitempty"`
	Route      string `json:"route,omitempty"`
	// Random: fully random requests (any method, host, path, purpose).
	Random   bool     `json:"random,omitempty"`
	Methods  []string `json:"methods"`
	Purposes []string `json:"purposes"`
	// The conditions under which the cases differ, as the input space
	// names them; Any* says the group has every value the evaluated cases
	// had.
	Services   []string `json:"services"`
	AnyService bool     `json:"any_service"`
	Consents   []string `json:"consents"`
	AnyConsent bool     `json:"any_consent"`
	GPC        []bool   `json:"gpc"`
	AnyGPC     bool     `json:"any_gpc"`
	Legal      []string `json:"legal"`
	AnyLegal   bool     `json:"any_legal"`
	Cases      int      `json:"cases"`
	Changes    []Change `json:"changes"`
	// Example is the group's first case (lowest index) spelled plainly, or its
	// first case when every one is an odd spelling (see oddVariant).
	Example Example `json:"example"`
}

// Example is one case of a group, with both decisions.
type Example struct {
	Case    int             `json:"case"`
	Request string          `json:"request"`
	Purpose string          `json:"purpose"`
	Service string          `json:"service"`
	Consent string          `json:"consent"`
	GPC     bool            `json:"gpc"`
	Legal   string          `json:"legal"`
	Input   json.RawMessage `json:"input"`
	Old     Decision        `json:"old"`
	New     Decision        `json:"new"`
}

// Decision is a decision as the report shows it.
type Decision struct {
	Allow      bool              `json:"allow"`
	Code       string            `json:"code,omitempty"`
	Reason     string            `json:"reason"`
	Vendor     string            `json:"vendor,omitempty"`
	Route      string            `json:"route,omitempty"`
	Fields     []string          `json:"fields,omitempty"`
	Transforms map[string]string `json:"transforms,omitempty"`
	Query      []string          `json:"query,omitempty"`
	Headers    []string          `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	Cards      string            `json:"cards,omitempty"`
	TLS        bool              `json:"tls"`
	Port       int               `json:"port,omitempty"`
	DryRun     bool              `json:"dry_run,omitempty"`
}

func decisionOf(d *engine.Decision, err error) Decision {
	if err != nil {
		return Decision{Code: string(engine.CodeOf(err)), Reason: err.Error(), TLS: true}
	}
	if !d.Allow {
		return Decision{Code: string(d.Code), Reason: d.Reason, TLS: true}
	}
	return Decision{
		Allow: true, Reason: d.Reason, Vendor: d.Vendor, Route: d.Route,
		Fields: slices.Sorted(slices.Values(d.Fields)), Transforms: d.Transforms,
		Query: slices.Sorted(slices.Values(d.Query)), Headers: slices.Sorted(slices.Values(d.Headers)),
		Body: string(d.Body), Cards: cardsName(d.CardGuard()), TLS: d.TLS, Port: d.Port, DryRun: d.DryRun,
	}
}

// hmacKey is the engine's master key for the diff: transforms are compared
// by name, never by the values they produce.
var hmacKey = []byte("pare/policydiff")

// Compare decides every case of the input space of both policies' contracts
// (or a sample, see Options.Sample) under old and new, and groups the
// differences. Both policies are decided by one engine, exactly as serve
// decides (engine.Decide); a failure to decide is a refusal with its code
// (policy_error, policy_timeout), as a sidecar would answer it.
func Compare(ctx context.Context, old, new *Side, opt Options) (*Report, error) {
	start := time.Now()
	r := &Report{
		Old: sideInfo(old), New: sideInfo(new), Seed: opt.Seed,
		Counts: map[Effect]Count{}, VendorsAdded: []string{}, VendorsRemoved: []string{}, Notes: []string{}, Groups: []Group{}, Unverified: []string{},
	}
	oc, nc := old.Policy.Contracts, new.Policy.Contracts
	for id := range nc {
		if oc[id] == nil {
			r.VendorsAdded = append(r.VendorsAdded, id)
		}
	}
	for id := range oc {
		if nc[id] == nil {
			r.VendorsRemoved = append(r.VendorsRemoved, id)
		}
	}
	slices.Sort(r.VendorsAdded)
	slices.Sort(r.VendorsRemoved)
	sp := inputspace.New(inputspace.Union(oc, nc), inputspace.Options{Seed: opt.Seed})
	r.SpaceCases = sp.Len()
	for _, s := range []*Side{old, new} {
		if s.Policy.NeedsBody() {
			r.Notes = append(r.Notes, fmt.Sprintf("%s reads input.body; the input space has no bodies, so its decisions were made with a null body.", s.Label))
		}
	}
	if old.Policy.Revision == new.Policy.Revision {
		r.Identical = true
		r.Elapsed = time.Since(start)
		return r, nil
	}
	// The input space varies what the bundled policy reads; a NEW policy
	// that reads more (a header, a query parameter, the body) can let data
	// out on a value no case tries, unseen, and one that calls the clock can
	// decide otherwise tomorrow. Fail closed: say so, and count it as
	// widening. Builtins are compared by name: the bundled legal rule calls
	// io.jwt.decode_verify (non-deterministic: it checks expiry against the
	// clock), so "calls one" alone would flag every change. What OLD
	// already reads or calls, NEW may use in new places unseen: the input
	// space varies neither token expiry nor every header's value.
	oldReads := map[string]bool{}
	for _, x := range old.Policy.Reads() {
		oldReads[x] = true
	}
	for _, x := range new.Policy.Reads() {
		if !oldReads[x] || x == "body" {
			r.Unverified = append(r.Unverified, x)
		}
	}
	slices.Sort(r.Unverified)
	if len(r.Unverified) > 0 {
		r.Widens = true
		r.Notes = append(r.Notes, fmt.Sprintf("NEW decides on %s, which OLD does not read or the input space does not vary: what it lets out for other values is not verified here, so this counts as widening. Read the Rego.",
			strings.Join(r.Unverified, ", ")))
	}
	var idx []int
	if opt.Sample > 0 && opt.Sample < sp.Len() {
		idx = sp.Sample(opt.Sample)
		r.Sampled = true
		r.Notes = append(r.Notes, fmt.Sprintf("A sample of %d of the %d cases: differences outside it are not shown. Run without --sample before merging.", len(idx), sp.Len()))
	}
	n := sp.Len()
	if idx != nil {
		n = len(idx)
	}
	if opt.Filter != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("Only the cases of %s: differences elsewhere are not shown.", opt.Scope))
	}
	oldCat, err := contract.NewCatalog(oc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", old.Label, err)
	}
	newCat, err := contract.NewCatalog(nc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", new.Label, err)
	}
	e, err := engine.New(engine.Options{HMACKey: hmacKey, EvalTimeout: time.Minute})
	if err != nil {
		return nil, err
	}
	jobs := opt.Jobs
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	r.Jobs = jobs
	var (
		next      atomic.Int64
		evaluated atomic.Int64
		wg        sync.WaitGroup
		aggs      = make([]*aggregate, jobs)
	)
	const chunk = 64
	for w := range jobs {
		a := newAggregate()
		aggs[w] = a
		wg.Go(func() {
			for {
				if ctx.Err() != nil {
					return
				}
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				for j := lo; j < min(lo+chunk, n); j++ {
					i := j
					if idx != nil {
						i = idx[j]
					}
					c := sp.Case(i)
					if opt.Filter != nil && !opt.Filter(c.Dims) {
						continue
					}
					evaluated.Add(1)
					a.add(ctx, e, old, new, c, catalogs{oldCat, newCat})
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("policy diff: %w", err)
	}
	r.Evaluated = int(evaluated.Load())
	all := newAggregate()
	for _, a := range aggs {
		all.merge(a)
	}
	all.report(r, oc, nc)
	r.Elapsed = time.Since(start)
	return r, nil
}

func sideInfo(s *Side) SideInfo {
	return SideInfo{Source: s.Label, Kind: s.Kind, Commit: s.Commit, Revision: s.Policy.Revision}
}

type groupKey struct {
	random                bool
	vendor, route, method string
	purpose, sig          string
}

type partial struct {
	changes                    []Change
	cases                      int
	example                    int
	exampleOdd                 bool
	exampleCase                inputspace.Case
	exampleOld, exampleNew     Decision
	services, consents, legals map[string]bool
	gpc                        [2]bool
	methods, purposes          map[string]bool
}

// aggregate collects one worker's groups, and the values each dimension
// took over the systematic cases it decided (for "any service").
type aggregate struct {
	groups                     map[groupKey]*partial
	services, consents, legals map[string]bool
	gpc                        [2]bool
	failures                   map[string]int // "OLD policy_error" -> cases
	firstFailure               map[string]string
}

func newAggregate() *aggregate {
	return &aggregate{
		groups: map[groupKey]*partial{}, services: map[string]bool{}, consents: map[string]bool{}, legals: map[string]bool{},
		failures: map[string]int{}, firstFailure: map[string]string{},
	}
}

func gpcIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (a *aggregate) add(ctx context.Context, e *engine.Engine, old, new *Side, c inputspace.Case, k catalogs) {
	d := c.Dims
	if !d.Random {
		a.services[d.Service], a.consents[d.Consent], a.legals[d.Legal] = true, true, true
		a.gpc[gpcIndex(d.GPC)] = true
	}
	inA, inB := c.Input, c.Input
	da, errA := e.Decide(ctx, old.Policy, &inA, nil)
	db, errB := e.Decide(ctx, new.Policy, &inB, nil)
	a.failed("OLD", errA)
	a.failed("NEW", errB)
	changes := compare(disclosureOf(da, errA), disclosureOf(db, errB), k)
	if len(changes) == 0 {
		return
	}
	key := groupKey{random: d.Random, vendor: d.Vendor, route: d.Pattern, method: d.Method, purpose: d.Purpose, sig: signature(changes)}
	if d.Random {
		key.route, key.method, key.purpose = "", "", ""
	}
	g := a.groups[key]
	if g == nil {
		g = &partial{changes: changes, example: -1, services: map[string]bool{}, consents: map[string]bool{}, legals: map[string]bool{},
			methods: map[string]bool{}, purposes: map[string]bool{}}
		a.groups[key] = g
	}
	g.cases++
	g.services[d.Service], g.consents[d.Consent], g.legals[d.Legal] = true, true, true
	g.gpc[gpcIndex(d.GPC)] = true
	g.methods[d.Method], g.purposes[d.Purpose] = true, true
	if odd := oddVariant(c); g.example < 0 || better(odd, c.Index, g.exampleOdd, g.example) {
		g.example, g.exampleOdd, g.exampleCase = c.Index, odd, c
		g.exampleOld, g.exampleNew = decisionOf(da, errA), decisionOf(db, errB)
	}
}

func (a *aggregate) failed(side string, err error) {
	if err == nil {
		return
	}
	k := side + " " + string(engine.CodeOf(err))
	if a.failures[k] == 0 {
		a.firstFailure[k] = err.Error()
	}
	a.failures[k]++
}

func (a *aggregate) merge(b *aggregate) {
	for k, g := range b.groups {
		mergePartial(a.groups, k, g)
	}
	maps.Copy(a.services, b.services)
	maps.Copy(a.consents, b.consents)
	maps.Copy(a.legals, b.legals)
	a.gpc[0], a.gpc[1] = a.gpc[0] || b.gpc[0], a.gpc[1] || b.gpc[1]
	for k, n := range b.failures {
		if a.failures[k] == 0 || b.firstFailure[k] < a.firstFailure[k] {
			a.firstFailure[k] = b.firstFailure[k]
		}
		a.failures[k] += n
	}
}

func mergePartial[K comparable](into map[K]*partial, k K, g *partial) {
	t := into[k]
	if t == nil {
		c := *g
		c.services, c.consents, c.legals = maps.Clone(g.services), maps.Clone(g.consents), maps.Clone(g.legals)
		c.methods, c.purposes = maps.Clone(g.methods), maps.Clone(g.purposes)
		into[k] = &c
		return
	}
	t.cases += g.cases
	maps.Copy(t.services, g.services)
	maps.Copy(t.consents, g.consents)
	maps.Copy(t.legals, g.legals)
	maps.Copy(t.methods, g.methods)
	maps.Copy(t.purposes, g.purposes)
	t.gpc[0], t.gpc[1] = t.gpc[0] || g.gpc[0], t.gpc[1] || g.gpc[1]
	if better(g.exampleOdd, g.example, t.exampleOdd, t.example) {
		t.example, t.exampleOdd, t.exampleCase, t.exampleOld, t.exampleNew = g.example, g.exampleOdd, g.exampleCase, g.exampleOld, g.exampleNew
	}
}

// oddVariant reports whether a case's request is one of the space's odd
// spellings of its dimensions (a lower-case method, a padded or capitalised
// purpose, an upper-case host or one with a trailing dot): a group's example
// is its first case spelled plainly, when it has one, as a reader would
// write the request.
func oddVariant(c inputspace.Case) bool {
	in := &c.Input
	return in.Method != c.Dims.Method || in.Purpose != c.Dims.Purpose ||
		strings.HasSuffix(in.Host, ".") || strings.ToLower(in.Host) != in.Host
}

// better says whether the example candidate (odd, i) beats (curOdd, cur):
// a plain spelling first, then the lower index. Deterministic, whichever
// worker saw which case first.
func better(odd bool, i int, curOdd bool, cur int) bool {
	if odd != curOdd {
		return !odd
	}
	return i < cur
}

// report merges the groups of one vendor, route and set of changes that
// differ only in method and purpose but happen under the same conditions
// (so that "for support, from any service" is one group however many
// methods reach it), and fills r.
func (a *aggregate) report(r *Report, oc, nc map[string]*contract.Contract) {
	type mergeKey struct {
		random             bool
		vendor, route, sig string
		conds              string
	}
	merged := map[mergeKey]*partial{}
	for k, g := range a.groups {
		mk := mergeKey{random: k.random, vendor: k.vendor, route: k.route, sig: k.sig}
		if !k.random && effectOf(g.changes) != Info {
			mk.conds = strings.Join(slices.Sorted(maps.Keys(g.services)), ",") + "|" + strings.Join(slices.Sorted(maps.Keys(g.consents)), ",") +
				"|" + fmt.Sprint(g.gpc) + "|" + strings.Join(slices.Sorted(maps.Keys(g.legals)), ",")
		}
		mergePartial(merged, mk, g)
	}
	for k, g := range merged {
		grp := Group{
			Effect: effectOf(g.changes), Vendor: k.vendor, Route: k.route, Random: k.random,
			Methods: slices.Sorted(maps.Keys(g.methods)), Purposes: slices.Sorted(maps.Keys(g.purposes)),
			Services: slices.Sorted(maps.Keys(g.services)), Consents: sortedStates(g.consents, inputspace.ConsentStates),
			Legal: sortedStates(g.legals, inputspace.LegalStates), Cases: g.cases, Changes: g.changes,
		}
		if c := nc[k.vendor]; c != nil {
			grp.VendorName = c.Name
		} else if c := oc[k.vendor]; c != nil {
			grp.VendorName = c.Name
		}
		for i, on := range g.gpc {
			if on {
				grp.GPC = append(grp.GPC, i == 1)
			}
		}
		grp.AnyService = len(g.services) >= len(a.services) && !k.random
		grp.AnyConsent = len(g.consents) >= len(a.consents) && !k.random
		grp.AnyLegal = len(g.legals) >= len(a.legals) && !k.random
		grp.AnyGPC = g.gpc == a.gpc && !k.random
		in, _ := g.exampleCase.Input.MarshalJSON()
		d := g.exampleCase.Dims
		grp.Example = Example{
			Case: g.example, Request: requestLine(&g.exampleCase.Input), Purpose: g.exampleCase.Input.Purpose,
			Service: d.Service, Consent: d.Consent, GPC: d.GPC, Legal: d.Legal, Input: in,
			Old: g.exampleOld, New: g.exampleNew,
		}
		r.Groups = append(r.Groups, grp)
		r.Differing += g.cases
		cnt := r.Counts[grp.Effect]
		cnt.Groups++
		cnt.Cases += g.cases
		r.Counts[grp.Effect] = cnt
		if grp.Effect == Widens {
			r.Widens = true
		}
	}
	slices.SortFunc(r.Groups, compareGroups)
	for _, k := range slices.Sorted(maps.Keys(a.failures)) {
		side, code, _ := strings.Cut(k, " ")
		r.Notes = append(r.Notes, fmt.Sprintf("%s failed to decide %d cases (%s), which a sidecar refuses; the first: %s", side, a.failures[k], code, a.firstFailure[k]))
	}
}

func sortedStates(set map[string]bool, order []string) []string {
	out := make([]string, 0, len(set))
	for _, s := range order {
		if set[s] {
			out = append(out, s)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(set)) {
		if !slices.Contains(order, s) {
			out = append(out, s)
		}
	}
	return out
}

func compareGroups(x, y Group) int {
	if c := x.Effect.rank() - y.Effect.rank(); c != 0 {
		return c
	}
	if x.Random != y.Random {
		if x.Random {
			return 1
		}
		return -1
	}
	if (x.Vendor == "") != (y.Vendor == "") {
		if x.Vendor == "" {
			return 1
		}
		return -1
	}
	for _, c := range []int{
		strings.Compare(x.Vendor, y.Vendor), strings.Compare(x.Route, y.Route),
		slices.Compare(x.Methods, y.Methods), slices.Compare(x.Purposes, y.Purposes),
		y.Cases - x.Cases, x.Example.Case - y.Example.Case,
	} {
		if c != 0 {
			return c
		}
	}
	return 0
}

// requestLine is the request as an app would send it through the sidecar.
func requestLine(in *engine.Input) string {
	var b strings.Builder
	b.WriteString(in.Method)
	b.WriteByte(' ')
	scheme := in.Scheme
	if scheme == "" {
		scheme = "http"
	}
	b.WriteString(scheme + "://" + in.Host)
	if in.Port != 0 {
		fmt.Fprintf(&b, ":%d", in.Port)
	}
	b.WriteString(in.Path)
	if len(in.Query) > 0 {
		sep := "?"
		for _, k := range slices.Sorted(maps.Keys(in.Query)) {
			for _, v := range in.Query[k] {
				b.WriteString(sep + k + "=" + v)
				sep = "&"
			}
		}
	}
	return b.String()
}
