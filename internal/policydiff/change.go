package policydiff

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
)

// Effect says what a change does to disclosure.
type Effect string

const (
	// Widens: more leaves, or leaves more readably, or to another place: a
	// refusal lifted, a field, parameter, header or category that starts
	// leaving, a transform loosened, cards loosened, a body forwarded
	// whole, plain HTTP, another port or recipient, dry run switched on.
	Widens Effect = "widens"
	// Narrows: less leaves.
	Narrows Effect = "narrows"
	// Neutral: nothing more or less leaves, but the outcome differs (another
	// refusal code, another card refusal code).
	Neutral Effect = "neutral"
	// Info: only the reason text or the matched route pattern differ.
	Info Effect = "info"
)

func (e Effect) rank() int {
	switch e {
	case Widens:
		return 0
	case Narrows:
		return 1
	case Neutral:
		return 2
	}
	return 3
}

// Kinds of Change.
const (
	KindStarts         = "starts"          // Item starts leaving (a field path, query:NAME, header:NAME, body:ROUTE)
	KindStops          = "stops"           // Item stops leaving
	KindTransform      = "transform"       // Item leaves transformed otherwise: Old, New are transforms, "" sent as is
	KindCategoryStarts = "category_starts" // a data category (Item) starts leaving to Vendor on this request
	KindCategoryStops  = "category_stops"  // a data category stops leaving
	KindRefusalLifted  = "refusal_lifted"  // refused (Old: the code) before, allowed now
	KindRefused        = "refused"         // allowed before, refused now (New: the code)
	KindRefusalCode    = "refusal_code"    // refused both times, with another code
	KindVendor         = "vendor"          // another recipient
	KindBody           = "body"            // body mode: none < filter < opaque
	KindCards          = "cards"           // card guard: block < redact < allow
	KindCardsCode      = "cards_code"      // the code of a card refusal
	KindTLS            = "tls"             // "true"/"false"
	KindPort           = "port"
	KindDryRun         = "dry_run"
	KindRoute          = "route" // the matched route pattern (Info)
	KindReason         = "reason"
)

// Change is one way a case's decision under NEW differs from OLD's.
type Change struct {
	Effect Effect `json:"effect"`
	Kind   string `json:"kind"`
	// Vendor is the recipient the change concerns (the decision's vendor).
	Vendor string `json:"vendor,omitempty"`
	// Item is what starts or stops leaving: a field path as the decision
	// names it, "query:NAME", "header:NAME", "body:ROUTE" for a body
	// forwarded whole; or a data category id.
	Item string `json:"item,omitempty"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
	// Label and Categories say what Item is, from the contract that sends
	// it: NEW's for what starts (or changes), OLD's for what stops.
	Label      string   `json:"label,omitempty"`
	Categories []string `json:"categories,omitempty"`
	// Personal is false for an item the contract declares not personal.
	Personal bool `json:"personal"`
}

func (c Change) key() string {
	return c.Kind + "\x1f" + c.Vendor + "\x1f" + c.Item + "\x1f" + c.Old + "\x1f" + c.New
}

// disclosure is what a decision lets leave, in comparable form. A refusal
// (or a failure to decide, which is refused too) lets nothing leave.
type disclosure struct {
	allow     bool
	code      string
	vendor    string
	route     string
	reason    string
	items     map[string]string // item -> transform ("" as is)
	body      engine.BodyMode
	cards     string // effective guard
	cardsCode string
	tls       bool
	port      int
	dryRun    bool
}

func disclosureOf(d *engine.Decision, err error) disclosure {
	if err != nil {
		return disclosure{code: string(engine.CodeOf(err)), reason: err.Error()}
	}
	if !d.Allow {
		return disclosure{code: string(d.Code), reason: d.Reason, route: d.Route}
	}
	x := disclosure{
		allow: true, vendor: d.Vendor, route: d.Route, reason: d.Reason, body: d.Body,
		cards: cardsName(d.CardGuard()), cardsCode: string(d.CardsCode), tls: d.TLS, port: d.Port, dryRun: d.DryRun,
		items: make(map[string]string, len(d.Fields)+len(d.Transforms)+len(d.Query)+len(d.Headers)+1),
	}
	switch d.Body {
	case engine.BodyFilter:
		for _, f := range d.Fields {
			x.items[f] = ""
		}
		maps.Copy(x.items, d.Transforms)
	case engine.BodyOpaque:
		x.items[contract.BodyPrefix+d.Route] = ""
	}
	for _, q := range d.Query {
		x.items[contract.QueryPrefix+q] = ""
	}
	for _, h := range d.Headers {
		x.items[contract.HeaderPrefix+strings.ToLower(h)] = ""
	}
	return x
}

func cardsName(g filters.CardGuard) string {
	switch g {
	case filters.CardsAllow:
		return "allow"
	case filters.CardsRedact:
		return "redact"
	}
	return "block"
}

// catalogs answer what an item is under each policy.
type catalogs struct{ old, new *contract.Catalog }

// describe fills in what the contract says c.Item is. An item that sends
// a whole subtree ("ticket") carries the categories of every key the
// contract sends below it ("ticket/requester/email": contact) besides its
// own.
func describe(k *contract.Catalog, c *Change) {
	it := k.Item(c.Vendor, c.Item)
	c.Label, c.Categories, c.Personal = it.Label, itemCategories(k, c.Vendor, c.Item, it), it.Personal()
}

func itemCategories(k *contract.Catalog, vendor, item string, it contract.Item) []string {
	if strings.Contains(item, ":") {
		return it.Categories
	}
	set := map[string]bool{}
	for _, c := range it.Categories {
		set[c] = true
	}
	below := map[string]string{item: ""}
	for _, key := range k.Sends(vendor) {
		if key != item && covered(key, "", below) {
			for _, c := range k.Item(vendor, key).Categories {
				set[c] = true
			}
		}
	}
	if len(set) == len(it.Categories) {
		return it.Categories
	}
	var out []string
	for _, c := range contract.Categories { // in the contract package's order, as Item lists them
		if set[c.ID] {
			out = append(out, c.ID)
		}
	}
	return out
}

// compare lists how b (NEW) differs from a (OLD), sorted; nil when they
// agree on everything but nothing.
func compare(a, b disclosure, k catalogs) []Change {
	var out []Change
	add := func(e Effect, kind, vendor, item, old, new string) {
		out = append(out, Change{Effect: e, Kind: kind, Vendor: vendor, Item: item, Old: old, New: new})
	}
	switch {
	case !a.allow && !b.allow:
		switch {
		case a.code != b.code:
			add(Neutral, KindRefusalCode, "", "", a.code, b.code)
		case a.reason != b.reason:
			add(Info, KindReason, "", "", "", "")
		}
		return out
	case !a.allow:
		add(Widens, KindRefusalLifted, b.vendor, "", a.code, "")
		out = append(out, items(disclosure{}, b, k)...)
		out = append(out, notable(b)...)
	case !b.allow:
		add(Narrows, KindRefused, a.vendor, "", "", b.code)
		out = append(out, items(a, disclosure{}, k)...)
	default:
		if a.vendor != b.vendor {
			add(Widens, KindVendor, "", "", a.vendor, b.vendor)
			out = append(out, items(a, disclosure{vendor: b.vendor, items: nil}, k)...)
			out = append(out, items(disclosure{vendor: a.vendor}, b, k)...)
			out = append(out, notable(b)...)
			break
		}
		out = append(out, items(a, b, k)...)
		v := b.vendor
		if r := bodyRank(b.body) - bodyRank(a.body); r != 0 {
			add(ordered(r), KindBody, v, "", string(a.body), string(b.body))
		}
		if r := cardsRank(b.cards) - cardsRank(a.cards); r != 0 {
			add(ordered(r), KindCards, v, "", a.cards, b.cards)
		}
		if a.cardsCode != b.cardsCode && (a.cards == "block" || b.cards == "block") {
			add(Neutral, KindCardsCode, v, "", a.cardsCode, b.cardsCode)
		}
		if a.tls != b.tls {
			e := Narrows
			if !b.tls {
				e = Widens
			}
			add(e, KindTLS, v, "", strconv.FormatBool(a.tls), strconv.FormatBool(b.tls))
		}
		// Another port is another service on the vendor's host: data that
		// goes somewhere it did not go before, for a reviewer to look at.
		if a.port != b.port {
			add(Widens, KindPort, v, "", strconv.Itoa(a.port), strconv.Itoa(b.port))
		}
		if a.dryRun != b.dryRun {
			e := Narrows
			if b.dryRun {
				e = Widens // the original payload leaves
			}
			add(e, KindDryRun, v, "", strconv.FormatBool(a.dryRun), strconv.FormatBool(b.dryRun))
		}
		if len(out) == 0 {
			switch {
			case a.route != b.route:
				add(Info, KindRoute, v, "", a.route, b.route)
			case a.reason != b.reason:
				add(Info, KindReason, v, "", "", "")
			}
		}
	}
	slices.SortFunc(out, compareChanges)
	return out
}

// kindOrder is the order a group lists its changes in, as a reader asks:
// is it refused, where does it go, what leaves, what does that mean, how.
var kindOrder = map[string]int{
	KindRefusalLifted: 0, KindRefused: 1, KindRefusalCode: 2, KindVendor: 3,
	KindStarts: 4, KindTransform: 5, KindStops: 6, KindCategoryStarts: 7, KindCategoryStops: 8,
	KindBody: 9, KindCards: 10, KindCardsCode: 11, KindTLS: 12, KindPort: 13, KindDryRun: 14,
	KindRoute: 15, KindReason: 16,
}

// compareChanges orders changes by kind (kindOrder), then body fields
// before query parameters and headers, then by name.
func compareChanges(x, y Change) int {
	if c := kindOrder[x.Kind] - kindOrder[y.Kind]; c != 0 {
		return c
	}
	if c := itemRank(x.Item) - itemRank(y.Item); c != 0 {
		return c
	}
	return strings.Compare(x.key(), y.key())
}

func itemRank(item string) int {
	switch {
	case strings.HasPrefix(item, contract.BodyPrefix):
		return 0
	case strings.HasPrefix(item, contract.QueryPrefix):
		return 2
	case strings.HasPrefix(item, contract.HeaderPrefix):
		return 3
	}
	return 1
}

// notable lists what an allowed decision that replaces a refusal (or goes
// to another recipient) does beyond the items it lets out: the card guard
// when it lets card numbers through in some form, plain HTTP, a port other
// than the scheme's, dry run.
func notable(b disclosure) []Change {
	var out []Change
	if b.cards != "block" {
		out = append(out, Change{Effect: Widens, Kind: KindCards, Vendor: b.vendor, New: b.cards})
	}
	if b.body == engine.BodyOpaque {
		out = append(out, Change{Effect: Widens, Kind: KindBody, Vendor: b.vendor, New: string(b.body)})
	}
	if !b.tls {
		out = append(out, Change{Effect: Widens, Kind: KindTLS, Vendor: b.vendor, New: "false"})
	}
	if (b.tls && b.port != 443) || (!b.tls && b.port != 80) {
		out = append(out, Change{Effect: Widens, Kind: KindPort, Vendor: b.vendor, New: strconv.Itoa(b.port)})
	}
	if b.dryRun {
		out = append(out, Change{Effect: Widens, Kind: KindDryRun, Vendor: b.vendor, New: "true"})
	}
	return out
}

func ordered(r int) Effect {
	if r > 0 {
		return Widens
	}
	return Narrows
}

func bodyRank(m engine.BodyMode) int {
	switch m {
	case engine.BodyNone:
		return 0
	case engine.BodyFilter:
		return 1
	}
	return 2 // opaque: the whole body, unparsed
}

func cardsRank(c string) int {
	switch c {
	case "block":
		return 0
	case "redact":
		return 1 // no card number leaves, but the request does where block refuses it
	}
	return 2
}

// items lists the items (and data categories) that start or stop leaving,
// or leave transformed otherwise, between a and b. An item covered by a
// broader one on the other side (a field path below a field sent whole,
// "items/0/sku" below "items/*/sku") neither starts nor stops: it leaves
// either way, and the broader item is what the report names.
func items(a, b disclosure, k catalogs) []Change {
	var out []Change
	for _, it := range slices.Sorted(maps.Keys(b.items)) {
		how := b.items[it]
		old, ok := a.items[it]
		switch {
		case ok && old != how:
			c := Change{Effect: transformEffect(old, how), Kind: KindTransform, Vendor: b.vendor, Item: it, Old: old, New: how}
			describe(k.new, &c)
			out = append(out, c)
		case !ok && !covered(it, how, a.items):
			c := Change{Effect: Widens, Kind: KindStarts, Vendor: b.vendor, Item: it, New: how}
			describe(k.new, &c)
			out = append(out, c)
		}
	}
	for _, it := range slices.Sorted(maps.Keys(a.items)) {
		if _, ok := b.items[it]; !ok && !covered(it, a.items[it], b.items) {
			c := Change{Effect: Narrows, Kind: KindStops, Vendor: a.vendor, Item: it, Old: a.items[it]}
			describe(k.old, &c)
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil
	}
	ca, cb := categories(k.old, a), categories(k.new, b)
	for _, cat := range slices.Sorted(maps.Keys(cb)) {
		if !ca[cat] {
			out = append(out, Change{Effect: Widens, Kind: KindCategoryStarts, Vendor: b.vendor, Item: cat, Personal: true})
		}
	}
	for _, cat := range slices.Sorted(maps.Keys(ca)) {
		if !cb[cat] {
			out = append(out, Change{Effect: Narrows, Kind: KindCategoryStops, Vendor: a.vendor, Item: cat, Personal: true})
		}
	}
	return out
}

func categories(k *contract.Catalog, d disclosure) map[string]bool {
	out := map[string]bool{}
	for it := range d.items {
		for _, c := range itemCategories(k, d.vendor, it, k.Item(d.vendor, it)) {
			out[c] = true
		}
	}
	return out
}

// covered reports whether item (sent with transform how) leaves as part of
// a broader field of set: one whose path is a prefix of item's, segment by
// segment, "*" in the broader path matching any segment, and which is sent
// as is or with the same transform.
func covered(item, how string, set map[string]string) bool {
	if strings.Contains(item, ":") {
		return false // query, header and body items are exact
	}
	segs := strings.Split(item, "/")
	for other, h := range set {
		if other == item || strings.Contains(other, ":") || (h != "" && h != how) {
			continue
		}
		os := strings.Split(other, "/")
		if len(os) > len(segs) {
			continue
		}
		match := true
		for i := range os {
			if os[i] != segs[i] && os[i] != "*" {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// transformEffect judges a field that leaves transformed otherwise. Sent as
// is reveals most and redact least; between other transforms (hmac, last4,
// year, truncate:N) there is no order, and a change is counted as widening
// for a reviewer to judge — except a shorter truncation.
func transformEffect(old, new string) Effect {
	switch {
	case new == "":
		return Widens
	case old == "":
		return Narrows
	case new == "redact":
		return Narrows
	case old == "redact":
		return Widens
	}
	if o, ok := truncation(old); ok {
		if n, ok := truncation(new); ok && n < o {
			return Narrows
		}
	}
	return Widens
}

func truncation(t string) (int, bool) {
	s, ok := strings.CutPrefix(t, "truncate:")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// effectOf is the strongest effect of changes: a group that widens in one
// respect and narrows in another widens.
func effectOf(cs []Change) Effect {
	e := Info
	for _, c := range cs {
		if c.Effect.rank() < e.rank() {
			e = c.Effect
		}
	}
	return e
}

func signature(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.key())
		b.WriteByte('\x1e')
	}
	return b.String()
}
