package contract

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
)

func bundled(t *testing.T) map[string]*Contract {
	t.Helper()
	cs, err := LoadDir("../../policies/contracts")
	if err != nil {
		t.Fatalf("bundled contracts:\n%v", err)
	}
	return cs
}

// Every bundled contract says what its data is, completely (validation holds a declared contract
// to that), and gives every personal thing it sends a label: a person's report must not fall back
// to API names.
func TestBundledContractsDeclareTheirData(t *testing.T) {
	for id, c := range bundled(t) {
		if !c.Declared() {
			t.Errorf("%s: says nothing about what its data is", id)
			continue
		}
		for _, k := range c.Sends() {
			it := c.Item(k)
			if it.Key != k {
				t.Errorf("%s: Item(%q).Key = %q", id, k, it.Key)
			}
			if it.Personal() && it.Label == "" {
				t.Errorf("%s: %q is personal data without a label", id, k)
			}
		}
	}
}

func TestItem(t *testing.T) {
	c := bundled(t)["eventbrite"]
	s := bundled(t)["stripe"]
	h := bundled(t)["hosting"]
	for _, tc := range []struct {
		c              *Contract
		recorded       string
		key, label     string
		cats           []string
		personal, none bool
	}{
		{c, "email", "email", "email address", []string{"contact"}, true, false},
		{c, "attendees/*/first_name", "attendees/*/first_name", "first name", []string{"identity"}, true, false},
		{c, "attendees/3/first_name", "attendees/*/first_name", "first name", []string{"identity"}, true, false},
		{c, "header:authorization", "header:authorization", "", nil, false, false},
		{c, "header:x-unknown", "header:x-unknown", "", nil, false, true},
		{c, "company", "", "", nil, true, true},
		{s, "payment_method_data/card/number", "payment_method_data/card/number", "card number", []string{"payment_card"}, true, false},
		{s, "address/postal_code", "address/postal_code", "postal code", []string{"location"}, true, false},
		{s, "confirm", "confirm", "", nil, false, false},
		{h, "body:/recordings/**", "body:/recordings/**", "webinar recording (video and audio)", []string{"recordings"}, true, false},
		{h, "body:/assets/**", "body:/assets/**", "website files (images, style sheets)", nil, false, false},
	} {
		it := tc.c.Item(tc.recorded)
		if tc.none && it.Key != "" && it.Key != tc.recorded {
			t.Errorf("%s %q: key %q, want none", tc.c.ID, tc.recorded, it.Key)
		}
		if !tc.none && (it.Key != tc.key || it.Label != tc.label || !slices.Equal(it.Categories, tc.cats)) {
			t.Errorf("%s %q: got %+v", tc.c.ID, tc.recorded, it)
		}
		if it.Personal() != tc.personal {
			t.Errorf("%s %q: personal %v, want %v", tc.c.ID, tc.recorded, it.Personal(), tc.personal)
		}
	}
	// The nearest key above a deeper recorded path (a kept subtree's root is what the ledger
	// records, but a deeper one still finds its field).
	cs := &Contract{Routes: []Route{{Fields: []string{"metadata", "metadata/order/id"}}},
		Labels: map[string]string{"metadata": "metadata", "metadata/order/id": "order"}}
	if got := cs.Item("metadata/order/id/x").Key; got != "metadata/order/id" {
		t.Errorf("deepest ancestor: got %q", got)
	}
	if got := cs.Item("metadata/other").Key; got != "metadata" {
		t.Errorf("ancestor: got %q", got)
	}
}

func TestBasisFor(t *testing.T) {
	cs := bundled(t)
	for _, tc := range []struct{ vendor, purpose, want string }{
		{"stripe", "payment", "contract"},
		{"mailchimp", "marketing", "consent"},
		{"mailchimp", "opt_out", "legal_obligation"},
		{"legal", "legal", "legal_obligation"},
		{"zendesk", "product_research", "consent"}, // off contract: the policy needs the person's consent for it
		{"sister", "marketing", ""},                // other_purposes: deny: nothing can send it
	} {
		if got := cs[tc.vendor].BasisFor(tc.purpose); got != tc.want {
			t.Errorf("%s/%s: %q, want %q", tc.vendor, tc.purpose, got, tc.want)
		}
	}
}

// The catalog picks the route the policy picks: its globs are matched with OPA's own glob.match
// semantics ("/" delimiter), checked here against OPA itself.
func TestCatalogRouteMatchesOPA(t *testing.T) {
	cs := bundled(t)
	k, err := NewCatalog(cs)
	if err != nil {
		t.Fatal(err)
	}
	q, err := rego.New(rego.Query(`x := glob.match(input.pattern, ["/"], input.path)`)).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/api/v2/tickets", "/api/v2/tickets.json", "/api/v2/tickets.xml", "/api/v2/tickets/42",
		"/recordings/2026/wb_101.mp4", "/recordings", "/assets/site.css", "/v3/events/wb_1/attendees/",
		"/v3/events/wb_1/attendees/batch/", "/v3/events/a/b/attendees/", "/3.0/lists/a1/members",
		"/3.0/lists/a1/members/abc", "/3.0/lists/a1/members/abc/actions/delete-permanent", "/v1/customers/cus_1",
		"/v1/customers", "/v1/archive/recordings/x/y.mp4", "/v1/events"}
	checked := 0
	for _, vendor := range k.Vendors() {
		c := cs[vendor]
		for _, path := range paths {
			for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
				want := -1
				for i, r := range c.Routes {
					if !slices.Contains(r.Methods, method) {
						continue
					}
					rs, err := q.Eval(context.Background(), rego.EvalInput(map[string]any{"pattern": r.Path, "path": path}))
					if err != nil {
						t.Fatal(err)
					}
					if rs[0].Bindings["x"] == true {
						want = i
						break
					}
				}
				if got := k.Route(vendor, method, path); got != want {
					t.Errorf("%s %s %s: route %d, OPA says %d", vendor, method, path, got, want)
				}
				if want >= 0 {
					checked++
				}
			}
		}
	}
	if checked < 15 {
		t.Fatalf("only %d matching cases: the table no longer exercises the routes", checked)
	}
	if got := k.Route("zendesk", "POST", "/api/v2/tickets.json?x=1"); got != 0 {
		t.Errorf("a query string is not part of the path: route %d", got)
	}
	if got := k.Route("nobody", "GET", "/"); got != -1 {
		t.Errorf("unknown vendor: route %d", got)
	}
	// The ledger records a route's pattern, not the concrete path: each
	// pattern is its own route, including one that does not match its
	// own glob.
	for _, vendor := range k.Vendors() {
		for i, r := range cs[vendor].Routes {
			if got := k.Route(vendor, r.Methods[0], r.Path); got != i && !earlierRouteTakes(cs[vendor].Routes, i, r.Methods[0]) {
				t.Errorf("%s %s %s (a recorded pattern): route %d, want %d", vendor, r.Methods[0], r.Path, got, i)
			}
		}
	}
}

// earlierRouteTakes says an earlier route of the same method would take
// the pattern's path (first match wins in the policy too).
func earlierRouteTakes(routes []Route, i int, method string) bool {
	for _, r := range routes[:i] {
		if slices.Contains(r.Methods, method) && r.Path == routes[i].Path {
			return true
		}
	}
	return false
}

func TestCatalogSent(t *testing.T) {
	k, err := NewCatalog(bundled(t))
	if err != nil {
		t.Fatal(err)
	}
	got := k.Sent("hosting", "PUT", "/recordings/2026/a.mp4", []string{"header:content-type"})
	if !slices.Equal(got, []string{"header:content-type", "body:/recordings/**"}) {
		t.Errorf("opaque route: %v", got)
	}
	if got := k.Sent("hosting", "DELETE", "/recordings/2026/a.mp4", nil); len(got) != 0 {
		t.Errorf("a body: none route sends no body: %v", got)
	}
	if it := k.Item("stripe", "metadata/crm_id"); it.Label != "customer reference" || !it.Personal() {
		t.Errorf("stripe crm_id: %+v", it)
	}
}

// Validation of the privacy keys in code-built contracts: the EEA and completeness rules.
func TestPrivacyValidation(t *testing.T) {
	base := func() *Contract {
		return &Contract{ID: "v", Name: "V", Reference: "R", Role: "support", Hosts: []string{"v.example"},
			Purposes: []string{"support"}, Headers: []string{"authorization"},
			Routes: []Route{{Methods: []string{"POST"}, Path: "/t", Fields: []string{"email"}}}}
	}
	full := func() *Contract {
		c := base()
		c.Categories = map[string][]string{"contact": {"email"}}
		c.NotPersonal = []string{"header:authorization"}
		c.LegalBasis = map[string]string{"support": "contract"}
		c.Country, c.Retention = "DE", "a year"
		return c
	}
	for _, tc := range []struct {
		name string
		edit func(*Contract)
		want []string // substrings, one error each; none = valid
	}{
		{"nothing declared is fine", func(c *Contract) { *c = *base() }, nil},
		{"labels alone are fine", func(c *Contract) { *c = *base(); c.Labels = map[string]string{"email": "email address"} }, nil},
		{"complete", func(c *Contract) {}, nil},
		{"in the EEA no transfer", func(c *Contract) { c.Transfer = "scc" }, []string{"DE is in the EEA"}},
		{"outside needs one", func(c *Contract) { c.Country = "BR" }, []string{"outside the EEA: say the transfer mechanism"}},
		{"outside with scc", func(c *Contract) { c.Country, c.Transfer = "BR", "scc" }, nil},
		{"unknown transfer", func(c *Contract) { c.Country, c.Transfer = "BR", "trust" }, []string{`transfer "trust": want one of`}},
		{"not a country", func(c *Contract) { c.Country = "EU" }, []string{`country "EU"`}},
		{"a header left out", func(c *Contract) { c.NotPersonal = nil }, []string{`"header:authorization" leaves under this contract`}},
		{"only a retention", func(c *Contract) { *c = *base(); c.Retention = "a year" }, []string{
			"categories: required", `"email" leaves`, `"header:authorization" leaves`, "purpose support has none", "country: required"}},
		{"unknown basis", func(c *Contract) { c.LegalBasis["support"] = "necessity" }, []string{`"necessity": want one of`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := full()
			tc.edit(c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %q, got no error", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				if !containsLine(got, w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(got), len(tc.want), err)
			}
		})
	}
}

func TestWords(t *testing.T) {
	if got := CountryName("US"); got != "United States" {
		t.Errorf("CountryName(US) = %q", got)
	}
	for c := range eea {
		if CountryName(c) == c {
			t.Errorf("no name for EEA country %s", c)
		}
	}
	for c := range adequate {
		if CountryName(c) == c {
			t.Errorf("no name for adequate country %s", c)
		}
	}
	if got := CountryName("KE"); got != "KE" {
		t.Errorf("CountryName(KE) = %q: a valid code without a name prints as itself", got)
	}
	if got := CountryName("zz!"); got != "zz!" {
		t.Errorf("CountryName(bad) = %q", got)
	}
	if got := PurposeWords("event_registration"); got != "registration for webinars and events" {
		t.Errorf("PurposeWords = %q", got)
	}
	if got := PurposeWords("fraud_checks"); got != "fraud checks" {
		t.Errorf("PurposeWords(other) = %q", got)
	}
	if b, ok := BasisOf("contract"); !ok || b.Article != "GDPR Art. 6(1)(b)" {
		t.Errorf("BasisOf(contract) = %+v", b)
	}
	if CategoryWords("payment_card") != "payment card details" || CategoryWords("x") != "x" {
		t.Error("CategoryWords")
	}
}
