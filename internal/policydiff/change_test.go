package policydiff

import (
	"reflect"
	"slices"
	"testing"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
)

// TestCompareDisclosures: how each way two decisions can differ is judged,
// decision by decision, without a policy.
func TestCompareDisclosures(t *testing.T) {
	zendesk := &contract.Contract{
		ID: "zendesk", Name: "Zendesk", Purposes: []string{"support"},
		Routes: []contract.Route{{Methods: []string{"POST"}, Path: "/t", Fields: []string{"ticket/subject", "ticket/requester/email", "items/*/sku"},
			Transforms: map[string]string{"ticket/requester/id": "hmac"}, Query: []string{"q"}}},
		Labels:     map[string]string{"ticket/requester/email": "email address"},
		Categories: map[string][]string{"contact": {"ticket/requester/email"}, "communications": {"ticket/subject"}},
	}
	cat, err := contract.NewCatalog(map[string]*contract.Contract{"zendesk": zendesk})
	if err != nil {
		t.Fatal(err)
	}
	k := catalogs{cat, cat}
	allow := func(items map[string]string, mod ...func(*disclosure)) disclosure {
		d := disclosure{allow: true, vendor: "zendesk", route: "/t", reason: "ok", items: items, body: engine.BodyFilter,
			cards: "block", cardsCode: "card_number", tls: true, port: 443}
		for _, m := range mod {
			m(&d)
		}
		return d
	}
	refuse := func(code string) disclosure { return disclosure{code: code, reason: "no: " + code} }
	base := map[string]string{"ticket/subject": "", "ticket/requester/email": "", "query:q": ""}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "-" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		a, b disclosure
		want []Change
	}{
		{name: "equal", a: allow(base), b: allow(base)},
		{name: "refusals equal", a: refuse("denied"), b: refuse("denied")},
		{name: "reason only", a: allow(base), b: allow(base, func(d *disclosure) { d.reason = "other" }),
			want: []Change{{Effect: Info, Kind: KindReason, Vendor: "zendesk"}}},
		{name: "route only", a: allow(base), b: allow(base, func(d *disclosure) { d.route = "/u" }),
			want: []Change{{Effect: Info, Kind: KindRoute, Vendor: "zendesk", Old: "/t", New: "/u"}}},
		{name: "refusal code", a: refuse("gpc_opt_out"), b: refuse("consent_required"),
			want: []Change{{Effect: Neutral, Kind: KindRefusalCode, Old: "gpc_opt_out", New: "consent_required"}}},
		{name: "field starts, its category already leaves", a: allow(base), b: allow(with("ticket/requester/name", "")),
			want: []Change{{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "ticket/requester/name", Personal: true}}},
		{name: "field and category start", a: allow(with("ticket/requester/email", "-")), b: allow(base),
			want: []Change{
				{Effect: Widens, Kind: KindCategoryStarts, Vendor: "zendesk", Item: "contact", Personal: true},
				{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "ticket/requester/email", Label: "email address", Categories: []string{"contact"}, Personal: true},
			}},
		{name: "field and category stop", a: allow(base), b: allow(with("ticket/requester/email", "-")),
			want: []Change{
				{Effect: Narrows, Kind: KindCategoryStops, Vendor: "zendesk", Item: "contact", Personal: true},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "ticket/requester/email", Label: "email address", Categories: []string{"contact"}, Personal: true},
			}},
		// A subtree sent whole covers the paths below it: replacing the
		// parts by the whole widens (the whole starts), the reverse narrows
		// (the whole stops) and the parts neither start nor stop.
		// The whole carries the categories of what the contract sends below
		// it: no category starts or stops.
		{name: "subtree sent whole", a: allow(base), b: allow(with("ticket", "", "ticket/subject", "-", "ticket/requester/email", "-")),
			want: []Change{{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "ticket", Categories: []string{"contact", "communications"}, Personal: true}}},
		{name: "subtree narrowed to parts", a: allow(with("ticket", "")), b: allow(base),
			want: []Change{{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "ticket", Categories: []string{"contact", "communications"}, Personal: true}}},
		{name: "wildcard covers an index", a: allow(with("items/*/sku", "")), b: allow(with("items/*/sku", "-", "items/0/sku", "")),
			want: []Change{{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "items/*/sku", Personal: true}}},
		// items/0/sku still leaves (under the wildcard): it does not stop.
		{name: "an index does not cover the wildcard", a: allow(with("items/0/sku", "")), b: allow(with("items/*/sku", "")),
			want: []Change{{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "items/*/sku", Personal: true}}},
		{name: "a hashed parent does not cover a clear child", a: allow(with("ticket/requester", "hmac")), b: allow(with("ticket/requester", "hmac", "ticket/requester/phone", "")),
			want: []Change{{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "ticket/requester/phone", Personal: true}}},
		{name: "hmac dropped", a: allow(with("ticket/requester/id", "hmac")), b: allow(with("ticket/requester/id", "")),
			want: []Change{{Effect: Widens, Kind: KindTransform, Vendor: "zendesk", Item: "ticket/requester/id", Old: "hmac", Personal: true}}},
		{name: "hmac added", a: allow(base), b: allow(with("ticket/requester/email", "hmac")),
			want: []Change{{Effect: Narrows, Kind: KindTransform, Vendor: "zendesk", Item: "ticket/requester/email", New: "hmac", Label: "email address", Categories: []string{"contact"}, Personal: true}}},
		{name: "redact to last4", a: allow(with("x", "redact")), b: allow(with("x", "last4")),
			want: []Change{{Effect: Widens, Kind: KindTransform, Vendor: "zendesk", Item: "x", Old: "redact", New: "last4", Personal: true}}},
		{name: "hmac to year: no order, a reviewer judges", a: allow(with("x", "hmac")), b: allow(with("x", "year")),
			want: []Change{{Effect: Widens, Kind: KindTransform, Vendor: "zendesk", Item: "x", Old: "hmac", New: "year", Personal: true}}},
		{name: "shorter truncation", a: allow(with("x", "truncate:10")), b: allow(with("x", "truncate:4")),
			want: []Change{{Effect: Narrows, Kind: KindTransform, Vendor: "zendesk", Item: "x", Old: "truncate:10", New: "truncate:4", Personal: true}}},
		{name: "longer truncation", a: allow(with("x", "truncate:4")), b: allow(with("x", "truncate:10")),
			want: []Change{{Effect: Widens, Kind: KindTransform, Vendor: "zendesk", Item: "x", Old: "truncate:4", New: "truncate:10", Personal: true}}},
		{name: "query parameter and header", a: allow(base), b: allow(with("query:q", "-", "header:x-account", "")),
			want: []Change{
				{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "header:x-account"},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "query:q"},
			}},
		{name: "refusal lifted", a: refuse("gpc_opt_out"), b: allow(map[string]string{"ticket/subject": ""}),
			want: []Change{
				{Effect: Widens, Kind: KindCategoryStarts, Vendor: "zendesk", Item: "communications", Personal: true},
				{Effect: Widens, Kind: KindRefusalLifted, Vendor: "zendesk", Old: "gpc_opt_out"},
				{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "ticket/subject", Categories: []string{"communications"}, Personal: true},
			}},
		{name: "refusal lifted to an opaque plaintext dry run on another port", a: refuse("denied"),
			b: allow(map[string]string{"body:/t": ""}, func(d *disclosure) {
				d.body, d.tls, d.port, d.dryRun, d.cards = engine.BodyOpaque, false, 8080, true, "redact"
			}),
			want: []Change{
				{Effect: Widens, Kind: KindBody, Vendor: "zendesk", New: "opaque"},
				{Effect: Widens, Kind: KindCards, Vendor: "zendesk", New: "redact"},
				{Effect: Widens, Kind: KindDryRun, Vendor: "zendesk", New: "true"},
				{Effect: Widens, Kind: KindPort, Vendor: "zendesk", New: "8080"},
				{Effect: Widens, Kind: KindRefusalLifted, Vendor: "zendesk", Old: "denied"},
				{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "body:/t", Personal: true},
				{Effect: Widens, Kind: KindTLS, Vendor: "zendesk", New: "false"},
			}},
		{name: "now refused", a: allow(map[string]string{"query:q": ""}), b: refuse("source_not_allowed"),
			want: []Change{
				{Effect: Narrows, Kind: KindRefused, Vendor: "zendesk", New: "source_not_allowed"},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "query:q"},
			}},
		{name: "opaque where it was filtered", a: allow(map[string]string{"ticket/subject": ""}),
			b: allow(map[string]string{"body:/t": ""}, func(d *disclosure) { d.body = engine.BodyOpaque }),
			want: []Change{
				{Effect: Narrows, Kind: KindCategoryStops, Vendor: "zendesk", Item: "communications", Personal: true},
				{Effect: Widens, Kind: KindBody, Vendor: "zendesk", Old: "filter", New: "opaque"},
				{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "body:/t", Personal: true},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "ticket/subject", Categories: []string{"communications"}, Personal: true},
			}},
		{name: "body none", a: allow(base), b: allow(with("ticket/subject", "-", "ticket/requester/email", "-"), func(d *disclosure) { d.body = engine.BodyNone }),
			want: []Change{
				{Effect: Narrows, Kind: KindCategoryStops, Vendor: "zendesk", Item: "communications", Personal: true},
				{Effect: Narrows, Kind: KindCategoryStops, Vendor: "zendesk", Item: "contact", Personal: true},
				{Effect: Narrows, Kind: KindBody, Vendor: "zendesk", Old: "filter", New: "none"},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "ticket/requester/email", Label: "email address", Categories: []string{"contact"}, Personal: true},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "ticket/subject", Categories: []string{"communications"}, Personal: true},
			}},
		{name: "cards loosened", a: allow(base), b: allow(base, func(d *disclosure) { d.cards = "allow" }),
			want: []Change{{Effect: Widens, Kind: KindCards, Vendor: "zendesk", Old: "block", New: "allow"}}},
		{name: "cards tightened", a: allow(base, func(d *disclosure) { d.cards = "redact" }), b: allow(base),
			want: []Change{{Effect: Narrows, Kind: KindCards, Vendor: "zendesk", Old: "redact", New: "block"}}},
		{name: "card refusal code", a: allow(base), b: allow(base, func(d *disclosure) { d.cardsCode = "source_not_allowed" }),
			want: []Change{{Effect: Neutral, Kind: KindCardsCode, Vendor: "zendesk", Old: "card_number", New: "source_not_allowed"}}},
		{name: "plain HTTP", a: allow(base), b: allow(base, func(d *disclosure) { d.tls = false }),
			want: []Change{{Effect: Widens, Kind: KindTLS, Vendor: "zendesk", Old: "true", New: "false"}}},
		{name: "TLS", a: allow(base, func(d *disclosure) { d.tls = false }), b: allow(base),
			want: []Change{{Effect: Narrows, Kind: KindTLS, Vendor: "zendesk", Old: "false", New: "true"}}},
		{name: "port", a: allow(base), b: allow(base, func(d *disclosure) { d.port = 8443 }),
			want: []Change{{Effect: Widens, Kind: KindPort, Vendor: "zendesk", Old: "443", New: "8443"}}},
		{name: "dry run on", a: allow(base), b: allow(base, func(d *disclosure) { d.dryRun = true }),
			want: []Change{{Effect: Widens, Kind: KindDryRun, Vendor: "zendesk", Old: "false", New: "true"}}},
		{name: "dry run off", a: allow(base, func(d *disclosure) { d.dryRun = true }), b: allow(base),
			want: []Change{{Effect: Narrows, Kind: KindDryRun, Vendor: "zendesk", Old: "true", New: "false"}}},
		{name: "another recipient", a: allow(map[string]string{"query:q": ""}),
			b: allow(map[string]string{"query:q": ""}, func(d *disclosure) { d.vendor = "mailchimp" }),
			want: []Change{
				{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "query:q"},
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "query:q"},
				{Effect: Widens, Kind: KindVendor, Old: "zendesk", New: "mailchimp"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := compare(tc.a, tc.b, k)
			slices.SortFunc(tc.want, compareChanges)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
			if want := effectOf(tc.want); len(tc.want) > 0 && effectOf(got) != want {
				t.Errorf("effect %s, want %s", effectOf(got), want)
			}
		})
	}
}

// A failure to decide is a refusal with its code, as a sidecar answers it.
func TestDisclosureOfError(t *testing.T) {
	d := disclosureOf(nil, &engine.Error{Code: engine.CodeEvalError, Reason: "policy evaluation failed"})
	if d.allow || d.code != "policy_error" {
		t.Errorf("%+v", d)
	}
}
