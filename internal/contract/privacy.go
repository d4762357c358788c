package contract

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/text/language"
)

// What a contract says its data is, for the documents of the privacy office (the report a person
// receives, the Art. 30 record, the data map). The policy never reads these keys: they describe
// what the enforcing keys (routes, fields, headers, query) let out, and validation holds the two
// together, so the paper cannot claim less than what leaves.

// Category is a category of personal data, as the Art. 30 record and a person's report name it.
type Category struct {
	ID    string // as written in a contract
	Words string // for people
}

// Categories are the data categories a contract may file what it sends under.
var Categories = []Category{
	{"identity", "identity"},
	{"contact", "contact details"},
	{"location", "location"},
	{"financial", "financial and transaction details"},
	{"payment_card", "payment card details"},
	{"online_identifiers", "online identifiers"},
	{"communications", "content of communications"},
	{"recordings", "audio and video recordings"},
	{"usage", "use of our services"},
	{"preferences", "preferences and consent choices"},
	{"legal", "legal proceedings"},
}

// CategoryWords returns the words for a category id, or the id itself when it is not one.
func CategoryWords(id string) string {
	for _, c := range Categories {
		if c.ID == id {
			return c.Words
		}
	}
	return id
}

// Basis is a lawful basis of processing, GDPR Art. 6(1).
type Basis struct {
	ID      string
	Words   string // for the person the data is about
	Article string
}

// Bases are the lawful bases a contract may give for a purpose.
var Bases = []Basis{
	{"consent", "your consent", "GDPR Art. 6(1)(a)"},
	{"contract", "to perform our contract with you", "GDPR Art. 6(1)(b)"},
	{"legal_obligation", "to comply with a legal obligation", "GDPR Art. 6(1)(c)"},
	{"vital_interests", "to protect someone's vital interests", "GDPR Art. 6(1)(d)"},
	{"public_task", "to perform a task in the public interest", "GDPR Art. 6(1)(e)"},
	{"legitimate_interests", "our legitimate interests", "GDPR Art. 6(1)(f)"},
}

// BasisOf returns the basis with id, and whether it is one.
func BasisOf(id string) (Basis, bool) {
	for _, b := range Bases {
		if b.ID == id {
			return b, true
		}
	}
	return Basis{ID: id, Words: id}, false
}

// Transfer is a safeguard for a transfer of personal data outside the EEA (GDPR Chapter V).
type Transfer struct {
	ID      string
	Words   string
	Article string
}

// Transfers are the transfer mechanisms a contract may name.
var Transfers = []Transfer{
	{"adequacy", "an adequacy decision of the European Commission", "GDPR Art. 45"},
	{"scc", "the European Commission's standard contractual clauses", "GDPR Art. 46(2)(c)"},
	{"bcr", "binding corporate rules", "GDPR Art. 47"},
	{"derogation", "a derogation for a specific situation", "GDPR Art. 49"},
}

// TransferOf returns the transfer mechanism with id, and whether it is one.
func TransferOf(id string) (Transfer, bool) {
	for _, t := range Transfers {
		if t.ID == id {
			return t, true
		}
	}
	return Transfer{ID: id, Words: id}, false
}

// eea: the EU member states, Iceland, Liechtenstein and Norway. A recipient there is no transfer.
var eea = map[string]bool{
	"AT": true, "BE": true, "BG": true, "HR": true, "CY": true, "CZ": true, "DK": true, "EE": true,
	"FI": true, "FR": true, "DE": true, "GR": true, "HU": true, "IE": true, "IT": true, "LV": true,
	"LT": true, "LU": true, "MT": true, "NL": true, "PL": true, "PT": true, "RO": true, "SK": true,
	"SI": true, "ES": true, "SE": true, "IS": true, "LI": true, "NO": true,
}

// adequate: countries with an adequacy decision of the European Commission in force (2025). The
// United States' covers only organisations certified under the EU-US Data Privacy Framework; the
// contract's comment should say the vendor is. Update this list when the Commission adopts or
// withdraws a decision: a contract that claims adequacy for another country fails to load.
var adequate = map[string]bool{
	"AD": true, "AR": true, "CA": true, "FO": true, "GG": true, "IL": true, "IM": true, "JP": true,
	"JE": true, "NZ": true, "KR": true, "CH": true, "GB": true, "UY": true, "US": true,
}

// InEEA reports whether an ISO 3166-1 alpha-2 country code is in the European Economic Area.
func InEEA(country string) bool { return eea[country] }

// countryNames are the English names the documents print. Written out rather than taken from
// golang.org/x/text/language/display, whose tables would add 2.5 MB to the sidecar's binary for a
// few dozen names: the EEA, the countries with an adequacy decision and common vendor locations.
// Another valid code prints as itself.
var countryNames = map[string]string{
	"AT": "Austria", "BE": "Belgium", "BG": "Bulgaria", "HR": "Croatia", "CY": "Cyprus", "CZ": "Czechia",
	"DK": "Denmark", "EE": "Estonia", "FI": "Finland", "FR": "France", "DE": "Germany", "GR": "Greece",
	"HU": "Hungary", "IE": "Ireland", "IT": "Italy", "LV": "Latvia", "LT": "Lithuania", "LU": "Luxembourg",
	"MT": "Malta", "NL": "Netherlands", "PL": "Poland", "PT": "Portugal", "RO": "Romania", "SK": "Slovakia",
	"SI": "Slovenia", "ES": "Spain", "SE": "Sweden", "IS": "Iceland", "LI": "Liechtenstein", "NO": "Norway",
	"AD": "Andorra", "AR": "Argentina", "CA": "Canada", "FO": "Faroe Islands", "GG": "Guernsey", "IL": "Israel",
	"IM": "Isle of Man", "JP": "Japan", "JE": "Jersey", "NZ": "New Zealand", "KR": "South Korea",
	"CH": "Switzerland", "GB": "United Kingdom", "UY": "Uruguay", "US": "United States",
	"AU": "Australia", "BR": "Brazil", "CN": "China", "HK": "Hong Kong", "IN": "India", "MX": "Mexico",
	"PH": "Philippines", "SG": "Singapore", "TW": "Taiwan", "TR": "Türkiye", "UA": "Ukraine",
	"AE": "United Arab Emirates", "ZA": "South Africa",
}

// CountryName is the English name of an ISO 3166-1 alpha-2 code ("US" → "United States"), or the
// code itself.
func CountryName(code string) string {
	if n, ok := countryNames[code]; ok {
		return n
	}
	return code
}

// purposeWords say the bundled purposes in words; another purpose is its id with spaces.
var purposeWords = map[string]string{
	"payment":            "payment processing",
	"support":            "customer support",
	"marketing":          "marketing emails",
	"opt_out":            "passing on an unsubscribe or erasure request",
	"event_registration": "registration for webinars and events",
	"hosting":            "hosting of recordings and website files",
	"processing":         "analytics within our group of companies",
	"storage":            "archiving within our group of companies",
	"legal":              "responding to legal process",
}

// PurposeWords says a purpose id in words.
func PurposeWords(p string) string {
	if w, ok := purposeWords[p]; ok {
		return w
	}
	return strings.ReplaceAll(p, "_", " ")
}

// Prefixes of the keys that name what a contract sends besides body fields.
const (
	QueryPrefix  = "query:"  // a query parameter: "query:expand"
	HeaderPrefix = "header:" // a request header: "header:authorization"
	BodyPrefix   = "body:"   // the whole body of an opaque route, by its path glob: "body:/recordings/**"
)

// Sends lists, once each and sorted, every key the contract lets out: body field and transform
// paths, "query:" parameters, "header:" names and the "body:" of each opaque route. These are the
// keys labels, categories and not_personal may name, the ledger's names with "body:" added.
func (c *Contract) Sends() []string {
	set := map[string]bool{}
	for _, h := range c.Headers {
		set[HeaderPrefix+h] = true
	}
	for _, r := range c.Routes {
		for _, f := range r.Fields {
			set[f] = true
		}
		for f := range r.Transforms {
			set[f] = true
		}
		for _, q := range r.Query {
			set[QueryPrefix+q] = true
		}
		for _, h := range r.Headers {
			set[HeaderPrefix+h] = true
		}
		if r.Body == BodyOpaque {
			set[BodyPrefix+r.Path] = true
		}
	}
	return sortedSet(set)
}

func sortedSet(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Declared reports whether the contract says what its data is (any of categories, not_personal,
// legal_basis, country, transfer, retention). A contract that does must say all of it; labels
// alone do not count, they are optional either way.
func (c *Contract) Declared() bool {
	return len(c.Categories) > 0 || len(c.NotPersonal) > 0 || len(c.LegalBasis) > 0 ||
		c.Country != "" || c.Transfer != "" || c.Retention != ""
}

// Item is what the contract says about one thing it sends.
type Item struct {
	// Key is the contract's name for it (a field path, "query:q", "header:h", "body:/glob");
	// "" when the contract names nothing that matches.
	Key         string
	Label       string   // plain words; "" when the contract has no label for it
	Categories  []string // category ids
	NotPersonal bool
}

// Personal reports whether the item carries personal data as far as the contract says: everything
// not declared not_personal does, except query parameters and headers the contract does not
// categorise (a contract that declares nothing has not said they carry any).
func (it Item) Personal() bool {
	if it.NotPersonal {
		return false
	}
	if len(it.Categories) > 0 {
		return true
	}
	k := it.Key
	return !strings.HasPrefix(k, QueryPrefix) && !strings.HasPrefix(k, HeaderPrefix)
}

// Item says what the contract says about a path as the ledger records it: a field path with "*"
// for array indexes, "query:q", "header:h", or a "body:" key. The key matches exactly, else
// segment by segment with "*" on either side matching any one segment, else the nearest key
// above it (a field whose whole subtree left). Key is "" when nothing matches.
func (c *Contract) Item(recorded string) Item {
	key := c.keyFor(recorded)
	it := Item{Key: key}
	if key == "" {
		if strings.HasPrefix(recorded, QueryPrefix) || strings.HasPrefix(recorded, HeaderPrefix) || strings.HasPrefix(recorded, BodyPrefix) {
			it.Key = recorded // keep the kind, so Personal tells a header from a field
		}
		return it
	}
	it.Label = c.Labels[key]
	for _, cat := range Categories {
		if slices.Contains(c.Categories[cat.ID], key) {
			it.Categories = append(it.Categories, cat.ID)
		}
	}
	it.NotPersonal = slices.Contains(c.NotPersonal, key)
	return it
}

func (c *Contract) keyFor(recorded string) string {
	if recorded == "" {
		return ""
	}
	keys := c.Sends()
	if _, ok := slices.BinarySearch(keys, recorded); ok {
		return recorded
	}
	if strings.Contains(recorded, ":") {
		return "" // query, header and body keys match exactly only
	}
	rs := strings.Split(recorded, "/")
	best, bestLen := "", 0
	for _, k := range keys {
		if strings.Contains(k, ":") {
			continue
		}
		ks := strings.Split(k, "/")
		switch {
		case len(ks) == len(rs) && segsMatch(ks, rs):
			return k
		case len(ks) < len(rs) && len(ks) > bestLen && segsMatch(ks, rs[:len(ks)]):
			best, bestLen = k, len(ks)
		}
	}
	return best
}

func segsMatch(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] && a[i] != "*" && b[i] != "*" {
			return false
		}
	}
	return true
}

// BasisFor is the lawful basis the contract gives for a purpose: the declared one; "consent" for
// a purpose outside the contract's list when other purposes need consent (the policy lets it out
// only with the person's granted consent for it); "" when the contract does not say.
func (c *Contract) BasisFor(purpose string) string {
	if b := c.LegalBasis[purpose]; b != "" {
		return b
	}
	if !slices.Contains(c.Purposes, purpose) && c.OtherPurposes != OtherPurposesDeny {
		return "consent"
	}
	return ""
}

// consentGated reports whether the policy requires the subject's granted consent before purpose
// leaves under this contract (egress.rego): purpose marketing anywhere, and any purpose a
// marketing recipient serves on a route that is not an opt-out.
func (c *Contract) consentGated(purpose string) bool {
	if purpose == "marketing" {
		return true
	}
	if !c.Marketing {
		return false
	}
	for _, r := range c.Routes {
		if r.OptOut {
			continue
		}
		if len(r.Purposes) == 0 || slices.Contains(r.Purposes, purpose) {
			return true
		}
	}
	return false
}

// privacy validates the keys that say what the data is.
func (p *problems) privacy() {
	c := p.c
	sends := c.Sends()
	sent := map[string]bool{}
	for _, k := range sends {
		sent[k] = true
	}

	for _, k := range mapKeys(c.Labels) {
		line := c.at("labels", k)
		if p.sentKey(line, "labels", k, sends, sent) {
			v := c.Labels[k]
			switch {
			case strings.TrimSpace(v) == "":
				p.add(line, "labels: %q: the label is empty", k)
			case strings.TrimSpace(v) != v || strings.ContainsAny(v, "\r\n\t"):
				p.add(line, "labels: %q: one line, no leading or trailing spaces", k)
			case len(v) > 80:
				p.add(line, "labels: %q: %d characters; a label is a few words (at most 80)", k, len(v))
			}
		}
	}

	covered := map[string]bool{}
	cats := make([]string, 0, len(c.Categories))
	for cat := range c.Categories {
		cats = append(cats, cat)
	}
	sort.Strings(cats)
	for _, cat := range cats {
		if !slices.ContainsFunc(Categories, func(x Category) bool { return x.ID == cat }) {
			ids := make([]string, len(Categories))
			for i, x := range Categories {
				ids[i] = x.ID
			}
			p.add(c.at("categories", cat), "categories: %q: want one of %s", cat, strings.Join(ids, ", "))
		}
		if len(c.Categories[cat]) == 0 {
			p.add(c.at("categories", cat), "categories: %s: no paths (remove it, or name what is in it)", cat)
		}
		seen := map[string]bool{}
		for i, k := range c.Categories[cat] {
			line := c.at("categories", cat, i)
			if seen[k] {
				p.add(line, "categories: %s: %q is listed twice", cat, k)
			}
			seen[k] = true
			if p.sentKey(line, "categories: "+cat, k, sends, sent) {
				covered[k] = true
			}
		}
	}

	notPersonal := map[string]bool{}
	for i, k := range c.NotPersonal {
		line := c.at("not_personal", i)
		if notPersonal[k] {
			p.add(line, "not_personal: %q is listed twice", k)
		}
		notPersonal[k] = true
		if !p.sentKey(line, "not_personal", k, sends, sent) {
			continue
		}
		if covered[k] {
			p.add(line, "not_personal: %q is also in a data category: it is personal data or it is not", k)
		}
		if isCardField(k) {
			p.add(line, "not_personal: %q is card data, which is personal data (category payment_card)", k)
		}
	}

	for _, pu := range mapKeys(c.LegalBasis) {
		line := c.at("legal_basis", pu)
		if !slices.Contains(c.Purposes, pu) {
			p.add(line, "legal_basis: purpose %q is not among the contract's purposes", pu)
			continue
		}
		b := c.LegalBasis[pu]
		if _, ok := BasisOf(b); !ok {
			ids := make([]string, len(Bases))
			for i, x := range Bases {
				ids[i] = x.ID
			}
			p.add(line, "legal_basis: %s: %q: want one of %s", pu, b, strings.Join(ids, ", "))
			continue
		}
		gated := c.consentGated(pu)
		switch {
		case gated && b != "consent":
			p.add(line, "legal_basis: %s: the policy sends this purpose only with the person's granted consent, so its basis is consent, not %s", pu, b)
		case !gated && b == "consent":
			p.add(line, "legal_basis: %s: consent, but the policy does not check consent for this purpose (only for marketing, a marketing recipient's routes and purposes outside the contract): name the basis it is sent on", pu)
		}
	}

	if c.Country != "" {
		line := c.at("country")
		r, err := language.ParseRegion(c.Country)
		switch {
		case len(c.Country) != 2 || c.Country != strings.ToUpper(c.Country) || err != nil || !r.IsCountry() || r.String() != c.Country:
			p.add(line, "country %q: want an ISO 3166-1 alpha-2 code in capitals (US, IE, DE)", c.Country)
		case eea[c.Country] && c.Transfer != "":
			p.add(c.at("transfer"), "transfer %q: %s is in the EEA, no transfer mechanism applies (remove it)", c.Transfer, c.Country)
		case !eea[c.Country] && c.Transfer == "":
			p.add(line, "country %s is outside the EEA: say the transfer mechanism (transfer: %s)", c.Country, transferIDs())
		case c.Transfer == "adequacy" && !adequate[c.Country]:
			p.add(c.at("transfer"), "transfer adequacy: the European Commission has no adequacy decision for %s (%s); name the safeguard used", c.Country, CountryName(c.Country))
		}
	}
	if c.Transfer != "" {
		if _, ok := TransferOf(c.Transfer); !ok {
			p.add(c.at("transfer"), "transfer %q: want one of %s", c.Transfer, transferIDs())
		}
	}
	if c.Retention != "" {
		if strings.TrimSpace(c.Retention) != c.Retention || strings.ContainsAny(c.Retention, "\r\n\t") || len(c.Retention) > 200 {
			p.add(c.at("retention"), "retention: one line of at most 200 characters, no leading or trailing spaces")
		}
	}

	if !c.Declared() {
		return
	}
	// A contract that says what its data is says all of it: the record of processing and the
	// report a person gets must not be silent about something that leaves.
	top := c.line()
	if len(c.Categories) == 0 {
		p.add(top, "categories: required once the contract says what its data is (it has %s)", declaredKeys(c))
	}
	for _, k := range sends {
		if !covered[k] && !notPersonal[k] {
			p.add(top, "%q leaves under this contract but is in no data category and not in not_personal: say what it is", k)
		}
		if isCardField(k) && !slices.Contains(c.Categories["payment_card"], k) && !strings.Contains(k, ":") {
			p.add(top, "%q is card data: file it under categories: payment_card", k)
		}
	}
	for _, pu := range c.Purposes {
		if c.LegalBasis[pu] == "" {
			p.add(c.at("legal_basis"), "legal_basis: purpose %s has none: every purpose needs its lawful basis (GDPR Art. 6)", pu)
		}
	}
	if c.Country == "" {
		p.add(top, "country: required once the contract says what its data is: where the vendor processes it (ISO 3166-1 alpha-2)")
	}
	if c.Retention == "" {
		p.add(top, "retention: required once the contract says what its data is: how long the vendor keeps it")
	}
}

// sentKey checks that k names something the contract sends, and says why not.
func (p *problems) sentKey(line int, where, k string, sends []string, sent map[string]bool) bool {
	if sent[k] {
		return true
	}
	why := "no route sends it"
	switch {
	case strings.HasPrefix(k, QueryPrefix):
		why = "no route lists this query parameter"
	case strings.HasPrefix(k, HeaderPrefix):
		why = "neither the contract nor a route lists this header"
	case strings.HasPrefix(k, BodyPrefix):
		why = "no opaque route has this path (body: keys name an opaque route's whole body)"
	default:
		var below []string
		for _, s := range sends {
			switch {
			case strings.EqualFold(s, k):
				why = fmt.Sprintf("no route sends it; paths are case-sensitive and a route sends %q", s)
			case !strings.Contains(s, ":") && above(s, k):
				why = fmt.Sprintf("a route sends all of %q, and the ledger records it as that: name %q", s, s)
			case !strings.Contains(s, ":") && above(k, s):
				below = append(below, s)
			}
		}
		if len(below) > 0 && why == "no route sends it" {
			why = "no route sends it as a whole; name what routes send: " + strings.Join(below, ", ")
		}
	}
	p.add(line, "%s: %q: %s", where, k, why)
	return false
}

func transferIDs() string {
	ids := make([]string, len(Transfers))
	for i, t := range Transfers {
		ids[i] = t.ID
	}
	return strings.Join(ids, ", ")
}

func declaredKeys(c *Contract) string {
	var ks []string
	for _, kv := range []struct {
		k  string
		on bool
	}{{"not_personal", len(c.NotPersonal) > 0}, {"legal_basis", len(c.LegalBasis) > 0},
		{"country", c.Country != ""}, {"transfer", c.Transfer != ""}, {"retention", c.Retention != ""}} {
		if kv.on {
			ks = append(ks, kv.k)
		}
	}
	return strings.Join(ks, ", ")
}
